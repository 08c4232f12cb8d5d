"""From a conversation timeline to per-frame face controls and labels for both persons.

Speaking: the jaw follows the person's own loudness at the video frame rate, the head
moves more and nods on stressed syllables, brows rise on emphasis. Listening: the face
reacts to the other voice with a delay (nods, smiles, tilts, extra blinks) and leans into
a slight tilt. Always: blinks and slow sway. Text-describable actions are booked as events
(see ``actions``) and added on top, so the ground truth knows every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpm_models.data.synth.actions import ActionEvent, EventBook, apply_event
from lpm_models.data.synth.script import ACTIONS
from lpm_models.data.synth.speech import frame_loudness
from lpm_models.data.synth.timeline import Timeline

CONTROL_NAMES = ("jaw_open", "smile", "blink", "brow_raise", "yaw", "pitch", "roll")
LIMITS: dict[str, tuple[float, float]] = {
    "jaw_open": (0.0, 1.0), "smile": (0.0, 1.0), "blink": (0.0, 1.0), "brow_raise": (0.0, 1.0),
    "yaw": (-25.0, 25.0), "pitch": (-20.0, 20.0), "roll": (-20.0, 20.0),
}
LABELS = ("idle", "listen", "speak")
BLINK_SHAPE = np.array([0.6, 1.0, 0.85, 0.45, 0.15], dtype=np.float32)
REACTION_WEIGHTS = {"nod": 0.55, "smile": 0.25, "tilt": 0.15, "shake": 0.05}


@dataclass
class Performance:
    """Per-frame controls (7 curves of (n_frames,) per person), labels and events."""

    fps: int
    n_frames: int
    controls: list[dict[str, np.ndarray]]
    labels: list[list[str]]
    events: list[ActionEvent]
    blinks: list[list[int]]

    def frame_controls(self, person: int, frame: int) -> dict[str, float]:
        """Control values of ``person`` at ``frame`` (keyword arguments of FaceControls)."""
        return {name: float(self.controls[person][name][frame]) for name in CONTROL_NAMES}


def speaking_mask(timeline: Timeline, person: int, fps: int, n_frames: int) -> np.ndarray:
    """(n_frames,) bool: frame centre inside one of ``person``'s utterances."""
    centres = (np.arange(n_frames) + 0.5) / fps
    mask = np.zeros(n_frames, dtype=bool)
    for u in timeline.utterances:
        if u.person == person:
            mask |= (centres >= u.start_s) & (centres < u.end_s)
    return mask


def frame_labels(speaking: tuple[np.ndarray, np.ndarray]) -> list[list[str]]:
    """speak if the person talks, listen if only the other one does, else idle."""
    out = []
    for p in (0, 1):
        own, other = speaking[p], speaking[1 - p]
        out.append(["speak" if s else "listen" if o else "idle" for s, o in zip(own, other)])
    return out


def _smooth(x: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole follower with separate rise/fall coefficients (0..1, 1 = instant)."""
    y = np.zeros_like(x)
    prev = 0.0
    for i, v in enumerate(x):
        prev += (attack if v > prev else release) * (v - prev)
        y[i] = prev
    return y


def jaw_from_loudness(loudness: np.ndarray, speaking: np.ndarray, openness: float) -> np.ndarray:
    """Jaw opening 0..1 from a person's own per-frame RMS (dB range of 28 below their peak).

    A person who never speaks keeps the mouth closed; so does anything under -60 dBFS.
    """
    if not speaking.any():
        return np.zeros(len(loudness), dtype=np.float32)
    db = 20 * np.log10(loudness + 1e-6)
    ref = max(float(np.percentile(db[speaking], 95)), -40.0)
    jaw = np.clip((db - (ref - 28.0)) / 28.0, 0.0, 1.0) ** 1.3 * openness
    jaw[db < -60.0] = 0.0
    return _smooth(jaw.astype(np.float32), attack=0.85, release=0.6)


def _sway(rng: np.random.Generator, n: int, fps: int, amp: float, f_lo: float, f_hi: float) -> np.ndarray:
    """Smooth quasi-random motion: three sinusoids, peak amplitude about ``amp``."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(f_lo, f_hi) * t + rng.uniform(0, 2 * np.pi))
    return (amp / 2.0 * out).astype(np.float32)


def _blinks(rng: np.random.Generator, n: int, fps: int, extra: list[float]) -> list[int]:
    """Blink start frames: a Poisson process (~17/min) plus ``extra`` times (s), 0.6 s apart."""
    times = list(extra)
    t = float(rng.exponential(3.5))
    while t < n / fps:
        times.append(t)
        t += 0.6 + float(rng.exponential(3.0))
    starts: list[int] = []
    for s in sorted(int(round(x * fps)) for x in times):
        if 0 <= s < n and (not starts or s - starts[-1] >= int(0.6 * fps)):
            starts.append(s)
    return starts


def _book_events(
    rng: np.random.Generator, timeline: Timeline, book: EventBook, listening: list[np.ndarray],
    scripted_every_s: float,
) -> list[list[float]]:
    """Book line gestures, listening reactions, then scripted prompts; returns extra blink times."""
    fps, duration = book.fps, timeline.duration_s
    for u in timeline.utterances:  # gestures said with a line take priority
        if u.gesture:
            book.add(rng, u.person, u.gesture, max(0.0, u.start_s - 0.1), "line")
    extra_blinks: list[list[float]] = [[], []]
    names, weights = list(REACTION_WEIGHTS), np.array(list(REACTION_WEIGHTS.values()))
    for u in timeline.utterances:  # listener reacts after the other's phrase ends
        if u.kind == "backchannel" or u.truncated:
            continue
        p = 1 - u.person
        at = u.end_s + float(rng.uniform(0.25, 0.7))
        frame = min(book.n_frames - 1, int(u.end_s * fps))
        if not listening[p][max(0, frame - 2)]:
            continue
        if rng.random() < 0.8:
            action = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            if book.add(rng, p, action, at, "reaction") is None:
                book.add(rng, p, action, at + 0.5, "reaction")
        if u.end_s - u.start_s > 2.5 and rng.random() < 0.3:  # a nod in the middle of a long phrase
            book.add(rng, p, "nod", float(rng.uniform(u.start_s + 1.0, u.end_s - 1.0)), "reaction")
        if rng.random() < 0.35:
            extra_blinks[p].append(u.end_s + float(rng.uniform(0.15, 0.5)))
    for p in (0, 1):  # prompted actions at random times, in any state, where there is room
        for _ in range(int(rng.poisson(duration / scripted_every_s))):
            action = ACTIONS[int(rng.integers(len(ACTIONS)))]
            book.add(rng, p, action, float(rng.uniform(0, max(0.1, duration - 1.0))), "scripted")
    return extra_blinks


def _person_curves(
    rng: np.random.Generator, timeline: Timeline, person: int, n: int, fps: int,
    speaking: np.ndarray, listening: np.ndarray,
) -> dict[str, np.ndarray]:
    """Continuous (non-event) curves: jaw, sway, speaking head motion, listening posture."""
    loud = frame_loudness(timeline.tracks[person], timeline.sample_rate, fps, n)
    jaw = jaw_from_loudness(loud, speaking, openness=float(rng.uniform(0.75, 0.95)))
    speak_s = _smooth(speaking.astype(np.float32), 0.15, 0.08)
    listen_s = _smooth(listening.astype(np.float32), 0.08, 0.05)
    emphasis = np.clip(np.diff(_smooth(jaw, 0.5, 0.2), prepend=0.0) * 6.0, 0.0, 1.0)
    side = 1.0 if rng.random() < 0.5 else -1.0
    yaw = _sway(rng, n, fps, 2.0, 0.04, 0.25) + speak_s * _sway(rng, n, fps, 4.0, 0.3, 1.0)
    pitch = (_sway(rng, n, fps, 1.5, 0.04, 0.25) + speak_s * _sway(rng, n, fps, 2.5, 0.4, 1.2)
             + 5.0 * _smooth(emphasis, 0.6, 0.25))
    roll = (_sway(rng, n, fps, 1.2, 0.03, 0.2) + speak_s * _sway(rng, n, fps, 1.5, 0.3, 0.9)
            + side * 3.0 * listen_s)
    base_smile = float(rng.uniform(0.0, 0.15))
    return {
        "jaw_open": jaw,
        "smile": np.full(n, base_smile, dtype=np.float32) + 0.1 * listen_s,
        "blink": np.zeros(n, dtype=np.float32),
        "brow_raise": 0.05 + 0.45 * _smooth(emphasis, 0.7, 0.15),
        "yaw": yaw, "pitch": pitch, "roll": roll,
    }


def perform(
    rng: np.random.Generator, timeline: Timeline, fps: int = 25, scripted_every_s: float = 8.0,
) -> Performance:
    """Per-frame face controls, labels, action events and blinks of both persons."""
    n = int(round(timeline.duration_s * fps))
    speaking = (speaking_mask(timeline, 0, fps, n), speaking_mask(timeline, 1, fps, n))
    listening = [speaking[1 - p] & ~speaking[p] for p in (0, 1)]
    book = EventBook(n, fps)
    extra_blinks = _book_events(rng, timeline, book, listening, scripted_every_s)
    controls, blinks = [], []
    for p in (0, 1):
        curves = _person_curves(rng, timeline, p, n, fps, speaking[p], listening[p])
        for event in book.events:
            if event.person == p:
                apply_event(curves, event)
        starts = _blinks(rng, n, fps, extra_blinks[p])
        for s in starts:
            seg = BLINK_SHAPE[: n - s]
            curves["blink"][s:s + len(seg)] = np.maximum(curves["blink"][s:s + len(seg)], seg)
        for name, (lo, hi) in LIMITS.items():
            curves[name] = np.clip(curves[name], lo, hi).astype(np.float32)
        controls.append(curves)
        blinks.append(starts)
    return Performance(fps, n, controls, frame_labels(speaking), book.sorted(), blinks)
