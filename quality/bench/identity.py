"""Identity Consistency: does the character stay the person of its reference image, all video long?

dlib measure (always available): the Euclidean distance between the reference image's dlib
128-d descriptor and the descriptor of each face crop the shared feature pass embedded (one every
``FeatureConfig.embed_every_s``). dlib's own rule: same person < 0.6 (ground-truth renders of the
synthetic corpus sit at ~0.2-0.35, other people at > 0.6). Reported:

- ``identity_distance_mean`` / ``_p95`` / ``_max``  distance statistics over the sampled frames, >= 0
- ``identity_fail_fraction``  share of sampled frames beyond ``threshold`` (0.6), in [0, 1]
- ``identity_drift_per_min``  least-squares slope of the distance over time, per minute of video
  (long-form drift; ~0 when stable, > 0 when the face slowly turns into someone else)
- ``identity_drift_delta``    mean distance of the last quarter minus the first quarter
- ``identity_embedded_fraction`` share of sampled crops in which dlib found a face, in [0, 1]

ArcFace (optional): with ArcFace weights, ``csim_mean`` / ``csim_p5`` are the cosine similarities
of ArcFace embeddings of aligned 112 x 112 faces to the reference (in [-1, 1], higher is better),
the CSIM peers report; see :mod:`.arcface`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quality.bench.features import FaceFeatures, VideoSource, embed_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdentityMetricConfig:
    """threshold: dlib distance beyond which a frame shows someone else."""

    threshold: float = 0.6


def drift_slope(times_s: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` over ``times_s``, per minute (0 with fewer than 3 points)."""
    t, v = np.asarray(times_s, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(t) < 3 or np.ptp(t) <= 0:
        return 0.0
    return float(np.polyfit(t / 60.0, v, 1)[0])


def distance_metrics(times_s: np.ndarray, distances: np.ndarray, threshold: float) -> dict[str, float]:
    """Summary statistics of a distance-to-reference series (see the module docstring)."""
    d = np.asarray(distances, dtype=np.float64)
    quarter = max(1, len(d) // 4)
    return {
        "identity_distance_mean": round(float(d.mean()), 4),
        "identity_distance_p95": round(float(np.percentile(d, 95)), 4),
        "identity_distance_max": round(float(d.max()), 4),
        "identity_fail_fraction": round(float(np.mean(d > threshold)), 4),
        "identity_drift_per_min": round(drift_slope(times_s, d), 4),
        "identity_drift_delta": round(float(d[-quarter:].mean() - d[:quarter].mean()), 4),
    }


def identity_metrics(features: FaceFeatures, reference: np.ndarray,
                     cfg: IdentityMetricConfig | None = None) -> dict[str, Any]:
    """dlib identity distances of a video to its reference.

    reference: (H, W, 3) uint8 RGB reference image, or its (128,) dlib descriptor.
    """
    cfg = cfg or IdentityMetricConfig()
    ref = np.asarray(reference)
    ref_vec = ref.astype(np.float64) if ref.shape == (128,) else embed_image(ref)
    found = np.isfinite(features.embeddings[:, 0]) if len(features.embeddings) else np.zeros(0, bool)
    sampled = len(features.embed_frames)
    out: dict[str, Any] = {"identity_embedded_fraction": round(float(found.mean()), 4) if sampled else 0.0,
                           "identity_samples": int(found.sum())}
    if not found.any():
        log.warning("identity: no embeddable face in %d sampled frames", sampled)
        return out | {"identity_distance_mean": float("nan"), "identity_fail_fraction": 1.0, "assessable": False}
    distances = np.linalg.norm(features.embeddings[found] - ref_vec, axis=1)
    times = features.embed_frames[found] / features.fps
    return out | distance_metrics(times, distances, cfg.threshold) | {"assessable": True}


def arcface_metrics(video: VideoSource, features: FaceFeatures, reference_image: np.ndarray,
                    weights: Path | str) -> dict[str, Any]:
    """ArcFace CSIM of the sampled frames to the reference image (needs ArcFace weights)."""
    from quality.bench.arcface import csim_series, load_arcface

    if features.track is None:
        raise ValueError("CSIM needs a tracked face; none was found in this video")
    model = load_arcface(weights)
    sims = csim_series(model, video, features.track, features.embed_frames, reference_image)
    return {"csim_mean": round(float(sims.mean()), 4), "csim_p5": round(float(np.percentile(sims, 5)), 4),
            "csim_drift_per_min": round(drift_slope(features.embed_frames / features.fps, sims), 4)}
