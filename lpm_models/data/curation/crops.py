"""Square face crops from a source video: one face track -> a fixed-size face video.

Crop boxes come from :class:`~lpm_models.data.curation.types.FaceTrack` (source pixel space,
square, possibly reaching past the image edge: the outside is filled by edge replication so
the face stays centred). Frame indices are absolute source-frame indices; the output may be
resampled to another frame rate by nearest source frame.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lpm_models.data.curation.types import FaceTrack
from lpm_models.data.curation.video_io import iter_frames as decode_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropRequest:
    """One crop to cut: ``box`` (x0, y0, x1, y1) from absolute source frame ``frame``."""

    key: Hashable
    frame: int
    box: tuple[float, float, float, float]


def box_tuple(box: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    """(4,) box -> (x0, y0, x1, y1) floats."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1


def square_crop(frame: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Cut ``box`` out of an (H, W, 3) uint8 frame and resize it to (size, size, 3) uint8.

    The box is made square around its centre (side = max of width, height); parts outside
    the frame are filled by replicating the edge pixels.
    """
    if size < 8:
        raise ValueError(f"crop size must be >= 8 px, got {size}")
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    if not np.isfinite(side) or side <= 1.0:
        raise ValueError(f"crop box {tuple(box)} is empty or not finite")
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    scale = size / side
    # maps source pixel centres to output pixel centres
    matrix = np.array([[scale, 0.0, size / 2.0 - cx * scale - 0.5 + 0.5 * scale],
                       [0.0, scale, size / 2.0 - cy * scale - 0.5 + 0.5 * scale]], dtype=np.float64)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(np.ascontiguousarray(frame), matrix, (size, size), flags=interp,
                          borderMode=cv2.BORDER_REPLICATE)


def iter_frames(video_path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Full-resolution frames ``start <= index < end`` as (index, (H, W, 3) uint8 RGB) pairs.

    Indices are those of every curation record (the constant-rate grid of :mod:`.video_io`).
    """
    path = Path(video_path)
    if not path.is_file():
        raise FileNotFoundError(f"source video {path} does not exist")
    yield from decode_frames(path, start_frame=start, end_frame=end, max_side=None, threads=1)


def crop_requests(video_path: Path, requests: Sequence[CropRequest], size: int) -> dict[Hashable, np.ndarray]:
    """Cut every request from one video in a single decoding pass: key -> (size, size, 3) uint8."""
    if not requests:
        return {}
    by_frame: dict[int, list[CropRequest]] = {}
    for request in requests:
        by_frame.setdefault(int(request.frame), []).append(request)
    first, last = min(by_frame), max(by_frame)
    out: dict[Hashable, np.ndarray] = {}
    for index, rgb in iter_frames(video_path, first, last + 1):
        for request in by_frame.get(index, ()):
            out[request.key] = square_crop(rgb, request.box, size)
    missing = [r.key for r in requests if r.key not in out]
    if missing:
        raise ValueError(f"{video_path} ended before frame {last}: {len(missing)} crop(s) not found "
                         f"(first missing key {missing[0]!r}); are the track frame indices from this video?")
    return out


def resample_indices(n_source: int, source_fps: float, target_fps: float) -> np.ndarray:
    """(M,) int indices into ``n_source`` frames at ``source_fps`` that sample ``target_fps``.

    M = floor(n_source * target_fps / source_fps); each output frame takes the nearest source frame.
    """
    if source_fps <= 0 or target_fps <= 0:
        raise ValueError(f"frame rates must be positive, got source {source_fps}, target {target_fps}")
    if abs(source_fps - target_fps) < 1e-6:
        return np.arange(n_source, dtype=np.int64)
    m = int(np.floor(n_source * target_fps / source_fps + 1e-9))
    idx = np.round(np.arange(m) * source_fps / target_fps).astype(np.int64)
    return np.minimum(idx, n_source - 1)


def track_span_rows(track: FaceTrack, start_frame: int, end_frame: int) -> np.ndarray:
    """(T,) row indices into the track's arrays for absolute frames [start_frame, end_frame)."""
    frames = np.asarray(track.frames)
    if end_frame <= start_frame:
        raise ValueError(f"empty span [{start_frame}, {end_frame}) of track {track.track_id}")
    if start_frame < int(frames[0]) or end_frame > int(frames[-1]) + 1:
        raise ValueError(f"span [{start_frame}, {end_frame}) lies outside track {track.track_id} "
                         f"frames [{int(frames[0])}, {int(frames[-1]) + 1})")
    return np.arange(start_frame, end_frame) - int(frames[0])


def crop_track(
    video_path: Path, track: FaceTrack, size: int = 128, start_frame: int | None = None,
    end_frame: int | None = None, target_fps: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Face video of a track span: ((T, size, size, 3) uint8 frames, (T,) absolute source frames).

    ``start_frame``/``end_frame`` default to the whole track; with ``target_fps`` the span is
    resampled by nearest source frame (labels must be resampled with the same indices).
    """
    start = int(track.frames[0]) if start_frame is None else int(start_frame)
    end = int(track.frames[-1]) + 1 if end_frame is None else int(end_frame)
    rows = track_span_rows(track, start, end)
    if target_fps is not None:
        rows = rows[resample_indices(len(rows), track.fps, target_fps)]
    source_frames = np.asarray(track.frames)[rows].astype(np.int64)
    requests = [CropRequest(i, int(f), box_tuple(track.crop_boxes[r]))
                for i, (f, r) in enumerate(zip(source_frames, rows))]
    crops = crop_requests(video_path, requests, size)
    video = np.stack([crops[i] for i in range(len(requests))])  # (T, size, size, 3)
    log.debug("cropped %d frames of %s at %d px", len(video), track.track_id, size)
    return video, source_frames


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of an (H, W, 3) uint8 image's luma (higher = sharper)."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def iter_track_crops(
    video_path: Path, wanted: Mapping[str, tuple[FaceTrack, Sequence[int]]], size: int,
) -> Iterator[tuple[str, int, np.ndarray]]:
    """Decode a video once, yielding (track_id, frame, (size, size, 3) crop) for each wanted frame.

    ``wanted`` maps track id -> (track, absolute frames of that track to crop).
    """
    plan: dict[int, list[tuple[str, np.ndarray]]] = {}
    for track_id, (track, frames) in wanted.items():
        base = int(track.frames[0])
        for frame in frames:
            row = int(frame) - base
            if not 0 <= row < len(track.frames):
                raise ValueError(f"frame {frame} is outside track {track_id}")
            plan.setdefault(int(frame), []).append((track_id, track.crop_boxes[row]))
    if not plan:
        return
    for index, rgb in iter_frames(video_path, min(plan), max(plan) + 1):
        for track_id, box in plan.get(index, ()):
            yield track_id, index, square_crop(rgb, box, size)
