"""Motion Dynamics: does the character move like the reference performance, and react when listening?

Each frame becomes a 10-d motion vector from the shared face-mesh pass: head yaw / pitch / roll
(minus their median, so resting posture and face shape do not count), their angular velocities,
mouth opening, and mouth width, brow height and eye opening (minus their medians). Each dimension
is divided by a fixed typical spread (:data:`SCALES`, the ground-truth corpus' standard deviation)
so all count alike and figures compare across cases. Reported:

- ``motion_fd``          Frechet distance between the video's and the reference performance's
                         motion distributions (truth needed), >= 0; 0 = same distribution. A frozen
                         character scores ~ the reference's total variance (~8-10)
- ``motion_fd_speak``    the same on speaking frames only
- ``listen_fd``          the same on listening frames only
- ``listen_paired_fd``   Frechet distance of (listener motion, speaker loudness) pairs on listening
                         frames: the joint distribution of reaction and the heard speech, >= 0
- ``listen_rpcc``        residual Pearson correlation: mean over motion dimensions of
                         |r(video motion, speaker loudness) - r(reference motion, speaker loudness)|
                         on listening frames, in [0, 2]; 0 = reacts to speech as the reference does
- ``motion_diversity``   mean standard deviation of the normalised motion vector over time, >= 0
                         (ground truth ~0.8-1; a frozen character 0); ``_ratio`` vs the reference
- ``motion_energy``      mean head angular speed in deg/s
- ``still_fraction``     share of frame-to-frame steps that leave the picture unchanged (frozen), [0, 1]

Speaking / listening frames come from the truth labels when given, else from the case audio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from quality.bench.case import LISTEN, SPEAK, CaseAudio
from quality.bench.features import FaceFeatures
from quality.bench.stats import correlation, frechet_of

log = logging.getLogger(__name__)

MOTION_NAMES = ("yaw", "pitch", "roll", "yaw_speed", "pitch_speed", "roll_speed",
                "mouth_open", "mouth_width", "brow", "eye_open")
# typical spread of each dimension (deg, deg/s, face heights, inter-ocular distances, ratio)
SCALES = np.array([2.5, 3.0, 2.0, 10.0, 15.0, 6.0, 0.05, 0.02, 0.015, 0.06])
LOUDNESS_SCALE_DB = 10.0


@dataclass(frozen=True)
class MotionMetricConfig:
    """smooth_s: Gaussian sigma before velocities; min_frames: fewest frames a distribution needs;
    still_change: frame steps changing the picture by at most this (grey levels, 0..1) are frozen;
    correlation_smooth_s: Gaussian sigma of the series the listening correlations compare."""

    smooth_s: float = 0.06
    min_frames: int = 12
    still_change: float = 2.5 / 255.0
    correlation_smooth_s: float = 0.3


def motion_vectors(features: FaceFeatures, cfg: MotionMetricConfig | None = None) -> np.ndarray:
    """(n_frames, 10) normalised motion vectors on the video timeline (see :data:`MOTION_NAMES`)."""
    cfg = cfg or MotionMetricConfig()
    sig = features.signals()
    pose = np.column_stack([sig.yaw, sig.pitch, sig.roll]).astype(np.float64)
    smooth = gaussian_filter1d(pose, max(0.5, cfg.smooth_s * sig.fps), axis=0, mode="nearest")
    speed = np.gradient(smooth, axis=0) * sig.fps if len(pose) > 1 else np.zeros_like(pose)
    eye = sig.ear / max(float(np.median(sig.ear)), 1e-6) - 1.0
    columns = np.column_stack([
        pose - np.median(pose, axis=0), speed, sig.mouth_open,
        sig.mouth_width - np.median(sig.mouth_width), sig.brow - np.median(sig.brow), eye,
    ]) / SCALES
    return features.on_timeline(columns)


def still_fraction(features: FaceFeatures, cfg: MotionMetricConfig) -> float:
    """Share of frame-to-frame steps whose picture does not change (``frame_change`` <= ``still_change``)."""
    steps = np.asarray(features.frame_change[1:], dtype=np.float64)
    return float(np.mean(steps <= cfg.still_change)) if len(steps) else 1.0


def loudness(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) loudness of ``audio`` in dB above its floor, divided by 10 dB (speaker activity)."""
    from lpm_models.data.curation.sync import loudness_envelope

    db = loudness_envelope(audio, sample_rate, fps, n_frames)
    floor = np.percentile(db, 99) - 45.0
    return (np.maximum(db, floor) - floor) / LOUDNESS_SCALE_DB


def _fd(x: np.ndarray, y: np.ndarray, cfg: MotionMetricConfig) -> float | None:
    if len(x) < cfg.min_frames or len(y) < cfg.min_frames:
        return None
    return round(frechet_of(x, y), 4)


def residual_pcc(video: np.ndarray, reference: np.ndarray, activity: np.ndarray, fps: float,
                 cfg: MotionMetricConfig) -> float:
    """Mean over dimensions of |r(video dim, activity) - r(reference dim, activity)| (series smoothed)."""
    sigma = max(0.5, cfg.correlation_smooth_s * fps)
    v, r = gaussian_filter1d(video, sigma, axis=0), gaussian_filter1d(reference, sigma, axis=0)
    a = gaussian_filter1d(activity, sigma)
    return float(np.mean([abs(correlation(v[:, k], a) - correlation(r[:, k], a)) for k in range(v.shape[1])]))


def _listening(vectors: np.ndarray, ref: np.ndarray | None, mask: np.ndarray, activity: np.ndarray | None,
               fps: float, cfg: MotionMetricConfig) -> dict[str, Any]:
    """Listening-frame metrics (FD, paired FD, rPCC) where the reference and speaker audio allow."""
    out: dict[str, Any] = {"listen_s": round(float(mask.sum()) / fps, 2)}
    if ref is None or mask.sum() < cfg.min_frames:
        return out
    out["listen_fd"] = _fd(vectors[mask], ref[mask], cfg)
    if activity is None:
        return out
    act = activity[:, None]
    out["listen_paired_fd"] = _fd(np.hstack([vectors, act])[mask], np.hstack([ref, act])[mask], cfg)
    out["listen_rpcc"] = round(residual_pcc(vectors[mask], ref[mask], activity[mask], fps, cfg), 4)
    return out


def motion_metrics(features: FaceFeatures, states: np.ndarray | None = None, audio: CaseAudio | None = None,
                   reference: FaceFeatures | None = None, cfg: MotionMetricConfig | None = None) -> dict[str, Any]:
    """Motion statistics of a video, against a reference performance when one is given.

    states: (N,) label codes (speak / listen / idle); audio: the case audio (its ``listen`` channel
    is the speaker activity of the listening metrics); reference: truth features of the same case.
    """
    cfg = cfg or MotionMetricConfig()
    if features.track is None:
        return {"assessable": False, "detail": "no face tracked", "motion_diversity": 0.0, "still_fraction": 1.0}
    fps, n = features.fps, features.n_frames
    vectors = motion_vectors(features, cfg)
    out: dict[str, Any] = {
        "motion_diversity": round(float(vectors.std(axis=0).mean()), 4),
        "motion_energy": round(float(np.linalg.norm(vectors[:, 3:6] * SCALES[3:6], axis=1).mean()), 3),
        "still_fraction": round(still_fraction(features, cfg), 4), "assessable": True,
    }
    ref = None
    if reference is not None and reference.track is not None:
        ref = motion_vectors(reference, cfg)
        m = min(len(ref), n)
        ref, vectors = ref[:m], vectors[:m]
        out["motion_fd"] = _fd(vectors, ref, cfg)
        ref_div = float(ref.std(axis=0).mean())
        out["motion_diversity_ratio"] = round(out["motion_diversity"] / ref_div, 4) if ref_div > 0 else None
    if states is None:
        return out
    states = np.asarray(states)[:len(vectors)]
    speak, listen = states == SPEAK, states == LISTEN
    if ref is not None:
        out["motion_fd_speak"] = _fd(vectors[speak], ref[speak], cfg)
    activity = None
    if audio is not None and audio.listen is not None:
        activity = loudness(audio.listen, audio.sample_rate, fps, len(vectors))
    return out | _listening(vectors, ref, listen, activity, fps, cfg)
