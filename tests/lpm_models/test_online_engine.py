"""Online engine: start / step / close, shapes, determinism, audio and prompt effects, long streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lpm_models.online.engine import OnlineEngine, Session
from lpm_models.online.runtime import RuntimeState
from lpm_models.online.vae_stream import StreamingDecoder
from lpm_models.vae.model import VideoVAE
from tests.lpm_models.test_online_factory import live_online, online_cfg, small_config

CFG = small_config()


class HashPrompts:
    """Deterministic prompt embeddings (the prompt-boundary logic does not need MiniLM)."""

    def encode(self, prompts: list[str], device: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(sum(map(ord, prompts[0])))
        return torch.randn(1, 4, CFG.text.dim, generator=g), torch.ones(1, 4, dtype=torch.bool)


@pytest.fixture(scope="module")
def vae() -> VideoVAE:
    torch.manual_seed(0)
    vae = VideoVAE(CFG.vae).eval()
    with torch.no_grad():
        vae.set_latent_stats(torch.randn(CFG.vae.latent_channels) * 0.1, torch.rand(CFG.vae.latent_channels) + 0.5)
    return vae


@pytest.fixture(scope="module")
def engine(vae: VideoVAE) -> OnlineEngine:
    return OnlineEngine(live_online(online_cfg(chunk_latents=2)), vae, text_encoder=HashPrompts())


def images(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]


def audio(engine: OnlineEngine, seed: int, level: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(engine.chunk_samples) * level).astype(np.float32)


def run(engine: OnlineEngine, seed: int, chunks: int = 3, self_seed: int = 1, other_seed: int = 2,
        prompts: dict[int, str] | None = None) -> tuple[list[np.ndarray], Session]:
    image, refs = images()
    session = engine.start(image, refs, prompt="calm", seed=seed)
    out = [engine.step(session, audio(engine, self_seed + 10 * j), audio(engine, other_seed + 10 * j),
                       prompt=(prompts or {}).get(j)) for j in range(chunks)]
    return out, session


def test_streaming_decoder_matches_full_decode(vae: VideoVAE) -> None:
    z = torch.randn(1, 7, CFG.vae.latent_channels, *CFG.latent_size)
    dec = StreamingDecoder(vae)
    with torch.no_grad():
        full = vae.decode(z)
        state = dec.init_state()
        parts = []
        for start in (0, 2, 4, 6):
            frames, state = dec.decode(z[:, start : start + 2], state)
            parts.append(frames)
    assert [p.shape[1] for p in parts] == [3, 4, 4, 2]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-4, rtol=1e-4)


def test_step_shapes_dtype_and_frame_counts(engine: OnlineEngine) -> None:
    frames, session = run(engine, seed=0)
    tc = CFG.vae.temporal_factor
    assert [f.shape for f in frames] == [(1 + tc * 1, 32, 32, 3), (4, 32, 32, 3), (4, 32, 32, 3)]
    assert all(f.dtype == np.uint8 for f in frames)
    assert session.chunk_index == 3 and session.frames_out == 11
    assert engine.chunk_samples == 4 * 640


def test_same_seed_same_frames_other_seed_differs(engine: OnlineEngine) -> None:
    a, _ = run(engine, seed=5)
    b, _ = run(engine, seed=5)
    c, _ = run(engine, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("channel", ["self", "other"])
def test_both_audio_channels_change_the_video(engine: OnlineEngine, channel: str) -> None:
    base, _ = run(engine, seed=3)
    changed, _ = run(engine, seed=3, **({"self_seed": 101} if channel == "self" else {"other_seed": 202}))
    assert np.abs(base[1].astype(int) - changed[1].astype(int)).max() > 0


def test_prompt_update_applies_from_its_chunk_on(engine: OnlineEngine) -> None:
    base, _ = run(engine, seed=4, chunks=4)
    updated, session = run(engine, seed=4, chunks=4, prompts={2: "laughs"})
    assert np.array_equal(base[0], updated[0]) and np.array_equal(base[1], updated[1])
    assert not np.array_equal(base[2], updated[2])
    assert session.prompt == "laughs"


def test_runtime_state_is_exposed(engine: OnlineEngine) -> None:
    image, refs = images()
    session = engine.start(image, refs, seed=0)
    assert session.runtime_state == RuntimeState.WARMUP
    silence = np.zeros(engine.chunk_samples, np.float32)
    speech = audio(engine, 0, level=0.3)
    engine.step(session, speech, silence)
    assert session.runtime_state == RuntimeState.WARMUP  # the sink chunk
    engine.step(session, silence, speech)
    assert session.runtime_state == RuntimeState.LISTENING


def test_close_and_input_validation(engine: OnlineEngine) -> None:
    image, refs = images()
    with pytest.raises(ValueError, match="max_refs"):
        engine.start(image, refs * 3)
    session = engine.start(image, refs)
    with pytest.raises(ValueError, match="self_audio_chunk"):
        engine.step(session, np.zeros(100, np.float32), np.zeros(engine.chunk_samples, np.float32))
    engine.close(session)
    with pytest.raises(RuntimeError, match="closed"):
        engine.step(session, audio(engine, 0), audio(engine, 1))


def _state_footprint(session: Session) -> tuple[int, ...]:
    caches = [session.stream.backbone] + ([session.stream.refiner] if session.stream.refiner else [])
    decoder = session.decoder.past
    return (sum(c.num_tokens for c in caches), sum(c.num_tensors for c in caches), sum(c.nbytes for c in caches),
            session.conditions.num_audio_tokens, len(decoder), sum(t.numel() for t in decoder))


def stream_footprints(engine: OnlineEngine, chunks: int) -> list[tuple[int, ...]]:
    image, refs = images()
    session = engine.start(image, refs, seed=0)
    silence = np.zeros(engine.chunk_samples, np.float32)
    speech = audio(engine, 0, level=0.2)
    out = []
    for j in range(chunks):
        frames = engine.step(session, speech if (j // 7) % 2 else silence, silence if j % 5 else speech)
        assert frames.shape[0] == (3 if j == 0 else 4)
        out.append(_state_footprint(session))
    return out


def settled_chunk(engine: OnlineEngine) -> int:
    """The chunk after which every part of the state is full: KV window and audio token history."""
    dit = engine.model.cfg.dit
    audio_chunks = math.ceil(max(dit.speak_window[0], dit.listen_window[0]) / engine.chunk_frames)
    return max(engine.cfg.context_chunks, audio_chunks) + 2


def test_a_300_chunk_stream_keeps_a_flat_state(engine: OnlineEngine) -> None:
    sizes = stream_footprints(engine, 300)
    assert len(set(sizes[settled_chunk(engine):])) == 1, "session state must stop growing once the window is full"


@pytest.mark.slow
def test_a_10000_chunk_stream_keeps_a_flat_state(engine: OnlineEngine) -> None:
    sizes = stream_footprints(engine, 10_000)
    assert len(set(sizes[settled_chunk(engine):])) == 1
