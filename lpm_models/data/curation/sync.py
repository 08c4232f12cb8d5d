"""Audio-video sync from landmarks: mouth opening vs audio loudness, cross-correlated.

Speaking frames are found from the video alone (the mouth moves: local std of the mouth opening
above a floor), widened by the search range so a shifted audio track still overlaps them. On
those frames the mouth-opening curve and the audio loudness envelope (dB RMS per video frame)
are correlated at every offset in ``[-max_offset, +max_offset]`` frames (Pearson r). The best
offset and its r are the sync estimate; ``offset > 0`` means the audio lags the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter1d, uniform_filter1d

from lpm_models.data.curation.config import SyncConfig

_FLOOR_DB = -100.0


@dataclass(frozen=True)
class SyncResult:
    """Sync estimate of one track. ``curve``: (2*max_offset+1,) Pearson r per offset (NaN = not computed)."""

    offset_frames: int
    confidence: float
    margin: float  # best r minus the median r over all offsets (peak prominence)
    speaking_frames: int
    assessable: bool
    detail: str
    curve: np.ndarray

    def to_dict(self) -> dict[str, object]:
        return {"offset_frames": self.offset_frames, "confidence": round(self.confidence, 4),
                "margin": round(self.margin, 4), "speaking_frames": self.speaking_frames,
                "assessable": self.assessable, "detail": self.detail}


def loudness_envelope(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) float32 RMS level in dBFS of each frame's span [i/fps, (i+1)/fps) of ``audio`` (S,).

    Frames past the end of the audio read as silence (-100 dBFS).
    """
    edges = np.round(np.arange(n_frames + 1) * (sample_rate / fps)).astype(np.int64)
    power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    lo, hi = np.minimum(edges[:-1], len(audio)), np.minimum(edges[1:], len(audio))
    count = np.maximum(hi - lo, 1)
    mean = (power[hi] - power[lo]) / count
    db = 10.0 * np.log10(np.maximum(mean, 1e-10))
    db[hi <= lo] = _FLOOR_DB
    return np.maximum(db, _FLOOR_DB).astype(np.float32)


def speaking_frames(mouth_open: np.ndarray, fps: float, cfg: SyncConfig) -> np.ndarray:
    """(N,) bool: frames whose mouth moves (local std of mouth opening > ``min_mouth_activity``)."""
    width = max(3, int(round(cfg.activity_window_s * fps)))
    mean = uniform_filter1d(mouth_open.astype(np.float64), width, mode="nearest")
    sq = uniform_filter1d(mouth_open.astype(np.float64) ** 2, width, mode="nearest")
    return np.sqrt(np.maximum(sq - mean**2, 0.0)) > cfg.min_mouth_activity


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-12 else float("nan")


def correlation_curve(mouth: np.ndarray, envelope: np.ndarray, mask: np.ndarray, max_offset: int) -> np.ndarray:
    """(2*max_offset+1,) Pearson r of mouth[i] vs envelope[i + k] over masked i, k = -max..max."""
    n = len(mouth)
    curve = np.full(2 * max_offset + 1, np.nan)
    for j, k in enumerate(range(-max_offset, max_offset + 1)):
        idx = np.nonzero(mask)[0]
        idx = idx[(idx + k >= 0) & (idx + k < n)]
        if len(idx) >= 3:
            curve[j] = _pearson(mouth[idx], envelope[idx + k])
    return curve


def measure_sync(
    mouth_open: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float, cfg: SyncConfig | None = None,
    speaking: np.ndarray | None = None, silence_dbfs: float = -50.0,
) -> SyncResult:
    """Best audio offset for a track: mouth_open (N,) per frame; audio (S,) mono aligned to frame 0.

    ``speaking`` (N,) bool overrides the mouth-activity estimate of speaking frames.
    """
    cfg = cfg or SyncConfig()
    n = len(mouth_open)
    m = cfg.max_offset_frames
    empty = np.full(2 * m + 1, np.nan)
    active = speaking_frames(mouth_open, fps, cfg) if speaking is None else np.asarray(speaking, bool)
    n_active = int(active.sum())
    if n_active < cfg.min_speaking_s * fps:
        return SyncResult(0, 0.0, 0.0, n_active, False, f"only {n_active / fps:.1f} s of mouth motion", empty)
    envelope = loudness_envelope(audio, sample_rate, fps, n)
    window = binary_dilation(active, iterations=m) if m > 0 else active
    if np.percentile(envelope[window], 95) < silence_dbfs:
        return SyncResult(0, 0.0, 0.0, n_active, False, "audio is silent where the mouth moves", empty)
    floor = np.percentile(envelope[window], 95) - 2 * cfg.voice_margin_db
    env = np.maximum(envelope, floor).astype(np.float64)  # ignore level differences below speech range
    mouth = mouth_open.astype(np.float64)
    if cfg.envelope_smooth_frames > 0:
        env = gaussian_filter1d(env, cfg.envelope_smooth_frames, mode="nearest")
        mouth = gaussian_filter1d(mouth, cfg.envelope_smooth_frames, mode="nearest")
    curve = correlation_curve(mouth, env, active, m)
    if np.all(np.isnan(curve)):
        return SyncResult(0, 0.0, 0.0, n_active, False, "signals are constant on speaking frames", curve)
    best = int(np.nanargmax(curve))
    confidence = float(curve[best])
    margin = confidence - float(np.nanmedian(curve))
    return SyncResult(best - m, confidence, margin, n_active, True, "", curve)
