"""One perception pass per evaluated video, shared by every LPM-Bench metric.

``extract_features(video)`` tracks the character's face with curation's face-mesh tracker
(:func:`lpm_models.data.curation.tracks.track_frames`: 478 landmarks, head pose, mouth opening
per frame) and embeds a face crop every ``embed_every_s`` seconds with dlib's 128-d identity
encoder (:class:`lpm_models.data.curation.identity.FaceEncoder`). The result, a
:class:`FaceFeatures`, is all the sync, identity, motion and text-control metrics need, so a
video is decoded twice (tracking, then the sampled crops) and never again. Features can be saved
and loaded (``.npz``) so a runner can cache them per case.

A video is a file (decoded with curation's robust reader) or an in-memory ``(N, H, W, 3)``
uint8 RGB array with its frame rate (:class:`VideoSource`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lpm_models.data.curation.config import TrackConfig
from lpm_models.data.curation.crops import square_crop
from lpm_models.data.curation.identity import EMBEDDING_DIM, FaceEncoder
from lpm_models.data.curation.tracks import track_frames
from lpm_models.data.curation.types import FaceTrack, Shot, load_npz, save_npz
from lpm_models.data.curation.understanding import FaceSignals, face_signals
from lpm_models.data.curation.video_io import analysis_size, iter_frames, probe, read_audio

log = logging.getLogger(__name__)

# Generated videos are judged, not curated: keep short, small, turned or crowded faces.
BENCH_TRACKING = TrackConfig(min_track_s=0.2, min_face_px=16.0, max_extreme_fraction=1.0, max_faces=4,
                             too_many_fraction=1.01)


@dataclass(frozen=True)
class FeatureConfig:
    """How the shared pass samples a video.

    embed_every_s: seconds between identity-embedded frames; max_embeddings caps them for long-form
    (the step grows so a 1 h video costs at most ``max_embeddings`` dlib passes, ~0.1 s each).
    """

    analysis_max_side: int = 640
    embed_every_s: float = 0.4
    max_embeddings: int = 600
    crop_size: int = 192
    tracking: TrackConfig = BENCH_TRACKING

    def __post_init__(self) -> None:
        if self.embed_every_s <= 0 or self.max_embeddings < 1 or self.crop_size < 32:
            raise ValueError("embed_every_s must be > 0, max_embeddings >= 1 and crop_size >= 32")


@dataclass
class VideoSource:
    """A video to evaluate: a file path or an ``(N, H, W, 3)`` uint8 RGB array at ``fps``."""

    path: Path | None = None
    array: np.ndarray | None = None
    fps: float = 25.0

    @classmethod
    def of(cls, video: "VideoSource | Path | str | np.ndarray | Sequence[np.ndarray]",
           fps: float | None = None) -> "VideoSource":
        """Wrap a path or frames; frames need ``fps`` (files know their own)."""
        if isinstance(video, VideoSource):
            return video
        if isinstance(video, (str, Path)):
            path = Path(video)
            if not path.is_file():
                raise FileNotFoundError(f"video {path} does not exist")
            return cls(path=path, fps=fps or probe(path).fps)
        array = np.asarray(video)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or len(array) == 0:
            raise ValueError(f"frames must be a non-empty (N, H, W, 3) uint8 RGB array, got {array.shape} "
                             f"{array.dtype}")
        if not fps or fps <= 0:
            raise ValueError("in-memory frames need their frame rate: pass fps=")
        return cls(array=array, fps=float(fps))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        if self.array is not None:
            return int(self.array.shape[2]), int(self.array.shape[1])
        info = probe(self.path)  # type: ignore[arg-type]
        return info.width, info.height

    def frames(self, start: int = 0, end: int | None = None,
               max_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, (H, W, 3) uint8 RGB)`` for ``start <= index < end``, downscaled to ``max_side``."""
        if self.path is not None:
            yield from iter_frames(self.path, start_frame=start, end_frame=end, max_side=max_side)
            return
        assert self.array is not None
        stop = len(self.array) if end is None else min(end, len(self.array))
        width, height = self.size
        target = analysis_size(width, height, max_side)
        for index in range(start, stop):
            rgb = self.array[index]
            if target != (width, height):
                rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
            yield index, np.ascontiguousarray(rgb)

    def audio(self, sample_rate: int = 16000) -> np.ndarray | None:
        """(S,) float32 mono audio track of the file (None for in-memory frames or a silent file)."""
        if self.path is None or not probe(self.path).has_audio:
            return None
        return read_audio(self.path, sample_rate=sample_rate).samples


@lru_cache(maxsize=1)
def face_encoder() -> FaceEncoder:
    """The process-wide dlib encoder (its model files load once, on first use)."""
    return FaceEncoder()


def embed_image(image: np.ndarray, max_side: int = 320) -> np.ndarray:
    """(128,) dlib descriptor of the largest face in an RGB image; raises if there is none."""
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"reference image must be (H, W, 3) RGB, got {rgb.shape}")
    height, width = rgb.shape[:2]
    target = analysis_size(width, height, max_side)
    if target != (width, height):
        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
    vector = face_encoder().embed_crop(rgb.astype(np.uint8))
    if vector is None:
        raise ValueError("no face found in the reference image (dlib HOG detector); pass a frontal portrait")
    return vector


@dataclass
class FaceFeatures:
    """What the shared pass saw in one video of ``n_frames`` frames at ``fps``.

    track:        the character's face track (longest one; None if no face was found) with
                  landmarks (T, 478, 2) px, pose (T, 3) deg, mouth_open (T,) on frames track.frames
    embed_frames: (K,) absolute frames that were identity-embedded
    embeddings:   (K, 128) dlib descriptors; NaN rows where dlib found no face in the crop
    frame_change: (n_frames,) largest grey-level change from the previous frame (0..1, on 64 x 64
                  thumbnails; frame 0 reads 0): ~0 on repeated (frozen) frames
    """

    fps: float
    n_frames: int
    frame_size: tuple[int, int]
    track: FaceTrack | None
    embed_frames: np.ndarray
    embeddings: np.ndarray
    frame_change: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    _signals: FaceSignals | None = field(default=None, repr=False, compare=False)

    @property
    def coverage(self) -> float:
        """Fraction of frames with a tracked face (interpolated short misses count)."""
        return 0.0 if self.track is None else len(self.track.frames) / max(self.n_frames, 1)

    def signals(self) -> FaceSignals:
        """Per-track-frame face signals (curation's understanding measures), computed once."""
        if self.track is None:
            raise ValueError("no face was tracked in this video")
        if self._signals is None:
            self._signals = face_signals(self.track)
        return self._signals

    def on_timeline(self, values: np.ndarray) -> np.ndarray:
        """(n_frames, ...) copy of per-track-frame ``values`` over the whole video (edges held)."""
        if self.track is None:
            raise ValueError("no face was tracked in this video")
        values = np.asarray(values, dtype=np.float64)
        rows = np.clip(np.arange(self.n_frames) - int(self.track.frames[0]), 0, len(self.track.frames) - 1)
        return values[rows]

    def save(self, path: Path) -> None:
        """Write everything to one ``.npz`` file."""
        meta = {"fps": self.fps, "n_frames": self.n_frames, "frame_size": list(self.frame_size),
                "seconds": self.seconds, "has_track": self.track is not None}
        arrays = {"embed_frames": self.embed_frames, "embeddings": self.embeddings, "frame_change": self.frame_change}
        if self.track is not None:
            meta["track"] = {k: v for k, v in vars(self.track).items() if not isinstance(v, np.ndarray)}
            arrays |= {f"track_{k}": v for k, v in vars(self.track).items() if isinstance(v, np.ndarray)}
        save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: Path) -> "FaceFeatures":
        """Read a file written by :meth:`save`."""
        meta, arrays = load_npz(path)
        track = None
        if meta["has_track"]:
            track = FaceTrack(**meta["track"], **{k[6:]: v for k, v in arrays.items() if k.startswith("track_")})
        return cls(float(meta["fps"]), int(meta["n_frames"]), tuple(meta["frame_size"]), track,
                   arrays["embed_frames"], arrays["embeddings"], arrays["frame_change"], dict(meta["seconds"]))


class Progress:
    """Logs ``features: <what> done/total (rate/s, ETA)`` at most every :data:`PROGRESS_EVERY_S` seconds."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self.t0 = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        log.info("features: %s %d/%d (%.1f/s, ETA %.0f s)", self.what, done, self.total, rate,
                 max(self.total - done, 0) / max(rate, 1e-9))


def _primary(tracks: list[FaceTrack]) -> FaceTrack | None:
    """The character's track: the longest, then the largest face."""
    if not tracks:
        return None
    return max(tracks, key=lambda t: (len(t.frames), float(np.median(t.boxes[:, 3] - t.boxes[:, 1]))))


THUMB = 64  # side of the grey thumbnails frame_change compares
PROGRESS_EVERY_S = 30.0  # long videos log tracking progress this often


def track_video(source: VideoSource, cfg: FeatureConfig) -> tuple[FaceTrack | None, np.ndarray]:
    """(primary face track or None, (n_frames,) frame_change) of a whole video."""
    width, height = source.size
    size = analysis_size(width, height, cfg.analysis_max_side)
    change: list[float] = []

    n_hint = len(source.array) if source.array is not None else probe(source.path).n_frames  # type: ignore[arg-type]

    def measured() -> Iterator[tuple[int, np.ndarray]]:
        previous = None
        progress = Progress("tracked", n_hint)
        for index, rgb in source.frames(max_side=cfg.analysis_max_side):
            grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
            thumb = grey.astype(np.float32) / 255.0
            change.append(0.0 if previous is None else float(np.abs(thumb - previous).max()))
            previous = thumb
            yield index, rgb
            progress.update(len(change))

    shot = Shot("bench", 0, 0, n_hint, source.fps)
    kept, rejected = track_frames(measured(), shot, cfg.tracking, scale=width / size[0], frame_size=(width, height))
    for subject, reason in rejected:
        log.info("features: %s not used (%s)", subject, reason)
    return _primary(kept), np.asarray(change, dtype=np.float32)


def sample_frames(source: VideoSource, frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame, (H, W, 3) uint8 RGB)`` of the wanted absolute ``frames``, in order, in one decode."""
    wanted = {int(f) for f in frames}
    if not wanted:
        return
    for index, rgb in source.frames(min(wanted), max(wanted) + 1):
        if index in wanted:
            yield index, rgb


def sample_crops(source: VideoSource, track: FaceTrack, frames: Sequence[int],
                 size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame, (size, size, 3) uint8)`` face crops of ``track`` at absolute ``frames`` (one decode)."""
    base = int(track.frames[0])
    for index, rgb in sample_frames(source, frames):
        yield index, square_crop(rgb, track.crop_boxes[index - base], size)


def embed_frames_of(track: FaceTrack, fps: float, cfg: FeatureConfig) -> np.ndarray:
    """(K,) absolute frames to embed: every ``embed_every_s``, at most ``max_embeddings``."""
    n = len(track.frames)
    step = max(1, int(round(cfg.embed_every_s * fps)), int(np.ceil(n / cfg.max_embeddings)))
    rows = np.arange(0, n, step)
    return np.asarray(track.frames)[rows].astype(np.int64)


def extract_features(video: VideoSource | Path | str | np.ndarray, fps: float | None = None,
                     cfg: FeatureConfig | None = None) -> FaceFeatures:
    """Track the face and embed sampled crops of one video (see the module docstring)."""
    cfg = cfg or FeatureConfig()
    source = VideoSource.of(video, fps)
    t0 = time.perf_counter()
    track, change = track_video(source, cfg)
    n_frames = len(change)
    t1 = time.perf_counter()
    if track is None:
        log.warning("features: no face tracked in %d frames", n_frames)
        empty = np.zeros((0, EMBEDDING_DIM))
        return FaceFeatures(source.fps, n_frames, source.size, None, np.zeros(0, np.int64), empty, change,
                            {"track": t1 - t0, "embed": 0.0})
    frames = embed_frames_of(track, source.fps, cfg)
    vectors = np.full((len(frames), EMBEDDING_DIM), np.nan)
    position = {int(f): i for i, f in enumerate(frames)}
    encoder = face_encoder()
    progress = Progress("embedded", len(frames))
    for k, (frame, crop) in enumerate(sample_crops(source, track, frames, cfg.crop_size)):
        vector = encoder.embed_crop(crop)
        if vector is not None:
            vectors[position[frame]] = vector
        progress.update(k + 1)
    t2 = time.perf_counter()
    found = int(np.isfinite(vectors[:, 0]).sum())
    log.info("features: %d frames, face on %.0f%%, %d/%d crops embedded; track %.1f s (%.0f fps), embed %.1f s",
             n_frames, 100.0 * len(track.frames) / max(n_frames, 1), found, len(frames), t1 - t0,
             n_frames / max(t1 - t0, 1e-9), t2 - t1)
    return FaceFeatures(source.fps, n_frames, source.size, track, frames, vectors, change,
                        {"track": t1 - t0, "embed": t2 - t1})


def summary(features: FaceFeatures) -> dict[str, Any]:
    """Summary of a feature pass for reports (coverage, counts, timings)."""
    found = int(np.isfinite(features.embeddings[:, 0]).sum()) if len(features.embeddings) else 0
    return {"frames": features.n_frames, "face_coverage": round(features.coverage, 4),
            "embedded": found, "sampled": int(len(features.embed_frames)),
            "seconds": {k: round(v, 2) for k, v in features.seconds.items()}}
