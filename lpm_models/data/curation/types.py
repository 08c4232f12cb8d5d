"""Records passed between curation stages (all numpy; saved with ``save_npz``/``load_npz``).

Frame indices are absolute indices into the source video's frame sequence (at its own fps).
Pixel coordinates are in the source video's pixel space (x right, y down).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ("idle", "speak", "listen")  # per-frame label codes 0, 1, 2


def save_npz(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write JSON-able ``meta`` and named arrays to one compressed ``.npz`` file."""
    np.savez_compressed(path, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def load_npz(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a file written by :func:`save_npz`."""
    with np.load(path) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    return meta, arrays


class Rejected(Exception):
    """A subject (video, shot, track, clip) was rejected by a stage, with a reason code and detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Shot:
    """A single-shot segment [start, end) of a source video."""

    video_id: str
    index: int
    start_frame: int
    end_frame: int
    fps: float

    @property
    def duration_s(self) -> float:
        return (self.end_frame - self.start_frame) / self.fps

    @property
    def shot_id(self) -> str:
        return f"{self.video_id}-s{self.index:02d}"


@dataclass
class FaceTrack:
    """One person's face through one shot, frame by frame.

    frames:     (N,) int      absolute frame indices (contiguous)
    boxes:      (N, 4) float  detected face box x0, y0, x1, y1
    crop_boxes: (N, 4) float  smoothed square crop box x0, y0, x1, y1 (may extend past the image)
    landmarks:  (N, 478, 2) float  face-mesh points in pixels
    pose:       (N, 3) float  yaw, pitch, roll in degrees (yaw>0: turned to image right; pitch>0: chin down)
    mouth_open: (N,) float    inner-lip gap / face height (0 = closed)
    """

    video_id: str
    shot_index: int
    track_index: int
    fps: float
    frames: np.ndarray
    boxes: np.ndarray
    crop_boxes: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    mouth_open: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def track_id(self) -> str:
        return f"{self.video_id}-s{self.shot_index:02d}-t{self.track_index}"

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        scalars = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in arrays}
        save_npz(path, scalars, arrays)

    @classmethod
    def load(cls, path: Path) -> "FaceTrack":
        scalars, arrays = load_npz(path)
        return cls(**scalars, **arrays)


@dataclass
class ClipLabels:
    """Speak/listen pairing of one track.

    labels:      (N,) uint8   per frame: 0 idle, 1 speak, 2 listen (codes of LABELS)
    self_audio:  (S,) float32 the person's own speech (mono, sample_rate), silence elsewhere
    other_audio: (S,) float32 the interlocutor's speech, silence elsewhere
    sync_offset: best audio-video offset in frames on speaking frames; sync_confidence in [-1, 1]
    """

    track_id: str
    labels: np.ndarray
    self_audio: np.ndarray
    other_audio: np.ndarray
    sample_rate: int
    sync_offset: int = 0
    sync_confidence: float = 0.0

    def balance(self) -> dict[str, float]:
        n = max(len(self.labels), 1)
        return {name: float(np.sum(self.labels == code)) / n for code, name in enumerate(LABELS)}


@dataclass(frozen=True)
class ActionEvent:
    """A detected, text-describable action within a clip (frames absolute)."""

    action: str  # nod | shake | smile | tilt | look_away | blink
    start_frame: int
    end_frame: int
    strength: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
