"""Stage 1: split a video into single-shot segments by content change detection.

Each frame (downscaled to ``cfg.shots.analysis_max_side``) gives a joint HSV histogram and a
small grey image. The change score between consecutive frames is the histogram intersection
distance plus ``pixel_weight`` times the mean absolute grey difference (both in [0, 1]). A cut
is declared where the score beats both an absolute floor and an adaptive threshold (local
median + k * MAD over a sliding window), keeping only the strongest cut within
``min_cut_gap_s``. Shots shorter than ``min_shot_s`` are rejected as ``too_short``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import median_filter

from lpm_models.data.curation.config import CurationConfig, ShotConfig
from lpm_models.data.curation.types import Rejected, Shot
from lpm_models.data.curation.video_io import DecodeReport, iter_frames, probe

log = logging.getLogger(__name__)

_GREY_SIDE = 32  # side of the grey thumbnail used for the pixel difference
_MAD_TO_SIGMA = 1.4826
_MIN_SPREAD = 0.005  # floor of the robust spread so static footage does not cut on noise


def frame_features(rgb: np.ndarray, bins: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Joint HSV histogram (prod(bins),) summing to 1 and a grey thumbnail (32, 32) in [0, 1]."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(bins), [0, 180, 0, 256, 0, 256]).ravel()
    hist /= max(float(hist.sum()), 1.0)
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (_GREY_SIDE, _GREY_SIDE), interpolation=cv2.INTER_AREA)
    return hist, grey.astype(np.float32) / 255.0


def change_scores(video_path: Path | str, cfg: ShotConfig, threads: int = 1,
                  report: DecodeReport | None = None) -> np.ndarray:
    """(N-1,) float32: change score between frame i and i+1 over the whole video (streamed)."""
    scores: list[float] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for _, rgb in iter_frames(video_path, max_side=cfg.analysis_max_side, threads=threads, report=report):
        current = frame_features(rgb, cfg.hist_bins)
        if previous is not None:
            hist_d = 1.0 - float(np.minimum(previous[0], current[0]).sum())
            pixel_d = float(np.abs(previous[1] - current[1]).mean())
            scores.append(hist_d + cfg.pixel_weight * pixel_d)
        previous = current
    return np.asarray(scores, dtype=np.float32)


def find_cuts(scores: np.ndarray, fps: float, cfg: ShotConfig) -> list[int]:
    """Frame indices where a new shot starts (a cut between frame i-1 and i gives i)."""
    if scores.size == 0:
        return []
    half = max(1, int(round(cfg.window_s * fps)))
    size = 2 * half + 1
    local = median_filter(scores, size=size, mode="nearest")
    spread = median_filter(np.abs(scores - local), size=size, mode="nearest") * _MAD_TO_SIGMA
    threshold = np.maximum(cfg.min_score, local + cfg.adaptive_k * np.maximum(spread, _MIN_SPREAD))
    candidates = np.nonzero(scores > threshold)[0]
    gap = max(1, int(round(cfg.min_cut_gap_s * fps)))
    cuts: list[int] = []
    for i in candidates[np.argsort(-scores[candidates], kind="stable")]:
        if all(abs(int(i) - c) >= gap for c in cuts):
            cuts.append(int(i))
    return sorted(c + 1 for c in cuts)


def detect_shots(
    video_path: Path | str, cfg: CurationConfig | None = None, video_id: str | None = None,
) -> tuple[list[Shot], list[tuple[Shot, Rejected]]]:
    """Split ``video_path`` into shots: (kept shots >= min_shot_s, [(short shot, Rejected)]).

    ``video_id`` defaults to the file stem. Shot indices count all shots, kept or not.
    """
    cfg = cfg or CurationConfig()
    info = probe(video_path)
    video_id = video_id or Path(video_path).stem
    report = DecodeReport()
    scores = change_scores(video_path, cfg.shots, threads=cfg.decode.threads, report=report)
    n_frames = report.yielded
    if n_frames == 0:
        raise Rejected("unreadable", f"no frame of {video_path} could be decoded ({report.first_error or 'empty'})")
    bounds = [0, *find_cuts(scores, info.fps, cfg.shots), n_frames]
    kept: list[Shot] = []
    rejected: list[tuple[Shot, Rejected]] = []
    for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        shot = Shot(video_id=video_id, index=index, start_frame=start, end_frame=end, fps=info.fps)
        if shot.duration_s + 1e-9 < cfg.shots.min_shot_s:
            rejected.append((shot, Rejected("too_short", f"{shot.duration_s:.2f} s < {cfg.shots.min_shot_s:.2f} s")))
        else:
            kept.append(shot)
    log.info("%s: %d shot(s), %d kept, %d too short; decode %s", video_id, len(bounds) - 1, len(kept),
             len(rejected), "clean" if report.clean else f"damaged ({report.errors} bad packets)")
    return kept, rejected
