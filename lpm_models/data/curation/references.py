"""Stage 6b: identity-aware multi-reference extraction for each training clip.

Every reference of a clip comes from OUTSIDE the clip, so the model cannot copy its target:

- appearance (exactly 1): the most frontal, sharp frame of the same identity, preferring another
  video, then another track of the same video, then the clip's own track away from the clip
  (``margin_s`` on both sides). No such frame -> ``Rejected("no_outside_reference")``.
- pose views (1-4): the best frame of each populated yaw bin, frontal bin first.
- expressions (1-8): diverse mouth-open / smile / brow-raise states (farthest-point sampling in
  pool-standardised feature space, stopping when the next one would be a near duplicate).

Planning works on track arrays only (pure, testable); rendering cuts the crops from the videos.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.crops import CropRequest, box_tuple, crop_requests
from lpm_models.data.curation.identity import TrackProfile
from lpm_models.data.curation.types import FaceTrack, Rejected

log = logging.getLogger(__name__)

KINDS = ("appearance", "pose", "expression")
# mediapipe face-mesh indices: mouth corners; eye corners (outer, inner) and lids (upper, lower); brow middles
_MOUTH = (61, 291)
_EYE_R, _EYE_L = (33, 133, 159, 145), (263, 362, 386, 374)
_BROW_R, _BROW_L = 105, 334


@dataclass(frozen=True)
class ClipSpan:
    """A training clip: absolute source frames [start_frame, end_frame) of one face track."""

    clip_id: str
    track_id: str
    video_id: str
    start_frame: int
    end_frame: int

    def __post_init__(self) -> None:
        if self.end_frame <= self.start_frame:
            raise ValueError(f"clip {self.clip_id}: empty span [{self.start_frame}, {self.end_frame})")


@dataclass(frozen=True)
class ReferenceConfig:
    """How references are chosen and cut."""

    margin_s: float = 1.0                # same-video sources stay this far from the clip
    max_pose_views: int = 4
    max_expressions: int = 8
    yaw_edges: tuple[float, ...] = (-90.0, -22.0, -8.0, 8.0, 22.0, 90.0)  # pose-view bins (degrees)
    frontal_yaw: float = 12.0            # appearance candidates prefer |yaw|, |pitch| within this
    min_expression_step: float = 0.75    # stop adding expressions closer than this (std units)
    max_candidates_per_track: int = 600  # long tracks are subsampled evenly to at most this many
    image_size: int = 128                # px of the square reference crops

    def __post_init__(self) -> None:
        if not 1 <= self.max_pose_views <= 4:
            raise ValueError(f"max_pose_views must be in [1, 4], got {self.max_pose_views}")
        if not 1 <= self.max_expressions <= 8:
            raise ValueError(f"max_expressions must be in [1, 8], got {self.max_expressions}")
        if len(self.yaw_edges) < 2 or list(self.yaw_edges) != sorted(self.yaw_edges):
            raise ValueError(f"yaw_edges must be increasing, got {self.yaw_edges}")


def _triple(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


@dataclass(frozen=True)
class ReferenceSource:
    """Where one reference image comes from (absolute frame of ``video_id``)."""

    kind: str
    track_id: str
    video_id: str
    frame: int
    yaw: float
    expression: tuple[float, float, float]  # mouth_open, smile, brow_raise (raw units)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReferenceSource":
        return cls(str(data["kind"]), str(data["track_id"]), str(data["video_id"]), int(data["frame"]),
                   float(data["yaw"]), _triple(data["expression"]))


@dataclass
class ReferencePlan:
    """The chosen sources of one clip's references."""

    clip: ClipSpan
    appearance: ReferenceSource
    poses: list[ReferenceSource]
    expressions: list[ReferenceSource]

    def sources(self) -> list[ReferenceSource]:
        return [self.appearance, *self.poses, *self.expressions]


@dataclass
class ReferenceImage:
    """A reference crop: image (H, W, 3) uint8 RGB and its source."""

    source: ReferenceSource
    image: np.ndarray


@dataclass
class ReferenceSet:
    """All reference images of one clip."""

    clip: ClipSpan
    appearance: ReferenceImage
    poses: list[ReferenceImage] = field(default_factory=list)
    expressions: list[ReferenceImage] = field(default_factory=list)

    def sources(self) -> list[ReferenceSource]:
        return [r.source for r in (self.appearance, *self.poses, *self.expressions)]


def inside_clip(video_id: str, frame: int, clip: ClipSpan, margin_frames: int = 0) -> bool:
    """True if ``frame`` of ``video_id`` lies within the clip span widened by ``margin_frames``."""
    return video_id == clip.video_id and clip.start_frame - margin_frames <= frame < clip.end_frame + margin_frames


def _landmark_distance(lm: np.ndarray, a: int | np.ndarray, b: int | np.ndarray) -> np.ndarray:
    pa = lm[:, a] if isinstance(a, int) else a
    pb = lm[:, b] if isinstance(b, int) else b
    return np.linalg.norm(pa - pb, axis=-1)


def _has_mesh(lm: np.ndarray) -> bool:
    return lm.ndim == 3 and lm.shape[1] > max(*_EYE_R, *_EYE_L, _BROW_R, _BROW_L, *_MOUTH)


def expression_features(track: FaceTrack) -> np.ndarray:
    """(N, 3) mouth_open, smile (mouth width / eye span), brow raise (brow-to-eye-corner gap / eye span).

    Brow raise is measured from the eye corners, which blinks do not move. Without a face mesh
    (landmarks of another layout) only mouth_open is filled.
    """
    lm = np.asarray(track.landmarks, dtype=np.float64)  # (N, 478, 2)
    n = len(track.frames)
    mouth = np.asarray(track.mouth_open, dtype=np.float64).reshape(n)
    if not _has_mesh(lm):
        return np.column_stack([mouth, np.zeros(n), np.zeros(n)])
    span = _landmark_distance(lm, _EYE_R[0], _EYE_L[0])
    safe = np.where(span > 1e-6, span, np.inf)
    smile = _landmark_distance(lm, *_MOUTH) / safe
    centre_r = (lm[:, _EYE_R[0]] + lm[:, _EYE_R[1]]) / 2.0
    centre_l = (lm[:, _EYE_L[0]] + lm[:, _EYE_L[1]]) / 2.0
    brow = (_landmark_distance(lm, _BROW_R, centre_r) + _landmark_distance(lm, _BROW_L, centre_l)) / (2.0 * safe)
    return np.nan_to_num(np.column_stack([mouth, smile, brow]))


def eyes_open(track: FaceTrack, closed_ratio: float = 0.6) -> np.ndarray:
    """(N,) bool: eye opening (lid gap / eye width, both eyes) >= ``closed_ratio`` x the track median.

    All True without a face mesh.
    """
    lm = np.asarray(track.landmarks, dtype=np.float64)
    if not _has_mesh(lm):
        return np.ones(len(track.frames), dtype=bool)
    ratios = []
    for outer, inner, upper, lower in (_EYE_R, _EYE_L):
        width = _landmark_distance(lm, outer, inner)
        ratios.append(_landmark_distance(lm, upper, lower) / np.where(width > 1e-6, width, np.inf))
    opening = np.mean(ratios, axis=0)
    median = float(np.median(opening))
    return opening >= closed_ratio * median if median > 0 else np.ones(len(opening), dtype=bool)


@dataclass
class _Pool:
    """Candidate frames of one identity outside one clip (parallel arrays)."""

    track_ids: np.ndarray   # (P,) str
    video_ids: np.ndarray   # (P,) str
    frames: np.ndarray      # (P,) int absolute
    tier: np.ndarray        # (P,) 0 other video, 1 same video other track, 2 same track
    pose: np.ndarray        # (P, 3) yaw, pitch, roll
    expression: np.ndarray  # (P, 3)
    quality: np.ndarray     # (P,) sharpness x face size, normalised per track to its median

    def source(self, i: int, kind: str) -> ReferenceSource:
        return ReferenceSource(kind, str(self.track_ids[i]), str(self.video_ids[i]), int(self.frames[i]),
                               round(float(self.pose[i, 0]), 2),
                               _triple(np.round(self.expression[i], 4)))


def _track_candidates(track: FaceTrack, clip: ClipSpan, margin: int, limit: int,
                      profile: TrackProfile | None) -> dict[str, np.ndarray] | None:
    frames = np.asarray(track.frames, dtype=np.int64)
    outside = ~((track.video_id == clip.video_id) & (frames >= clip.start_frame - margin)
                & (frames < clip.end_frame + margin))
    if not outside.any():
        return None
    open_eyes = outside & eyes_open(track)
    rows = np.flatnonzero(open_eyes if open_eyes.any() else outside)
    if len(rows) == 0:
        return None
    if len(rows) > limit:
        rows = rows[np.linspace(0, len(rows) - 1, limit).round().astype(np.int64)]
    boxes = np.asarray(track.boxes, dtype=np.float64)[rows]
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    sharp = profile.sharpness_at(frames[rows]) if profile is not None else np.ones(len(rows))
    quality = np.sqrt(np.maximum(sharp, 1e-6)) * np.maximum(size, 1e-6)
    tier = 2 if track.track_id == clip.track_id else (1 if track.video_id == clip.video_id else 0)
    return {"frames": frames[rows], "pose": np.asarray(track.pose, dtype=np.float64)[rows],
            "expression": expression_features(track)[rows], "quality": quality / np.median(quality),
            "tier": np.full(len(rows), tier)}


def _build_pool(clip: ClipSpan, tracks: Sequence[FaceTrack], margin: int, limit: int,
                profiles: Mapping[str, TrackProfile]) -> _Pool | None:
    parts, ids, videos = [], [], []
    for track in tracks:
        cand = _track_candidates(track, clip, margin, limit, profiles.get(track.track_id))
        if cand is None:
            continue
        parts.append(cand)
        ids.append(np.full(len(cand["frames"]), track.track_id, dtype=object))
        videos.append(np.full(len(cand["frames"]), track.video_id, dtype=object))
    if not parts:
        return None
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _Pool(np.concatenate(ids), np.concatenate(videos), cat["frames"], cat["tier"], cat["pose"],
                 cat["expression"], cat["quality"])


def _pick_appearance(pool: _Pool, cfg: ReferenceConfig) -> int:
    """Index of the best frontal, sharp frame in the best available tier."""
    tier = pool.tier.min()
    in_tier = pool.tier == tier
    off_axis = np.hypot(pool.pose[:, 0], pool.pose[:, 1])
    frontal = in_tier & (off_axis <= cfg.frontal_yaw)
    candidates = frontal if frontal.any() else in_tier
    score = pool.quality - 0.05 * off_axis - 0.5 * np.abs(pool.expression[:, 0] - np.median(pool.expression[:, 0]))
    score = np.where(candidates, score, -np.inf)
    return int(np.argmax(score))


def _pick_poses(pool: _Pool, cfg: ReferenceConfig) -> list[int]:
    """Best frame per populated yaw bin (frontal bin first, then the most populated), at most max_pose_views."""
    bins = np.digitize(np.clip(pool.pose[:, 0], cfg.yaw_edges[0], cfg.yaw_edges[-1] - 1e-6), cfg.yaw_edges) - 1
    frontal_bin = int(np.digitize(0.0, cfg.yaw_edges) - 1)
    populated = [b for b in np.unique(bins) if b >= 0]
    populated.sort(key=lambda b: (b != frontal_bin, -int(np.sum(bins == b)), b))
    score = pool.quality - 0.05 * np.abs(pool.pose[:, 1])
    picks = []
    for b in populated[: cfg.max_pose_views]:
        members = np.flatnonzero(bins == b)
        picks.append(int(members[np.argmax(score[members])]))
    return picks


def _pick_expressions(pool: _Pool, cfg: ReferenceConfig) -> list[int]:
    """Farthest-point sampling over standardised expression features, starting near neutral."""
    feats = pool.expression
    scale = np.maximum(feats.std(axis=0), 1e-3 * np.maximum(np.abs(feats).mean(axis=0), 1e-6))
    z = (feats - np.median(feats, axis=0)) / scale  # (P, 3)
    first = int(np.argmin(np.linalg.norm(z, axis=1) - 1e-3 * pool.quality))
    picks = [first]
    nearest = np.linalg.norm(z - z[first], axis=1)
    while len(picks) < cfg.max_expressions:
        nxt = int(np.argmax(nearest + 1e-3 * pool.quality))
        if nearest[nxt] < cfg.min_expression_step:
            break
        picks.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(z - z[nxt], axis=1))
    return picks


def plan_references(
    clip: ClipSpan, identity_tracks: Sequence[FaceTrack], cfg: ReferenceConfig | None = None,
    profiles: Mapping[str, TrackProfile] | None = None,
) -> ReferencePlan:
    """Choose the reference sources of ``clip`` among the tracks of its identity (clip's track included).

    Raises ``Rejected("no_outside_reference")`` if the identity has no frame outside the clip span
    (plus margin).
    """
    cfg = cfg or ReferenceConfig()
    own = [t for t in identity_tracks if t.track_id == clip.track_id]
    if not own:
        raise ValueError(f"clip {clip.clip_id}: its track {clip.track_id} is not among the identity's tracks")
    margin = int(round(cfg.margin_s * own[0].fps))
    pool = _build_pool(clip, identity_tracks, margin, cfg.max_candidates_per_track, profiles or {})
    if pool is None:
        raise Rejected("no_outside_reference",
                       f"clip {clip.clip_id}: its identity has no frame outside [{clip.start_frame - margin}, "
                       f"{clip.end_frame + margin}) of {clip.video_id} (one track, clip covers it)")
    plan = ReferencePlan(
        clip=clip,
        appearance=pool.source(_pick_appearance(pool, cfg), "appearance"),
        poses=[pool.source(i, "pose") for i in _pick_poses(pool, cfg)],
        expressions=[pool.source(i, "expression") for i in _pick_expressions(pool, cfg)],
    )
    leaked = [s for s in plan.sources() if inside_clip(s.video_id, s.frame, clip)]
    if leaked:  # construction guarantees this never happens; keep the invariant loud
        raise AssertionError(f"clip {clip.clip_id}: reference {leaked[0]} lies inside the clip")
    return plan


def plan_all_references(
    clips: Sequence[ClipSpan], tracks: Mapping[str, FaceTrack], identity_of: Mapping[str, str],
    cfg: ReferenceConfig | None = None, profiles: Mapping[str, TrackProfile] | None = None,
) -> tuple[list[ReferencePlan], dict[str, Rejected]]:
    """Plan every clip against all tracks of its identity: (plans, clip id -> rejection).

    ``identity_of`` maps track id -> identity label (from ``cluster_identities``); a clip whose
    track has no label is rejected with ``no_identity``.
    """
    by_identity: dict[str, list[FaceTrack]] = {}
    for track_id, label in identity_of.items():
        if track_id in tracks:
            by_identity.setdefault(label, []).append(tracks[track_id])
    plans: list[ReferencePlan] = []
    rejected: dict[str, Rejected] = {}
    for clip in clips:
        label = identity_of.get(clip.track_id)
        if label is None:
            rejected[clip.clip_id] = Rejected("no_identity", f"track {clip.track_id} has no identity embedding")
            continue
        try:
            plans.append(plan_references(clip, by_identity[label], cfg, profiles))
        except Rejected as exc:
            rejected[clip.clip_id] = exc
    log.info("references: planned %d clip(s), rejected %d", len(plans), len(rejected))
    return plans, rejected


def render_references(
    plans: Sequence[ReferencePlan], tracks: Mapping[str, FaceTrack], video_paths: Mapping[str, Path],
    cfg: ReferenceConfig | None = None,
) -> list[ReferenceSet]:
    """Cut the reference crops of many plans, decoding each source video once."""
    cfg = cfg or ReferenceConfig()
    requests: dict[str, list[CropRequest]] = {}
    for p, plan in enumerate(plans):
        for s, source in enumerate(plan.sources()):
            track = tracks.get(source.track_id)
            if track is None:
                raise KeyError(f"reference track {source.track_id} of clip {plan.clip.clip_id} was not given")
            row = source.frame - int(track.frames[0])
            box = box_tuple(track.crop_boxes[row])
            requests.setdefault(source.video_id, []).append(CropRequest((p, s), source.frame, box))
    crops: dict[Any, np.ndarray] = {}
    for video_id, reqs in requests.items():
        if video_id not in video_paths:
            raise KeyError(f"no path for source video {video_id}; pass it in video_paths")
        crops.update(crop_requests(video_paths[video_id], reqs, cfg.image_size))
    out = []
    for p, plan in enumerate(plans):
        images = [ReferenceImage(src, crops[(p, s)]) for s, src in enumerate(plan.sources())]
        n_pose = len(plan.poses)
        out.append(ReferenceSet(plan.clip, images[0], images[1:1 + n_pose], images[1 + n_pose:]))
    log.info("references: rendered %d set(s) from %d video(s)", len(out), len(requests))
    return out
