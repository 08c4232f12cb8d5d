"""Streaming conditions: audio encoder state and token history, prompt boundaries, runtime VAD states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpm_models.online.config import VADConfig
from lpm_models.online.runtime import (
    RuntimeState,
    RuntimeTracker,
    VADState,
    db_to_amplitude,
    frame_levels_db,
    update,
    vad,
)
from lpm_models.online.stream import init_conditions, next_conditions, push_prompt
from tests.lpm_models.test_online_factory import live_online, online_cfg

SPF = 640  # samples per video frame at 16 kHz / 25 fps


def tone(frames: int, db: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(frames * SPF) / 16000.0
    return (db_to_amplitude(db) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_frame_levels_measure_dbfs() -> None:
    levels = frame_levels_db(np.concatenate([tone(2, -20.0), np.zeros(2 * SPF, np.float32)]), SPF)
    assert levels[:2] == pytest.approx([-20.0, -20.0], abs=0.1)
    assert (levels[2:] <= -100).all()


def test_vad_hysteresis_and_hangover() -> None:
    cfg = VADConfig(on_db=-30.0, off_db=-40.0, hangover_frames=3)
    levels = np.array([-50, -35, -25, -35, -35, -45, -50, -50, -50, -50, -35], dtype=float)
    active, state = vad(levels, VADState(), cfg)
    # -35 alone does not start speech; once started it keeps going above off_db; 3 frames of hangover
    assert active.tolist() == [False, False, True, True, True, True, True, True, False, False, False]
    assert state == VADState(False, 0)
    # state carries across chunk boundaries
    a1, s1 = vad(levels[:4], VADState(), cfg)
    a2, _ = vad(levels[4:], s1, cfg)
    assert np.concatenate([a1, a2]).tolist() == active.tolist()


def test_runtime_states_follow_both_channels() -> None:
    cfg = VADConfig()
    tracker = RuntimeTracker()
    loud, quiet = tone(6, -20.0), np.zeros(6 * SPF, np.float32)
    seen = []
    for a_self, a_other in [(loud, quiet), (loud, quiet), (quiet, quiet), (quiet, loud), (loud, quiet)]:
        report, tracker = update(tracker, a_self, a_other, cfg, SPF, warmup_chunks=1)
        seen.append(report.state)
    # chunk 2 is silent but within the hangover of chunk 1's speech (8 frames > 6 per chunk)
    assert seen == [RuntimeState.WARMUP, RuntimeState.RESPONDING, RuntimeState.RESPONDING,
                    RuntimeState.LISTENING, RuntimeState.RESPONDING]
    states = []
    for _ in range(3):  # 8 hangover frames span the next 6-frame chunk and 2 frames of the one after
        report, tracker = update(tracker, quiet, quiet, cfg, SPF, warmup_chunks=1)
        states.append(report.state)
    assert states == [RuntimeState.RESPONDING, RuntimeState.RESPONDING, RuntimeState.IDLE]
    assert report.self_active == 0.0


def test_conditions_carry_audio_state_and_keep_a_bounded_token_history() -> None:
    model = live_online(online_cfg(chunk_latents=2))
    samples = 2 * 2 * SPF  # chunk_latents * tc frames
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(1, 12 * samples, generator=g) * 0.1
    other = torch.randn(1, 12 * samples, generator=g) * 0.1
    with torch.no_grad():
        full_self, _ = model.audio_encoder(audio)
        stream = init_conditions(model, 1)
        lengths = []
        for j in range(12):
            sl = slice(j * samples, (j + 1) * samples)
            cond, stream = next_conditions(model, stream, audio[:, sl], other[:, sl])
            last = cond.audio_start + cond.audio_self.shape[1]
            assert last == (j + 1) * 4  # tokens through the audio delivered with this chunk
            torch.testing.assert_close(cond.audio_self, full_self[:, cond.audio_start : last], atol=1e-4, rtol=1e-4)
            lengths.append(cond.audio_self.shape[1])
    listen_past = model.cfg.dit.listen_window[0]
    assert max(lengths) <= listen_past + 4 + 1 and len(set(lengths[-4:])) == 1  # bounded, then constant


def test_prompts_change_only_at_chunk_boundaries() -> None:
    model = live_online()
    samples = 4 * SPF
    silence = torch.zeros(1, samples)
    stream = init_conditions(model, 1, text=torch.ones(1, 3, 384))
    with torch.no_grad():
        cond0, stream = next_conditions(model, stream, silence, silence)
        staged = push_prompt(stream, torch.full((1, 2, 384), 2.0))
        assert torch.equal(staged.text, stream.text)  # the chunk in flight keeps its prompt
        cond1, staged = next_conditions(model, staged, silence, silence)
        cond2, _ = next_conditions(model, staged, silence, silence)
    assert torch.equal(cond0.text, torch.ones(1, 3, 384))
    assert torch.equal(cond1.text, torch.full((1, 2, 384), 2.0)) and torch.equal(cond2.text, cond1.text)
    cleared = push_prompt(staged, None)
    assert not cleared.pending[1].any()  # type: ignore[index]


def test_conditions_reject_wrong_chunk_sizes() -> None:
    model = live_online()
    stream = init_conditions(model, 1)
    with pytest.raises(ValueError, match="samples per channel"):
        next_conditions(model, stream, torch.zeros(1, 1000), torch.zeros(1, 1000))
