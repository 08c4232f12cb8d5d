"""What a benchmark case gives the metrics besides the video: its audio, prompts and (optional) truth.

- :class:`CaseAudio` is the conditioning audio: what the character says (``speak``) and what it
  hears from the user (``listen``). Per-frame speak / listen / idle states are derived from it
  with curation's voice-activity detector, so no metric needs ground truth to know them.
- :class:`Prompt` is a timed text instruction for an action ("nod" over frames 40-62).
- :class:`BenchTruth` is ground truth, passed explicitly and only where a case has it: per-frame
  labels, the reference performance's features (for motion distributions) and aligned frames
  (for PSNR / SSIM). Metrics never look for it anywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lpm_models.data.curation.pairing import labels_for
from lpm_models.data.curation.types import LABELS
from lpm_models.data.curation.vad import speech_activity
from quality.bench.features import FaceFeatures, VideoSource

log = logging.getLogger(__name__)

SPEAK, LISTEN, IDLE = LABELS.index("speak"), LABELS.index("listen"), LABELS.index("idle")
PROMPT_ACTIONS = ("nod", "shake", "smile", "tilt", "look_away")


@dataclass
class CaseAudio:
    """speak: (S,) float32 mono the character says; listen: (S,) what it hears (or None); both
    start at video frame 0."""

    speak: np.ndarray
    listen: np.ndarray | None = None
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.speak = np.asarray(self.speak, dtype=np.float32).reshape(-1)
        if self.listen is not None:
            self.listen = np.asarray(self.listen, dtype=np.float32).reshape(-1)
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")

    def shifted(self, frames: int, fps: float) -> "CaseAudio":
        """Both channels delayed by ``frames`` video frames (negative: advanced), length kept."""
        def shift(x: np.ndarray | None) -> np.ndarray | None:
            if x is None:
                return None
            d = int(round(frames * self.sample_rate / fps))
            if d >= 0:
                return np.concatenate([np.zeros(d, np.float32), x[:len(x) - d]])
            return np.concatenate([x[-d:], np.zeros(-d, np.float32)])
        return CaseAudio(shift(self.speak), shift(self.listen), self.sample_rate)  # type: ignore[arg-type]

    def states(self, n_frames: int, fps: float) -> np.ndarray:
        """(n_frames,) uint8 label codes (curation's LABELS): speak where the character's own audio
        has voice, listen where only the other channel has, idle elsewhere."""
        speaking = speech_activity(self.speak, self.sample_rate, fps, n_frames).speech
        heard = np.zeros(n_frames, dtype=bool)
        if self.listen is not None:
            heard = speech_activity(self.listen, self.sample_rate, fps, n_frames).speech
        return labels_for(speaking, heard | speaking)


@dataclass(frozen=True)
class Prompt:
    """A timed action instruction over frames [start_frame, end_frame); ``text`` as shown to the model."""

    action: str
    start_frame: int
    end_frame: int
    text: str = ""

    def __post_init__(self) -> None:
        if self.action not in PROMPT_ACTIONS:
            raise ValueError(f"unknown prompted action {self.action!r}; expected one of {PROMPT_ACTIONS}")
        if self.end_frame <= self.start_frame:
            raise ValueError(f"empty prompt interval [{self.start_frame}, {self.end_frame})")

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "start_frame": self.start_frame, "end_frame": self.end_frame,
                "text": self.text}


@dataclass
class BenchTruth:
    """Ground truth of a case (every field optional).

    labels:   (N,) uint8 per-frame speak / listen / idle codes (curation's LABELS)
    features: the reference performance's :class:`FaceFeatures` (same extractor as the evaluated video)
    frames:   the aligned ground-truth video, for PSNR / SSIM
    """

    labels: np.ndarray | None = None
    features: FaceFeatures | None = None
    frames: VideoSource | None = None


def case_states(audio: CaseAudio | None, truth: BenchTruth | None, n_frames: int, fps: float) -> np.ndarray | None:
    """Per-frame label codes: the truth's when given, else derived from the case audio, else None."""
    if truth is not None and truth.labels is not None:
        labels = np.asarray(truth.labels, dtype=np.uint8)
        if len(labels) < n_frames:
            labels = np.concatenate([labels, np.full(n_frames - len(labels), IDLE, np.uint8)])
        return labels[:n_frames]
    if audio is None:
        return None
    return audio.states(n_frames, fps)


def prompts_of(items: Sequence[Prompt | dict[str, Any]] | None) -> list[Prompt]:
    """Prompts from objects or their dicts (as a case manifest stores them)."""
    return [p if isinstance(p, Prompt) else Prompt(**p) for p in (items or [])]
