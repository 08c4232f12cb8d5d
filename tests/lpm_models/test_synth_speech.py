"""Speech synthesis, voices and the conversation timeline of the synthetic corpus."""

from __future__ import annotations

import numpy as np
import pytest

from lpm_models.data.synth.corpus import assign_voices
from lpm_models.data.synth.speech import (
    Voice, _parse_wav, espeak_available, frame_loudness, synthesize, trim_silence, voice_for,
    voices_distinct,
)
from lpm_models.data.synth.timeline import build_timeline

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")

SR = 16000


def _voice(variant: str, pitch: int) -> Voice:
    return Voice(accent="en-us", variant=variant, gender="x", pitch=pitch, speed=170, word_gap=0, gain=1.0)


def test_synthesize_is_deterministic_trimmed_and_voice_dependent() -> None:
    a1 = synthesize("The weather is lovely today.", _voice("m3", 40), SR)
    a2 = synthesize("The weather is lovely today.", _voice("m3", 40), SR)
    b = synthesize("The weather is lovely today.", _voice("f2", 70), SR)
    assert a1.dtype == np.float32 and 0.8 * SR < len(a1) < 4 * SR
    np.testing.assert_array_equal(a1, a2)
    assert len(a1) != len(b) or not np.allclose(a1, b)
    # trimmed: the first and last 20 ms already carry voice
    head, tail = a1[: SR // 50], a1[-SR // 50:]
    assert np.sqrt(np.mean(head ** 2)) > 1e-3 and np.sqrt(np.mean(tail ** 2)) > 1e-3
    with pytest.raises(ValueError):
        synthesize("   ", _voice("m3", 40), SR)


def test_parse_wav_ignores_streamed_bogus_sizes() -> None:
    samples = np.array([0, 1000, -1000, 32767], dtype="<i2")
    header = b"RIFF" + (0xFFFFFFFF).to_bytes(4, "little") + b"WAVE"
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes(16)
    data = b"data" + (0xFFFFFFFF).to_bytes(4, "little") + samples.tobytes()
    np.testing.assert_array_equal(_parse_wav(header + fmt + data), samples)
    with pytest.raises(RuntimeError):
        _parse_wav(b"not a wav at all")


def test_trim_and_frame_loudness() -> None:
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    padded = np.concatenate([np.zeros(SR // 2, np.float32), tone, np.zeros(SR // 2, np.float32)])
    assert abs(len(trim_silence(padded, SR)) - SR) <= SR // 100
    loud = frame_loudness(padded, SR, 25, 50)
    assert loud.shape == (50,)
    assert np.all(loud[:12] < 1e-6) and np.all(loud[-12:] < 1e-6)
    np.testing.assert_allclose(loud[14:36], 0.5 / np.sqrt(2), rtol=0.02)


def test_voices_are_stable_and_distinct_across_a_bank() -> None:
    assert voice_for("id-7", 0) == voice_for("id-7", 0)
    ids = [f"id{i:02d}" for i in range(24)]
    voices = assign_voices(ids, seed=0)
    assert voices == assign_voices(ids, seed=0)
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    assert all(voices_distinct(voices[a], voices[b]) for a, b in pairs)


def test_timeline_turns_backchannels_and_mix() -> None:
    voices = (voice_for("a", 1), voice_for("b", 1))
    t1 = build_timeline(np.random.default_rng(5), voices, 20.0, SR)
    t2 = build_timeline(np.random.default_rng(5), voices, 20.0, SR)
    assert [u.to_dict() for u in t1.utterances] == [u.to_dict() for u in t2.utterances]
    np.testing.assert_array_equal(t1.mix, t2.mix)
    assert t1.tracks.shape == (2, 20 * SR) and t1.mix.shape == (20 * SR,)
    assert {u.person for u in t1.utterances} == {0, 1}
    assert all(0.0 <= u.start_s < u.end_s <= 20.0 for u in t1.utterances)
    # each utterance's audio sits on its speaker's own track and not on the other one
    for u in t1.utterances:
        a, b = int(u.start_s * SR), int(u.end_s * SR)
        own = np.sqrt(np.mean(t1.tracks[u.person, a:b] ** 2))
        assert own > 0.01
    # the mix is the sum of the tracks plus a faint noise floor
    residual = t1.mix - np.clip(t1.tracks.sum(axis=0), -1, 1)
    assert 0.0005 < residual.std() < 0.005


def test_timeline_has_backchannels_and_overlaps_over_many_seeds() -> None:
    voices = (voice_for("a", 2), voice_for("b", 2))
    kinds, overlaps = set(), 0
    for seed in range(6):
        tl = build_timeline(np.random.default_rng(seed), voices, 25.0, SR)
        kinds |= {u.kind for u in tl.utterances}
        spans = sorted((u.start_s, u.end_s, u.person) for u in tl.utterances)
        overlaps += sum(1 for (s0, e0, p0), (s1, _, p1) in zip(spans, spans[1:]) if p0 != p1 and s1 < e0)
    assert {"statement", "backchannel", "reply"} <= kinds
    assert overlaps >= 1
