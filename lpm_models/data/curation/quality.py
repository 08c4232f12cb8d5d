"""Stage 3: per-track quality gate (image, landmarks, audio, A/V sync) with reason codes.

``assess_track`` measures one face track and returns a :class:`QualityReport`: every metric,
pass/fail and the reasons it failed. Image metrics use the tight face box of every
``sample_every``-th frame at source resolution, resized to ``metric_size`` so thresholds do not
depend on the face's pixel size (that is what ``low_resolution`` is for).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from lpm_models.data.curation.config import CurationConfig, QualityConfig
from lpm_models.data.curation.pose import RIGID_POINTS
from lpm_models.data.curation.sync import SyncResult, measure_sync
from lpm_models.data.curation.types import FaceTrack
from lpm_models.data.curation.video_io import AudioClip, iter_frames, read_audio

log = logging.getLogger(__name__)

REASONS = ("low_resolution", "blurry", "bad_exposure", "bad_composition", "jittery_landmarks",
           "audio_silent", "audio_clipping", "av_out_of_sync")
_WINDOW_S = 0.02  # audio analysis window for the silence fraction


@dataclass
class QualityReport:
    """Outcome for one track: metrics (plain floats), reasons (codes of REASONS) and their details."""

    track_id: str
    metrics: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    sync: SyncResult | None = None

    @property
    def passed(self) -> bool:
        return not self.reasons

    def fail(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown quality reason {reason!r}; expected one of {REASONS}")
        if reason not in self.reasons:
            self.reasons.append(reason)
            self.details[reason] = detail

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "passed": self.passed, "reasons": list(self.reasons),
                "details": dict(self.details), "metrics": dict(self.metrics),
                "sync": self.sync.to_dict() if self.sync else None}


def face_crop(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8 grey crop of ``box`` (clipped to the frame) from an (H, W, 3) RGB frame."""
    h, w = frame.shape[:2]
    x0, y0 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x1, y1 = int(min(w, np.ceil(box[2]))), int(min(h, np.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size, size), np.uint8)
    grey = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_LINEAR)


def detail_ratio(grey: np.ndarray) -> float:
    """Contrast-invariant sharpness of a (S, S) face crop: finest-band / mid-band energy.

    std(c - G1(c)) / std(G1(c) - G3(c)) with Gaussian blurs G of sigma 1 and 3 px: blur removes
    the finest band first, while darkening or low contrast scales both bands alike.
    """
    c = grey.astype(np.float32)
    fine = cv2.GaussianBlur(c, (0, 0), 1.0)
    mid = cv2.GaussianBlur(c, (0, 0), 3.0)
    return float((c - fine).std() / max(float((fine - mid).std()), 1e-3))


def image_metrics(crops: list[np.ndarray]) -> dict[str, float]:
    """Sharpness (median detail ratio), Laplacian variance, brightness and clipped fraction of grey crops."""
    if not crops:
        return {"sharpness": 0.0, "laplacian_var": 0.0, "brightness": 0.0, "clipped": 1.0}
    stack = np.stack(crops).astype(np.float32) / 255.0
    return {
        "sharpness": float(np.median([detail_ratio(c) for c in crops])),
        "laplacian_var": float(np.median([cv2.Laplacian(c, cv2.CV_64F).var() for c in crops])),
        "brightness": float(stack.mean()),
        "clipped": float(np.mean((stack <= 0.02) | (stack >= 0.98))),
    }


def landmark_jitter(track: FaceTrack, sigma_frames: float) -> float:
    """Non-rigid high-frequency landmark motion, in face heights.

    Rigid landmarks of each frame are aligned to the track's mean shape by a 2D similarity
    (removing head translation, scale and roll); the RMS of what a temporal Gaussian low-pass
    leaves over is the jitter. Real head motion is smooth and mostly removed by both steps.
    """
    if len(track.frames) < 5:
        return 0.0
    pts = track.landmarks[:, RIGID_POINTS].astype(np.float64)
    z = pts[..., 0] + 1j * pts[..., 1]  # (N, P) complex
    z -= z.mean(axis=1, keepdims=True)
    ref = z.mean(axis=0)
    scale = np.sum(np.conj(z) * ref, axis=1) / np.maximum(np.sum(np.abs(z) ** 2, axis=1), 1e-9)  # (N,)
    aligned = z * scale[:, None]
    stacked = np.stack([aligned.real, aligned.imag], axis=-1)
    residual = stacked - gaussian_filter1d(stacked, sigma_frames, axis=0, mode="nearest")
    height = max(float(ref.imag.max() - ref.imag.min()), 1e-6)
    return float(np.sqrt(np.mean(np.sum(residual**2, axis=-1) / 2)) / height)


def audio_metrics(samples: np.ndarray, sample_rate: int, cfg: QualityConfig) -> dict[str, float]:
    """RMS dBFS, silent fraction of 20 ms windows and clipped-sample fraction of (S,) float audio."""
    if samples.size == 0:
        return {"audio_rms_dbfs": -100.0, "audio_silent_fraction": 1.0, "audio_clipped_fraction": 0.0}
    x = samples.astype(np.float64)
    rms = 10.0 * np.log10(max(float(np.mean(x**2)), 1e-10))
    win = max(1, int(_WINDOW_S * sample_rate))
    n = len(x) // win
    if n:
        levels = 10.0 * np.log10(np.maximum((x[: n * win].reshape(n, win) ** 2).mean(axis=1), 1e-10))
        silent = float(np.mean(levels < cfg.silence_dbfs))
    else:
        silent = float(rms < cfg.silence_dbfs)
    clipped = float(np.mean(np.abs(x) >= cfg.clip_level))
    return {"audio_rms_dbfs": rms, "audio_silent_fraction": silent, "audio_clipped_fraction": clipped}


def _sampled_frames(track: FaceTrack, video: Path | str | Mapping[int, np.ndarray],
                    every: int, threads: int) -> list[tuple[int, np.ndarray]]:
    """(row in track, source-resolution RGB frame) for every ``every``-th frame of the track."""
    rows = range(0, len(track.frames), max(1, every))
    wanted = {int(track.frames[r]): r for r in rows}
    if isinstance(video, Mapping):
        return [(r, video[f]) for f, r in wanted.items() if f in video]
    out = []
    for index, frame in iter_frames(video, start_frame=int(track.frames[0]), end_frame=int(track.frames[-1]) + 1,
                                    threads=threads):
        if index in wanted:
            out.append((wanted[index], frame))
    return out


def _track_audio(track: FaceTrack, audio: AudioClip | Path | str, sample_rate: int) -> tuple[np.ndarray, int]:
    """(S,) samples of the track's span [first frame, last frame + 1) and their rate."""
    start_s, end_s = track.frames[0] / track.fps, (track.frames[-1] + 1) / track.fps
    if not isinstance(audio, AudioClip):
        clip = read_audio(audio, sample_rate=sample_rate, start_s=start_s, end_s=end_s)
        return clip.samples, clip.sample_rate
    a = int(round((start_s - audio.start_s) * audio.sample_rate))
    b = int(round((end_s - audio.start_s) * audio.sample_rate))
    if a < 0 or b > len(audio.samples) + audio.sample_rate // 10:
        raise ValueError(f"audio clip [{audio.start_s:.2f}, {audio.start_s + audio.duration_s:.2f}) s does not "
                         f"cover track {track.track_id} [{start_s:.2f}, {end_s:.2f}) s; pass the whole video's audio")
    samples = audio.samples[a:b]
    if len(samples) < b - a:
        samples = np.concatenate([samples, np.zeros(b - a - len(samples), np.float32)])
    return samples, audio.sample_rate


def _geometry_metrics(track: FaceTrack) -> dict[str, float]:
    """Crop size, face/frame ratio and the part of the crop box outside the frame."""
    width = float(track.meta.get("frame_width", 0) or 0)
    height = float(track.meta.get("frame_height", 0) or 0)
    crop_side = track.crop_boxes[:, 2] - track.crop_boxes[:, 0]
    face_h = track.boxes[:, 3] - track.boxes[:, 1]
    metrics = {"crop_px": float(np.median(crop_side)), "face_px": float(np.median(face_h))}
    if width > 0 and height > 0:
        cb = track.crop_boxes
        inside_w = np.clip(np.minimum(cb[:, 2], width) - np.maximum(cb[:, 0], 0), 0, None)
        inside_h = np.clip(np.minimum(cb[:, 3], height) - np.maximum(cb[:, 1], 0), 0, None)
        metrics["face_ratio"] = float(np.median(face_h) / height)
        metrics["crop_outside"] = float(np.mean(1.0 - inside_w * inside_h / np.maximum(crop_side**2, 1e-6)))
    return metrics


def _apply_gates(report: QualityReport, q: QualityConfig, cfg: CurationConfig) -> None:
    """Turn metrics into reasons (thresholds in QualityConfig / SyncConfig)."""
    m = report.metrics
    if m["crop_px"] < q.min_crop_px:
        report.fail("low_resolution", f"crop {m['crop_px']:.0f} px < {q.min_crop_px:.0f} px")
    if m["sharpness"] < q.min_sharpness:
        report.fail("blurry", f"detail ratio {m['sharpness']:.3f} < {q.min_sharpness:.3f}")
    if not q.min_brightness <= m["brightness"] <= q.max_brightness or m["clipped"] > q.max_clipped:
        report.fail("bad_exposure", f"brightness {m['brightness']:.2f} (allowed {q.min_brightness}-"
                                    f"{q.max_brightness}), clipped {m['clipped']:.1%} (max {q.max_clipped:.0%})")
    if "face_ratio" in m and (not q.min_face_ratio <= m["face_ratio"] <= q.max_face_ratio
                              or m["crop_outside"] > q.max_crop_outside):
        report.fail("bad_composition", f"face/frame height {m['face_ratio']:.2f} (allowed {q.min_face_ratio}-"
                                       f"{q.max_face_ratio}), crop outside frame {m['crop_outside']:.0%}")
    if m["jitter"] > q.max_jitter:
        report.fail("jittery_landmarks", f"jitter {m['jitter']:.4f} > {q.max_jitter:.4f} face heights")
    if m["audio_rms_dbfs"] < q.min_rms_dbfs or m["audio_silent_fraction"] > q.max_silent_fraction:
        report.fail("audio_silent", f"RMS {m['audio_rms_dbfs']:.1f} dBFS, {m['audio_silent_fraction']:.0%} silent")
    if m["audio_clipped_fraction"] > q.max_clipped_fraction:
        report.fail("audio_clipping", f"{m['audio_clipped_fraction']:.2%} samples clipped")
    sync, sc = report.sync, cfg.sync
    if sync is not None and sync.assessable and (abs(sync.offset_frames) > sc.tolerance_frames
                                                 or sync.confidence < sc.min_confidence):
        report.fail("av_out_of_sync", f"best offset {sync.offset_frames:+d} frames (tolerance "
                                      f"{sc.tolerance_frames}), confidence {sync.confidence:.2f} "
                                      f"(min {sc.min_confidence})")


def assess_track(
    track: FaceTrack, video: Path | str | Mapping[int, np.ndarray], audio: AudioClip | Path | str,
    cfg: CurationConfig | None = None,
) -> QualityReport:
    """Measure one track and gate it.

    video: the source file, or {absolute frame index: (H, W, 3) uint8 RGB source-resolution frame}
    audio: the video's audio (AudioClip on the video timeline, e.g. ``read_audio(path)``) or its file
    """
    cfg = cfg or CurationConfig()
    q = cfg.quality
    frames = _sampled_frames(track, video, q.sample_every, cfg.decode.threads)
    crops = [face_crop(frame, track.boxes[row], q.metric_size) for row, frame in frames]
    samples, rate = _track_audio(track, audio, cfg.decode.sample_rate)
    metrics = _geometry_metrics(track) | image_metrics(crops) | audio_metrics(samples, rate, q)
    metrics["jitter"] = landmark_jitter(track, q.jitter_sigma_frames)
    metrics["sampled_frames"] = float(len(crops))
    sync = measure_sync(track.mouth_open, samples, rate, track.fps, cfg.sync, silence_dbfs=q.silence_dbfs)
    metrics |= {"sync_offset_frames": float(sync.offset_frames), "sync_confidence": sync.confidence,
                "sync_assessable": float(sync.assessable)}
    report = QualityReport(track.track_id, metrics, sync=sync)
    _apply_gates(report, q, cfg)
    log.debug("%s: %s %s", track.track_id, "pass" if report.passed else "fail", report.reasons)
    return report
