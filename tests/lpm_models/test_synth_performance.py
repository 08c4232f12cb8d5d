"""Performance (face controls, labels, actions) and ground truth of the synthetic corpus."""

from __future__ import annotations

import numpy as np
import pytest
import webrtcvad

from lpm_models.data.synth.actions import ActionEvent, EventBook, apply_event
from lpm_models.data.synth.performance import CONTROL_NAMES, LIMITS, jaw_from_loudness, perform
from lpm_models.data.synth.script import ACTIONS
from lpm_models.data.synth.speech import espeak_available, frame_loudness, voice_for
from lpm_models.data.synth.timeline import build_timeline
from lpm_models.data.synth.truth import label_segments

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")

SR, FPS = 16000, 25


@pytest.fixture(scope="module")
def conversation() -> tuple:
    rng = np.random.default_rng(11)
    timeline = build_timeline(rng, (voice_for("p0", 3), voice_for("p1", 3)), 24.0, SR)
    return timeline, perform(rng, timeline, FPS)


def _vad_frames(track: np.ndarray) -> np.ndarray:
    """Per video frame: webrtcvad says speech in either 20 ms half of the frame."""
    vad = webrtcvad.Vad(2)
    pcm = (np.clip(track, -1, 1) * 32767).astype("<i2")
    half = SR // FPS // 2
    n = len(pcm) // (2 * half)
    out = np.zeros(n, dtype=bool)
    for t in range(n):
        for k in (0, 1):
            a = (2 * t + k) * half
            out[t] |= vad.is_speech(pcm[a:a + half].tobytes(), SR)
    return out


def test_labels_agree_with_voice_activity(conversation: tuple) -> None:
    timeline, perf = conversation
    for p in (0, 1):
        own, other = _vad_frames(timeline.tracks[p]), _vad_frames(timeline.tracks[1 - p])
        labels = np.array(perf.labels[p][: len(own)])
        assert own.sum() > 25
        assert np.mean(labels[own] == "speak") > 0.9
        only_other = other & ~own
        assert np.mean(labels[only_other] == "listen") > 0.8
        silent = ~own & ~other
        assert np.mean(labels[silent] != "speak") > 0.3  # pauses inside a turn stay "speak"
    assert set(perf.labels[0]) == {"speak", "listen", "idle"}


def test_mouth_follows_own_loudness_only(conversation: tuple) -> None:
    timeline, perf = conversation
    for p in (0, 1):
        jaw = perf.controls[p]["jaw_open"]
        own_db = 20 * np.log10(frame_loudness(timeline.tracks[p], SR, FPS, perf.n_frames) + 1e-4)
        speaking = np.array(perf.labels[p]) == "speak"
        assert np.corrcoef(jaw[speaking], own_db[speaking])[0, 1] > 0.6
        listening = np.array(perf.labels[p]) == "listen"
        assert jaw[listening].mean() < 0.05 < jaw[speaking].mean()


def test_jaw_stays_closed_without_own_speech() -> None:
    silent = np.zeros(100, dtype=np.float32)
    assert not jaw_from_loudness(silent, np.zeros(100, dtype=bool), 0.9).any()
    quiet = np.full(100, 1e-4, dtype=np.float32)  # -80 dBFS "speech" is no speech
    assert not jaw_from_loudness(quiet, np.ones(100, dtype=bool), 0.9).any()
    loud = np.where(np.arange(100) % 10 < 5, 0.2, 0.0).astype(np.float32)
    jaw = jaw_from_loudness(loud, loud > 0, 0.9)
    assert jaw[loud > 0].mean() > 0.5 and jaw[loud == 0].mean() < jaw[loud > 0].mean() / 2


def test_controls_are_finite_and_within_limits(conversation: tuple) -> None:
    _, perf = conversation
    for p in (0, 1):
        assert set(perf.controls[p]) == set(CONTROL_NAMES)
        for name, (lo, hi) in LIMITS.items():
            curve = perf.controls[p][name]
            assert curve.shape == (perf.n_frames,) and np.isfinite(curve).all()
            assert lo <= curve.min() and curve.max() <= hi
        assert np.std(perf.controls[p]["yaw"]) > 0.5  # the head is never frozen
        assert perf.controls[p]["blink"].max() == 1.0 and len(perf.blinks[p]) >= 3


def test_action_events_in_bounds_and_visible(conversation: tuple) -> None:
    timeline, perf = conversation
    assert perf.events, "a 24 s conversation must contain actions"
    causes = {e.cause for e in perf.events}
    assert "reaction" in causes
    by_person: dict[int, list[ActionEvent]] = {0: [], 1: []}
    for e in perf.events:
        assert e.action in ACTIONS and 0 <= e.start_frame < e.end_frame <= perf.n_frames
        by_person[e.person].append(e)
    for events in by_person.values():  # one action at a time per person
        events.sort(key=lambda e: e.start_frame)
        assert all(a.end_frame <= b.start_frame for a, b in zip(events, events[1:]))
    for e in perf.events:  # reactions lag the other voice: >= 1 s into a phrase, <= 1.3 s after it
        if e.cause == "reaction":
            t = e.start_frame / FPS
            assert any(u.start_s + 0.9 <= t <= u.end_s + 1.3 for u in timeline.utterances
                       if u.person != e.person and u.kind != "backchannel"), e


@pytest.mark.parametrize("action,control", [("nod", "pitch"), ("shake", "yaw"), ("smile", "smile"),
                                            ("tilt", "roll"), ("look_away", "yaw")])
def test_apply_event_moves_its_control_only_inside_the_interval(action: str, control: str) -> None:
    curves = {name: np.zeros(100, dtype=np.float64) for name in CONTROL_NAMES}
    apply_event(curves, ActionEvent(0, action, 30, 60, 1.0, 1, "scripted"))
    moved = np.abs(curves[control])
    assert moved[30:60].max() > 0.5 and moved[:30].max() == 0 and moved[60:].max() == 0


def test_event_book_rejects_collisions() -> None:
    book = EventBook(n_frames=250, fps=25)
    rng = np.random.default_rng(0)
    assert book.add(rng, 0, "nod", 2.0, "scripted", duration_s=1.0) is not None
    assert book.add(rng, 0, "smile", 2.5, "scripted") is None
    assert book.add(rng, 1, "smile", 2.5, "scripted") is not None
    with pytest.raises(ValueError):
        ActionEvent(0, "wave", 0, 10, 1.0, 1, "scripted")


def test_performance_is_deterministic() -> None:
    voices = (voice_for("p0", 4), voice_for("p1", 4))
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(99)
        runs.append(perform(rng, build_timeline(rng, voices, 8.0, SR), FPS))
    a, b = runs
    assert a.labels == b.labels and a.events == b.events and a.blinks == b.blinks
    for p in (0, 1):
        for name in CONTROL_NAMES:
            np.testing.assert_array_equal(a.controls[p][name], b.controls[p][name])


def test_label_segments_run_length() -> None:
    segs = label_segments(["idle", "idle", "speak", "listen", "listen"])
    assert segs == [{"label": "idle", "start_frame": 0, "end_frame": 2},
                    {"label": "speak", "start_frame": 2, "end_frame": 3},
                    {"label": "listen", "start_frame": 3, "end_frame": 5}]
