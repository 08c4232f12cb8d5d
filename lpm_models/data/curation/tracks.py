"""Stage 2: face tracks in one shot (MediaPipe detection + per-person face-mesh tracking).

Frames are analysed at reduced resolution (``cfg.decode.analysis_max_side``). The face detector
runs every ``detect_every`` frames over the whole frame; a detection not overlapping an active
track starts a new one. Every track owns a face mesh in video mode (``static_image_mode=False``,
one face) that is fed a square region around that person only, so split-screen calls and
multi-person shots cost one mesh pass per face and identities never swap. Short misses are
interpolated; long gaps or jumps break a track. Outputs are in source pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.config import CurationConfig, TrackConfig
from lpm_models.data.curation.pose import head_pose, mouth_opening
from lpm_models.data.curation.types import FaceTrack, Rejected, Shot
from lpm_models.data.curation.video_io import analysis_size, iter_frames, probe

log = logging.getLogger(__name__)

N_POINTS = 478


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x0, y0, x1, y1 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def square_region(box: np.ndarray, scale: float) -> np.ndarray:
    """(4,) square box of side ``scale * max(w, h)`` centred on ``box`` (may leave the image)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_padded(rgb: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Contiguous crop of ``region`` (zero padded outside the image) and its integer origin."""
    x0, y0 = int(np.floor(region[0])), int(np.floor(region[1]))
    side = max(8, int(round(region[2] - region[0])))
    h, w = rgb.shape[:2]
    out = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return out, x0, y0


@dataclass
class _Live:
    """A track being followed: its mesh, mesh region and raw per-frame points (analysis px)."""

    key: int
    mesh: Any
    region: np.ndarray
    frames: list[int] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)  # (478, 3) each
    missing: int = 0

    def last_box(self) -> np.ndarray:
        p = self.points[-1]
        return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


class _Tracker:
    """Detection every K frames + one face mesh per live track."""

    def __init__(self, cfg: TrackConfig, fps: float) -> None:
        import mediapipe as mp  # heavy import, only when tracking runs

        self._mp = mp
        self.cfg = cfg
        self.max_gap = max(1, int(round(cfg.max_gap_s * fps)) // max(1, cfg.mesh_every))  # in mesh steps
        self.detector = mp.solutions.face_detection.FaceDetection(
            model_selection=cfg.detector_model, min_detection_confidence=cfg.min_detection_confidence)
        self.live: list[_Live] = []
        self.done: list[_Live] = []
        self.rounds = 0
        self.crowded_rounds = 0
        self.detections = 0
        self.next_key = 0

    def close(self) -> None:
        for track in self.live:
            self._finish(track)
        self.live = []
        self.detector.close()

    def _finish(self, track: _Live) -> None:
        track.mesh.close()
        if track.frames:
            self.done.append(track)

    def _new_mesh(self) -> Any:
        return self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=self.cfg.min_detection_confidence,
            min_tracking_confidence=self.cfg.min_tracking_confidence)

    def detect(self, rgb: np.ndarray) -> None:
        """Run the detector; start tracks for faces no live track covers."""
        h, w = rgb.shape[:2]
        result = self.detector.process(rgb)
        boxes = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            boxes.append(np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h]))
        self.rounds += 1
        self.detections += len(boxes)
        self.crowded_rounds += int(len(boxes) > self.cfg.max_faces)
        boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))  # largest faces first
        for box in boxes:
            covered = [t.last_box() if t.points else t.region for t in self.live]
            if any(box_iou(box, c) >= self.cfg.new_track_iou for c in covered):
                continue
            if len(self.live) >= self.cfg.max_faces + 1:  # enough to see the crowd; rejected later
                break
            self.live.append(_Live(self.next_key, self._new_mesh(), square_region(box, self.cfg.mesh_crop_scale)))
            self.next_key += 1

    def step(self, index: int, rgb: np.ndarray) -> None:
        """Advance every live track by one frame."""
        for track in list(self.live):
            crop, x0, y0 = crop_padded(rgb, track.region)
            result = track.mesh.process(crop)
            if not result.multi_face_landmarks:
                track.missing += 1
                if track.missing > self.max_gap:
                    self.live.remove(track)
                    self._finish(track)
                continue
            side = crop.shape[0]
            pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
            pts = pts * side + np.array([x0, y0, 0.0], dtype=np.float32)
            track.frames.append(index)
            track.points.append(pts)
            track.missing = 0
            self._maybe_recentre(track)
        self._drop_duplicates(index)

    def _drop_duplicates(self, index: int) -> None:
        """End the younger of two live tracks that follow the same face in this frame."""
        current = [t for t in self.live if t.frames and t.frames[-1] == index]
        for i, older in enumerate(current):
            for younger in current[i + 1:]:
                if younger in self.live and box_iou(older.last_box(), younger.last_box()) > 0.5:
                    self.live.remove(younger)
                    self._finish(younger)

    def _maybe_recentre(self, track: _Live) -> None:
        box = track.last_box()
        target = square_region(box, self.cfg.mesh_crop_scale)
        side = track.region[2] - track.region[0]
        shift = np.abs((target[:2] + target[2:]) / 2 - (track.region[:2] + track.region[2:]) / 2).max()
        grow = abs((target[2] - target[0]) / side - 1.0)
        if shift > self.cfg.recentre_fraction * side or grow > 2 * self.cfg.recentre_fraction:
            track.region = target


def split_segments(frames: np.ndarray, points: np.ndarray, cfg: TrackConfig,
                   max_gap: int) -> list[tuple[int, int]]:
    """Split a raw track at gaps > max_gap frames and at centre jumps: [(i0, i1)) into its samples."""
    cuts = [0]
    centre = points[:, :, :2].mean(axis=1)
    height = points[:, :, 1].max(axis=1) - points[:, :, 1].min(axis=1)
    for i in range(1, len(frames)):
        gap = frames[i] - frames[i - 1]
        jump = np.linalg.norm(centre[i] - centre[i - 1]) / max(float(height[i - 1]), 1.0) / gap
        if gap - 1 > max_gap or jump > cfg.max_jump:
            cuts.append(i)
    cuts.append(len(frames))
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _interpolate(frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill missing frames linearly: (contiguous frames (N,), points (N, 478, 3), interpolated mask (N,))."""
    full = np.arange(frames[0], frames[-1] + 1)
    flat = points.reshape(len(frames), -1)
    out = np.empty((len(full), flat.shape[1]), dtype=np.float32)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(full, frames, flat[:, j])
    return full, out.reshape(len(full), *points.shape[1:]), ~np.isin(full, frames)


def smooth_crop_boxes(boxes: np.ndarray, scale: float, sigma_frames: float) -> np.ndarray:
    """(N, 4) square crop boxes: side scale*max(w, h), centre and side Gaussian-smoothed over time."""
    from scipy.ndimage import gaussian_filter1d

    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = scale * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    if sigma_frames > 0 and len(boxes) > 1:
        centre = gaussian_filter1d(centre, sigma_frames, axis=0, mode="nearest")
        side = gaussian_filter1d(side, sigma_frames, mode="nearest")
    half = side[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def _missed(shot: Shot, frames: np.ndarray, interpolated: np.ndarray, cfg: TrackConfig) -> float:
    """Share of the frames the mesh was scheduled to see (every ``mesh_every``-th) where it lost the face."""
    scheduled = (frames - shot.start_frame) % max(1, cfg.mesh_every) == 0
    return float((interpolated & scheduled).sum() / max(int(scheduled.sum()), 1))


def _build_track(shot: Shot, frames: np.ndarray, points: np.ndarray, interpolated: np.ndarray,
                 scale: float, frame_size: tuple[int, int], cfg: TrackConfig) -> FaceTrack:
    """FaceTrack in source pixels from contiguous analysis-resolution points."""
    pts = points * np.float32(scale)  # (N, 478, 3): z scales like x
    xy = pts[:, :, :2]
    boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1).astype(np.float32)
    return FaceTrack(
        video_id=shot.video_id, shot_index=shot.index, track_index=-1, fps=shot.fps,
        frames=frames.astype(np.int64), boxes=boxes,
        crop_boxes=smooth_crop_boxes(boxes, cfg.crop_scale, cfg.crop_smooth_s * shot.fps),
        landmarks=xy.astype(np.float32), pose=head_pose(pts), mouth_open=mouth_opening(pts),
        meta={"interpolated_fraction": float(interpolated.mean()), "missed_fraction": _missed(shot, frames, interpolated, cfg),
              "mesh_every": cfg.mesh_every,
              "frame_width": frame_size[0], "frame_height": frame_size[1], "analysis_scale": float(scale),
              "landmarks_source": "mediapipe_face_mesh"},
    )


def check_track(track: FaceTrack, cfg: TrackConfig) -> Rejected | None:
    """Per-track rejection (face too small, extreme pose) or None."""
    height = float(np.median(track.boxes[:, 3] - track.boxes[:, 1]))
    if height < cfg.min_face_px:
        return Rejected("face_too_small", f"median face height {height:.0f} px < {cfg.min_face_px:.0f} px")
    extreme = (np.abs(track.pose[:, 0]) > cfg.max_abs_yaw) | (np.abs(track.pose[:, 1]) > cfg.max_abs_pitch)
    if extreme.mean() > cfg.max_extreme_fraction:
        return Rejected("extreme_pose", f"{extreme.mean():.0%} of frames beyond yaw {cfg.max_abs_yaw:.0f} / "
                                        f"pitch {cfg.max_abs_pitch:.0f} deg")
    return None


def track_faces(
    video_path: Path | str, shot: Shot, cfg: CurationConfig | None = None,
) -> tuple[list[FaceTrack], list[tuple[str, Rejected]]]:
    """Face tracks of one shot: (kept tracks, [(shot or track id, Rejected)]).

    Kept tracks satisfy every TrackConfig gate; track indices number all final segments of the
    shot (kept or rejected) in order of first frame, then left to right.
    """
    cfg = cfg or CurationConfig()
    info = probe(video_path)
    size = analysis_size(info.width, info.height, cfg.decode.analysis_max_side)
    frames = iter_frames(video_path, start_frame=shot.start_frame, end_frame=shot.end_frame,
                         max_side=cfg.decode.analysis_max_side, threads=cfg.decode.threads)
    return track_frames(frames, shot, cfg.tracks, scale=info.width / size[0], frame_size=(info.width, info.height))


def track_frames(
    frames: Iterable[tuple[int, np.ndarray]], shot: Shot, tc: TrackConfig, *, scale: float,
    frame_size: tuple[int, int],
) -> tuple[list[FaceTrack], list[tuple[str, Rejected]]]:
    """Face tracks of one shot from its ``(absolute index, (H, W, 3) uint8 RGB)`` analysis frames.

    ``scale``: source pixels per analysis pixel; ``frame_size``: source (width, height). Returns
    what :func:`track_faces` returns; that function feeds this one from a video file.
    """
    tracker = _Tracker(tc, shot.fps)
    seen = 0
    try:
        for index, rgb in frames:
            seen += 1
            if (index - shot.start_frame) % max(1, tc.detect_every) == 0:
                tracker.detect(rgb)
            if (index - shot.start_frame) % max(1, tc.mesh_every) == 0 or index == shot.end_frame - 1:
                tracker.step(index, rgb)
    finally:
        tracker.close()
    log.debug("%s: %d detection rounds, %d detections, %d raw tracks", shot.shot_id, tracker.rounds,
              tracker.detections, len(tracker.done))
    if tracker.rounds and tracker.crowded_rounds / tracker.rounds >= tc.too_many_fraction:
        return [], [(shot.shot_id, Rejected("too_many_faces", f"more than {tc.max_faces} faces in "
                                            f"{tracker.crowded_rounds}/{tracker.rounds} detection rounds"))]
    if not tracker.done:
        return [], [(shot.shot_id, Rejected("no_face", f"no face found in {tracker.rounds} detection rounds "
                                                       f"over {seen} frames"))]
    return _finalise(shot, tracker, scale, frame_size, tc)


def _finalise(shot: Shot, tracker: _Tracker, scale: float, frame_size: tuple[int, int],
              tc: TrackConfig) -> tuple[list[FaceTrack], list[tuple[str, Rejected]]]:
    """Split raw tracks into segments, build FaceTracks, number them and apply the gates."""
    pieces: list[tuple[int, float, FaceTrack | None, np.ndarray, np.ndarray]] = []
    min_frames = tc.min_track_s * shot.fps
    for raw in tracker.done:
        frames, points = np.asarray(raw.frames), np.stack(raw.points)
        for a, b in split_segments(frames, points, tc, tracker.max_gap * max(1, tc.mesh_every)):
            seg_frames, seg_points = frames[a:b], points[a:b]
            x = float(seg_points[0, :, 0].mean())
            if seg_frames[-1] - seg_frames[0] + 1 < min_frames:
                pieces.append((int(seg_frames[0]), x, None, seg_frames, seg_points))
                continue
            full, pts, interp = _interpolate(seg_frames, seg_points)
            pieces.append((int(full[0]), x, _build_track(shot, full, pts, interp, scale, frame_size, tc),
                           seg_frames, seg_points))
    pieces.sort(key=lambda p: (p[0], p[1]))
    kept: list[FaceTrack] = []
    rejected: list[tuple[str, Rejected]] = []
    for k, (_, _, track, seg_frames, _) in enumerate(pieces):
        track_id = f"{shot.shot_id}-t{k}"
        if track is None:
            span = (seg_frames[-1] - seg_frames[0] + 1) / shot.fps
            rejected.append((track_id, Rejected("broken_track", f"segment of {span:.2f} s (frames {seg_frames[0]}-"
                                                                f"{seg_frames[-1]}) < {tc.min_track_s:.2f} s")))
            continue
        track.track_index = k
        reason = check_track(track, tc)
        if reason is not None:
            rejected.append((track_id, reason))
        else:
            kept.append(track)
    return kept, rejected
