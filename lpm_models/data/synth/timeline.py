"""Placing synthesized lines in time: turns, pauses, backchannels, overlaps, the audio mix.

The result keeps each person's clean voice track (what drives their mouth) next to the
mixed mono track that goes into the video, plus every utterance with its exact times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lpm_models.data.synth.script import Line, ScriptWriter
from lpm_models.data.synth.speech import Voice, synthesize

log = logging.getLogger(__name__)

NOISE_FLOOR = 0.0015  # std of the room noise added to the mix (about -56 dBFS)


@dataclass(frozen=True)
class Utterance:
    """One placed line. Times are seconds from the start of the video, end clipped to it."""

    person: int
    text: str
    kind: str
    gesture: str | None
    start_s: float
    end_s: float
    truncated: bool

    def to_dict(self) -> dict:
        return {
            "person": self.person, "text": self.text, "kind": self.kind, "gesture": self.gesture,
            "start_s": round(self.start_s, 4), "end_s": round(self.end_s, 4),
            "truncated": self.truncated,
        }


@dataclass
class Timeline:
    """Who says what when, with per-person tracks (2, N) and the mixed track (N,)."""

    duration_s: float
    sample_rate: int
    utterances: list[Utterance]
    tracks: np.ndarray
    mix: np.ndarray


Synth = Callable[[str, Voice], np.ndarray]


class _Placer:
    """Accumulates lines onto two voice tracks of a fixed length."""

    def __init__(self, voices: tuple[Voice, Voice], n_samples: int, sample_rate: int, synth: Synth) -> None:
        self.voices = voices
        self.sr = sample_rate
        self.tracks = np.zeros((2, n_samples), dtype=np.float32)
        self.utterances: list[Utterance] = []
        self.synth = synth
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def audio(self, person: int, text: str) -> np.ndarray:
        key = (text, person)
        if key not in self._cache:
            self._cache[key] = self.synth(text, self.voices[person]) * self.voices[person].gain
        return self._cache[key]

    def place(self, person: int, line: Line, start_s: float) -> float | None:
        """Put ``line`` at ``start_s``; returns its end time, or None if it starts too late."""
        n = self.tracks.shape[1]
        a = int(round(start_s * self.sr))
        if a >= n - self.sr // 10:  # less than 100 ms of room left
            return None
        pcm = self.audio(person, line.text)
        b = min(n, a + len(pcm))
        self.tracks[person, a:b] += pcm[: b - a]
        self.utterances.append(Utterance(
            person=person, text=line.text, kind=line.kind, gesture=line.gesture,
            start_s=a / self.sr, end_s=b / self.sr, truncated=b - a < len(pcm),
        ))
        return (a + len(pcm)) / self.sr


def _turn_gap(rng: np.random.Generator) -> float:
    """Offset of the next turn from the end of the current one (negative = overlap)."""
    r = rng.random()
    if r < 0.15:
        return -float(rng.uniform(0.2, 0.6))  # interruption / overlapping start
    if r < 0.27:
        return float(rng.uniform(1.5, 3.0))  # a long pause: both idle
    return float(rng.uniform(0.2, 0.8))


def build_timeline(
    rng: np.random.Generator,
    voices: tuple[Voice, Voice],
    duration_s: float,
    sample_rate: int = 16000,
    synth: Synth | None = None,
) -> Timeline:
    """Write, synthesize and place a two-person conversation filling ``duration_s`` seconds."""
    if duration_s <= 0.5:
        raise ValueError(f"duration_s must be > 0.5 s, got {duration_s}")
    speak = synth or (lambda text, voice: synthesize(text, voice, sample_rate))
    placer = _Placer(voices, int(round(duration_s * sample_rate)), sample_rate, speak)
    writer = ScriptWriter(rng)
    speaker = int(rng.integers(2))
    t = float(rng.uniform(0.2, 0.8))
    while True:
        lines = writer.next_turn()
        turn_start, end = t, None
        for i, line in enumerate(lines):
            end = placer.place(speaker, line, t)
            if end is None:
                break
            if i + 1 < len(lines):
                gap = float(rng.uniform(0.15, 0.45))
                if rng.random() < 0.4:  # the listener backchannels in the pause
                    placer.place(1 - speaker, writer.backchannel(), end + float(rng.uniform(0.0, 0.25)))
                t = end + gap
        if end is None:
            break
        t = max(end + _turn_gap(rng), turn_start + 0.8)
        speaker = 1 - speaker
    mix = placer.tracks.sum(axis=0) + rng.normal(0.0, NOISE_FLOOR, placer.tracks.shape[1]).astype(np.float32)
    np.clip(mix, -1.0, 1.0, out=mix)
    utterances = sorted(placer.utterances, key=lambda u: (u.start_s, u.person))
    log.debug("timeline: %d utterances over %.1f s", len(utterances), duration_s)
    return Timeline(duration_s, sample_rate, utterances, placer.tracks, mix.astype(np.float32))
