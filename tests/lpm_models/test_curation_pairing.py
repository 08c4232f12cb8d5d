"""Speak/listen pairing: voice activity, active-speaker attribution, labels and gated audio.

Unit scenarios synthesise a two-person exchange with espeak-ng and drive each face's mouth
opening from that person's own voice (as a real face would be); the corpus test runs the real
shots -> tracks -> pairing chain on rendered H.264 videos and scores it against the sidecars.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from lpm_models.data.curation.pairing import IDLE, LISTEN, SPEAK, PairingConfig, gate_audio, pair_shot, pair_track
from lpm_models.data.curation.types import FaceTrack
from lpm_models.data.curation.vad import (VadConfig, close_gaps, drop_short, pad_runs, resample, runs,
                                          speech_activity)
from lpm_models.data.synth.speech import espeak_available

log = logging.getLogger(__name__)
SR, FPS = 16000, 25
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def test_mask_helpers() -> None:
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0], dtype=bool)
    assert runs(mask) == [(1, 3), (5, 6), (7, 10)]
    assert runs(close_gaps(mask, 1)) == [(1, 3), (5, 10)]  # only the 1-sample gap closes
    assert runs(drop_short(mask, 2)) == [(1, 3), (7, 10)]
    assert runs(pad_runs(mask, 1, 1)) == [(0, 11)]
    assert runs(pad_runs(mask, 0, -2)) == [(1, 2), (5, 6), (7, 8)]  # trimmed, never emptied
    tone = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    assert len(resample(tone, SR, 8000)) == 8000


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="frame_ms"):
        VadConfig(frame_ms=25)
    with pytest.raises(ValueError, match="aggressiveness"):
        PairingConfig(vad_aggressiveness=7)
    with pytest.raises(ValueError, match="min_correlation"):
        PairingConfig(min_correlation=1.5)


def _put(track: np.ndarray, text: str, voice: object, start_s: float) -> tuple[float, float]:
    from lpm_models.data.synth.speech import synthesize

    pcm = synthesize(text, voice, SR)  # type: ignore[arg-type]
    a = int(start_s * SR)
    track[a:a + len(pcm)] += pcm[:len(track) - a]
    return start_s, min(len(track), a + len(pcm)) / SR


def _mouth(voice_track: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Mouth opening (n,) that follows a person's own voice, like the corpus renderer's jaw."""
    from lpm_models.data.synth.performance import jaw_from_loudness
    from lpm_models.data.synth.speech import frame_loudness

    loud = frame_loudness(voice_track, SR, FPS, n)
    jaw = jaw_from_loudness(loud, loud > 0.01, openness=0.9)
    return (0.012 + 0.12 * jaw + rng.normal(0, 0.002, n)).astype(np.float32)


def _track(index: int, mouth: np.ndarray, first: int = 0) -> FaceTrack:
    n = len(mouth)
    return FaceTrack(video_id="v", shot_index=0, track_index=index, fps=FPS, frames=np.arange(first, first + n),
                     boxes=np.zeros((n, 4)), crop_boxes=np.zeros((n, 4)), landmarks=np.zeros((n, 478, 2)),
                     pose=np.zeros((n, 3), np.float32), mouth_open=mouth)


@pytest.fixture(scope="module")
def exchange() -> dict:
    """A: a statement; B: a question 0.5 s later; A: a reply overlapping B's end; then silence."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    from lpm_models.data.synth.speech import voice_for

    voices = voice_for("person-a", 0), voice_for("person-b", 3)
    duration = 11.0
    tracks = np.zeros((2, int(duration * SR)), np.float32)
    spans = [(0, _put(tracks[0], "I spent most of Saturday fixing the old bike in the garage.", voices[0], 0.4))]
    spans.append((1, _put(tracks[1], "That sounds lovely, did it work in the end?", voices[1], spans[0][1][1] + 0.5)))
    spans.append((0, _put(tracks[0], "Yes, exactly, it rides well.", voices[0], spans[1][1][1] - 0.3)))
    rng = np.random.default_rng(0)
    mix = tracks.sum(axis=0) + rng.normal(0, 0.0015, tracks.shape[1]).astype(np.float32)
    n = int(duration * FPS)
    centres = (np.arange(n) + 0.5) / FPS
    speaking = np.zeros((2, n), bool)
    for person, (a, b) in spans:
        speaking[person] |= (centres >= a) & (centres < b)
    truth = [np.where(speaking[p], SPEAK, np.where(speaking[1 - p], LISTEN, IDLE)) for p in (0, 1)]
    mouths = [_mouth(tracks[p], n, rng) for p in (0, 1)]
    return {"mix": mix, "n": n, "speaking": speaking, "truth": truth, "mouths": mouths, "spans": spans}


@needs_espeak
def test_voice_activity_follows_the_utterances(exchange: dict) -> None:
    activity = speech_activity(exchange["mix"], SR, FPS, exchange["n"])
    anyone = exchange["speaking"].any(axis=0)
    assert activity.speech[anyone].mean() >= 0.9
    assert activity.speech[~anyone].mean() <= 0.15
    assert activity.envelope_db[anyone].mean() > activity.envelope_db[~anyone].mean() + 15


@needs_espeak
def test_split_screen_speech_goes_to_the_moving_mouth(exchange: dict) -> None:
    a, b = _track(0, exchange["mouths"][0]), _track(1, exchange["mouths"][1])
    labels = pair_shot([a, b], exchange["mix"], SR)
    for clip, truth in zip(labels, exchange["truth"]):
        assert clip.labels.shape == truth.shape
        assert (clip.labels == truth).mean() >= 0.9, clip.balance()
    overlap = exchange["speaking"].all(axis=0)
    assert overlap.sum() >= 4  # the reply really overlaps the question
    both = (labels[0].labels[overlap] == SPEAK) & (labels[1].labels[overlap] == SPEAK)
    assert both.mean() >= 0.5  # overlapping speech: both mouths speak


@needs_espeak
def test_single_camera_unmatched_speech_is_the_interlocutors(exchange: dict) -> None:
    visible = _track(1, exchange["mouths"][1])  # only B on screen; A is heard off camera
    clip = pair_track(visible, exchange["mix"], SR)
    truth = exchange["truth"][1]
    assert (clip.labels == truth).mean() >= 0.9
    assert (clip.labels[truth == LISTEN] == LISTEN).mean() >= 0.85
    assert (clip.labels[truth == SPEAK] == SPEAK).mean() >= 0.85


@needs_espeak
def test_silent_mouth_next_to_a_speaker_loses_to_the_speaker(exchange: dict) -> None:
    """B's mouth moves without sound (chewing) while A talks: the competitor rule keeps it listening."""
    speaking, n = exchange["speaking"], exchange["n"]
    a = _track(0, exchange["mouths"][0])
    rates = {}
    for margin in (0.3, 10.0):  # the default margin vs. no competition at all
        false = []
        for seed in range(4):
            noise = gaussian_filter1d(np.random.default_rng(seed).normal(size=n), 2) * 3
            chew = (0.012 + 0.06 * np.clip(noise, 0, 1)).astype(np.float32)
            b = _track(1, np.where(speaking[1], exchange["mouths"][1], chew))
            labels = pair_shot([a, b], exchange["mix"], SR, replace(PairingConfig(), competitor_margin=margin))
            only_a = speaking[0] & ~speaking[1]
            false.append((labels[1].labels[only_a] == SPEAK).mean())
        rates[margin] = float(np.mean(false))
    log.info("silent-mouth false speak rate: %s", rates)
    assert rates[0.3] <= 0.2
    assert rates[0.3] < rates[10.0]


@needs_espeak
def test_gated_audio_keeps_each_voice_where_it_speaks(exchange: dict) -> None:
    a, b = _track(0, exchange["mouths"][0]), _track(1, exchange["mouths"][1])
    clip, clip_b = pair_shot([a, b], exchange["mix"], SR)
    n, mix = exchange["n"], exchange["mix"]
    per_frame = SR // FPS
    assert len(clip.self_audio) == len(clip.other_audio) == n * per_frame and clip.sample_rate == SR

    def energy(x: np.ndarray, mask: np.ndarray) -> float:
        frames = x[: n * per_frame].reshape(n, per_frame)
        inner = mask & np.roll(mask, 1) & np.roll(mask, -1)  # away from the soft gate edges
        return float((frames[inner] ** 2).sum())

    own, other = clip.labels == SPEAK, clip_b.labels == SPEAK  # overlaps are in both gates
    assert (other[clip.labels == LISTEN]).all()
    assert energy(clip.self_audio, ~own) == 0.0 and energy(clip.other_audio, ~other) == 0.0
    np.testing.assert_allclose(energy(clip.self_audio, own), energy(mix, own), rtol=1e-5)
    np.testing.assert_allclose(energy(clip.other_audio, other), energy(mix, other), rtol=1e-5)
    ramp = gate_audio(np.ones(n * per_frame, np.float32), SR, FPS, own, fade_ms=10.0)
    assert ramp.max() == pytest.approx(1.0, abs=1e-5) and ramp.min() == 0.0
    assert np.abs(np.diff(ramp)).max() < 0.05  # soft edges, no clicks
    assert abs(clip.sync_offset) <= 1 and clip.sync_confidence > 0.5


@needs_espeak
def test_pair_track_matches_pair_shot_and_handles_offsets(exchange: dict) -> None:
    mouth_a, mouth_b = exchange["mouths"]
    a, b = _track(0, mouth_a), _track(1, mouth_b)
    alone = pair_track(a, exchange["mix"], SR, [b])
    np.testing.assert_array_equal(alone.labels, pair_shot([a, b], exchange["mix"], SR)[0].labels)
    # the same faces from frame 25 on, with audio that starts at 1.0 s of the video
    late_a, late_b = _track(0, mouth_a[25:], first=25), _track(1, mouth_b[25:], first=25)
    late = pair_track(late_a, exchange["mix"][SR:], SR, [late_b], audio_start_s=1.0)
    assert (late.labels == alone.labels[25:]).mean() >= 0.95
    with pytest.raises(ValueError, match="does not cover frame"):
        pair_track(a, exchange["mix"][SR:], SR, [b], audio_start_s=1.0)
    other_rate = replace(b, fps=30.0)
    with pytest.raises(ValueError, match="frame rate"):
        pair_track(a, exchange["mix"], SR, [other_rate])


@needs_espeak
def test_pairing_accuracy_on_rendered_corpus(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Real chain on H.264 videos: shots -> face tracks -> pairing, scored against the sidecars."""
    from lpm_models.data.curation.accuracy import bench_corpus, evaluate_pairing

    root, tracks = bench_corpus(Path(tmp_path_factory.getbasetemp()))
    assert sum(len(t) for t in tracks.values()) >= 8  # split videos give two tracks each
    score, labels = evaluate_pairing(root, tracks)
    report = score.to_dict()
    log.info("pairing frame accuracy %.4f over %d frames; recall %s", score.accuracy, score.frames, report["recall"])
    assert score.frames >= 3000
    assert score.accuracy >= 0.85, report
    assert report["recall"]["speak"] >= 0.8 and report["recall"]["listen"] >= 0.8, report
    synced = [c for c in labels.values() if c.sync_confidence > 0.5]
    assert synced and all(abs(c.sync_offset) <= 2 for c in synced)
