"""Evaluate one generated video on every LPM-Bench dimension.

    metrics = evaluate_video("case-0007.mp4", reference_image, audio=CaseAudio(speak, listen),
                             truth=BenchTruth(labels=..., features=..., frames=...), prompts=[...])
    metrics["sync"]["sync_r_at_zero"], metrics["identity"]["identity_distance_mean"], ...

One shared perception pass (:func:`~.features.extract_features`) feeds every dimension; pass
``features=`` to reuse a cached pass (a runner evaluating the same video against other audio or
prompts does not track it again). Without ``audio``, the video file's own audio track is taken as
the character's speech (no listening channel). Ground truth is used only when passed as ``truth``;
optional network metrics run only for the weight files named in ``BenchConfig.weights``.
The result is a plain dict (JSON types) per dimension: ``sync``, ``identity``, ``motion``,
``text_control``, ``visual``, plus ``features`` (coverage, timings) and ``headline`` (one number
per dimension, see :data:`HEADLINE`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quality.bench.case import BenchTruth, CaseAudio, Prompt, case_states, prompts_of
from quality.bench.features import FaceFeatures, FeatureConfig, VideoSource, extract_features, summary
from quality.bench.identity import IdentityMetricConfig, arcface_metrics, identity_metrics
from quality.bench.motion import MotionMetricConfig, motion_metrics
from quality.bench.sync import SyncMetricConfig, sync_metrics, syncnet_metrics
from quality.bench.text_control import TextControlConfig, text_control_metrics
from quality.bench.visual import feature_metrics, pixel_metrics
from quality.bench.weights import BenchWeights

log = logging.getLogger(__name__)

# dimension -> (metric, direction): the number a summary table shows first (+1 higher is better)
HEADLINE: dict[str, tuple[str, int]] = {
    "sync": ("sync_r_at_zero", +1),
    "identity": ("identity_distance_mean", -1),
    "motion": ("motion_fd", -1),
    "text_control": ("text_f1", +1),
    "visual": ("psnr", +1),
}


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of the metrics, one section per dimension, plus optional weight files."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    sync: SyncMetricConfig = field(default_factory=SyncMetricConfig)
    identity: IdentityMetricConfig = field(default_factory=IdentityMetricConfig)
    motion: MotionMetricConfig = field(default_factory=MotionMetricConfig)
    text: TextControlConfig = field(default_factory=TextControlConfig)
    pixel_every: int = 5
    weights: BenchWeights = field(default_factory=BenchWeights)


def load_image(image: np.ndarray | Path | str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an array or an image file."""
    if isinstance(image, (str, Path)):
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"reference image {image} does not exist or is not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"reference image must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    return rgb


def case_audio(source: VideoSource, audio: CaseAudio | np.ndarray | None, sample_rate: int) -> CaseAudio:
    """The case audio: given, given as the speech channel only, or the video file's own track."""
    if isinstance(audio, CaseAudio):
        return audio
    if audio is not None:
        return CaseAudio(np.asarray(audio), None, sample_rate)
    track = source.audio(sample_rate)
    if track is None:
        raise ValueError("no audio given and the video has no audio track: pass audio=CaseAudio(speak, listen)")
    log.info("evaluate: using the video's own audio track as the character's speech (no listening channel)")
    return CaseAudio(track, None, sample_rate)


def _timed(seconds: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        seconds[name] = round(time.perf_counter() - t0, 3)


def headline(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One number per dimension (:data:`HEADLINE`), None where it could not be measured."""
    return {dim: result.get(dim, {}).get(metric) for dim, (metric, _) in HEADLINE.items()}


def evaluate_video(
    video: VideoSource | Path | str | np.ndarray, reference_image: np.ndarray | Path | str, *,
    audio: CaseAudio | np.ndarray | None = None, fps: float | None = None, sample_rate: int = 16000,
    truth: BenchTruth | None = None, prompts: Sequence[Prompt | dict[str, Any]] | None = None,
    cfg: BenchConfig | None = None, features: FaceFeatures | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per dimension for one generated video (see the module docstring).

    video: a file, a :class:`VideoSource` or (N, H, W, 3) uint8 frames (then ``fps`` is needed);
    reference_image: the character image the video must stay; audio: the conditioning audio
    (``CaseAudio(speak, listen)``; a bare array is the speech channel); prompts: timed actions.
    """
    cfg = cfg or BenchConfig()
    source = VideoSource.of(video, fps)
    sound = case_audio(source, audio, sample_rate)
    seconds: dict[str, float] = {}
    if features is None:
        features = _timed(seconds, "features", extract_features, source, cfg=cfg.features)
    reference = load_image(reference_image)
    states = case_states(sound, truth, features.n_frames, features.fps)
    result: dict[str, dict[str, Any]] = {}
    result["sync"] = _timed(seconds, "sync", sync_metrics, features, sound, states, cfg.sync)
    result["identity"] = _timed(seconds, "identity", identity_metrics, features, reference, cfg.identity)
    result["motion"] = _timed(seconds, "motion", motion_metrics, features, states, sound,
                              truth.features if truth is not None else None, cfg.motion)
    result["text_control"] = _timed(seconds, "text_control", text_control_metrics, features,
                                    prompts_of(prompts), states, cfg.text)
    result["visual"] = {}
    if truth is not None and truth.frames is not None:
        result["visual"] = _timed(seconds, "visual", pixel_metrics, source, truth.frames, cfg.pixel_every)
    _optional(result, seconds, source, features, sound, reference, truth, cfg)
    result["features"] = summary(features) | {"metric_seconds": seconds}
    result["headline"] = headline(result)
    log.info("evaluate: %s", result["headline"])
    return result


def _optional(result: dict[str, dict[str, Any]], seconds: dict[str, float], source: VideoSource,
              features: FaceFeatures, sound: CaseAudio, reference: np.ndarray, truth: BenchTruth | None,
              cfg: BenchConfig) -> None:
    """Add the network metrics whose weight files are configured (errors propagate)."""
    w = cfg.weights
    if w.syncnet is not None:
        result["sync"] |= _timed(seconds, "syncnet", syncnet_metrics, source, features, sound, w.syncnet)
    if w.arcface is not None:
        result["identity"] |= _timed(seconds, "arcface", arcface_metrics, source, features, reference, w.arcface)
    if (w.inception is not None or w.i3d is not None) and (truth is None or truth.frames is None):
        raise ValueError("FID / FVD compare against ground-truth frames: pass truth=BenchTruth(frames=...)")
    if w.inception is not None or w.i3d is not None:
        result["visual"] |= _timed(seconds, "fid_fvd", feature_metrics, source, truth.frames,  # type: ignore[union-attr]
                                   w.inception, w.i3d, cfg.pixel_every)
