"""Runtime state of a stream (warmup / idle / listening / responding) from audio activity.

Each channel (the character's own speech, the interlocutor's speech) runs an energy VAD
per video frame: RMS level in dBFS with hysteresis (``on_db`` to start, ``off_db`` to keep
going) and a hangover of ``hangover_frames`` after the last voiced frame. Per chunk:

- ``warmup`` for the first ``OnlineConfig.warmup`` chunks (the sink chunks being laid down);
- ``responding`` when the character's channel is active at least as much as the other;
- ``listening`` when only (or mostly) the interlocutor is active;
- ``idle`` when neither is.

Voiced frames decide first; hangover frames only break a tie when neither channel is
voiced in the chunk (a pause inside a turn keeps its state; a turn handed to the other
speaker switches at once, even while the first channel's hangover runs out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from lpm_models.online.config import VADConfig

DB_FLOOR = -120.0


class RuntimeState(str, Enum):
    WARMUP = "warmup"
    IDLE = "idle"
    LISTENING = "listening"
    RESPONDING = "responding"


@dataclass(frozen=True)
class VADState:
    """Carry-over of one channel: voiced at the last frame, hangover frames left."""

    voiced: bool = False
    hang: int = 0


@dataclass(frozen=True)
class RuntimeReport:
    """One chunk: state, per-frame activity (F,) bool of each channel (voiced or in hangover), and
    their active fractions."""

    state: RuntimeState
    chunk_index: int
    self_activity: np.ndarray
    other_activity: np.ndarray

    @property
    def self_active(self) -> float:
        return float(self.self_activity.mean()) if self.self_activity.size else 0.0

    @property
    def other_active(self) -> float:
        return float(self.other_activity.mean()) if self.other_activity.size else 0.0


@dataclass(frozen=True)
class RuntimeTracker:
    """Runtime carry-over of one stream (immutable; ``update`` returns the next tracker)."""

    self_vad: VADState = VADState()
    other_vad: VADState = VADState()
    chunks: int = 0


def frame_levels_db(samples: np.ndarray, samples_per_frame: int) -> np.ndarray:
    """(S,) float waveform in [-1, 1] -> (S / samples_per_frame,) RMS level per frame in dBFS."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size % samples_per_frame:
        raise ValueError(f"expected (S,) audio with S a multiple of {samples_per_frame}, got shape {x.shape}")
    rms = np.sqrt(np.mean(x.reshape(-1, samples_per_frame) ** 2, axis=1))
    with np.errstate(divide="ignore"):
        return np.maximum(20.0 * np.log10(rms), DB_FLOOR)


def vad_frames(levels_db: np.ndarray, state: VADState, cfg: VADConfig) -> tuple[np.ndarray, np.ndarray, VADState]:
    """Per-frame (F,) bool voiced and active (voiced or hangover) with hysteresis, and the new state."""
    active = np.zeros(len(levels_db), dtype=bool)
    voiced_frames = np.zeros(len(levels_db), dtype=bool)
    voiced, hang = state.voiced, state.hang
    for i, level in enumerate(levels_db):
        voiced = level >= cfg.on_db or (voiced and level >= cfg.off_db)
        if voiced:
            hang = cfg.hangover_frames
            active[i] = voiced_frames[i] = True
        else:
            active[i] = hang > 0
            hang = max(hang - 1, 0)
    return voiced_frames, active, VADState(voiced, hang)


def vad(levels_db: np.ndarray, state: VADState, cfg: VADConfig) -> tuple[np.ndarray, VADState]:
    """Per-frame activity (F,) bool with hysteresis and hangover, and the channel's new state."""
    _, active, new_state = vad_frames(levels_db, state, cfg)
    return active, new_state


def _fraction(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else 0.0


def decide(self_activity: np.ndarray, other_activity: np.ndarray, self_voiced: np.ndarray | None = None,
           other_voiced: np.ndarray | None = None) -> RuntimeState:
    """State of a (post-warmup) chunk: voiced fractions decide; activity (with hangover) breaks silence."""
    if self_voiced is not None and other_voiced is not None:
        s, o = _fraction(self_voiced), _fraction(other_voiced)
        if s > 0.0 or o > 0.0:
            return RuntimeState.RESPONDING if s >= o else RuntimeState.LISTENING
    s, o = _fraction(self_activity), _fraction(other_activity)
    if s > 0.0 and s >= o:
        return RuntimeState.RESPONDING
    if o > 0.0:
        return RuntimeState.LISTENING
    return RuntimeState.IDLE


def update(
    tracker: RuntimeTracker, self_audio: np.ndarray, other_audio: np.ndarray, cfg: VADConfig,
    samples_per_frame: int, warmup_chunks: int,
) -> tuple[RuntimeReport, RuntimeTracker]:
    """Advance the runtime by one chunk of audio (both channels (S,) float32 in [-1, 1])."""
    v_self, a_self, s_state = vad_frames(frame_levels_db(self_audio, samples_per_frame), tracker.self_vad, cfg)
    v_other, a_other, o_state = vad_frames(frame_levels_db(other_audio, samples_per_frame), tracker.other_vad, cfg)
    index = tracker.chunks
    state = RuntimeState.WARMUP if index < warmup_chunks else decide(a_self, a_other, v_self, v_other)
    return RuntimeReport(state, index, a_self, a_other), RuntimeTracker(s_state, o_state, index + 1)


def db_to_amplitude(db: float) -> float:
    """Sine amplitude whose RMS is ``db`` dBFS (helper for tests and probes)."""
    return math.sqrt(2.0) * 10.0 ** (db / 20.0)
