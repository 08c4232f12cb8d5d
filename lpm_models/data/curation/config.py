"""Every curation threshold in one frozen, nested config with documented defaults.

Each stage owns one section (``cfg.shots``, ``cfg.tracks``, ...). Later stages add their own
section dataclass and one field on :class:`CurationConfig`; nothing else changes. Defaults are
tuned so clean synthetic corpus clips (25 fps, 256 px face regions) pass and degraded ones fail
with the right reason (see ``tests/lpm_models/test_curation_quality.py``).

``CurationConfig.from_dict`` / ``to_dict`` round-trip through plain JSON types so the
orchestrator can expose the config as run configuration and log it as parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class DecodeConfig:
    """How frames and audio are decoded for analysis."""

    analysis_max_side: int = 640  # frames for face analysis are downscaled so max(H, W) <= this
    threads: int = 1  # decoder threads per process (1 when videos run in parallel processes; 0 = auto)
    sample_rate: int = 16000  # analysis audio: mono float32 at this rate


@dataclass(frozen=True)
class ShotConfig:
    """Shot boundary detection by content change (HSV histograms + pixel difference)."""

    analysis_max_side: int = 96  # frames are downscaled to this for shot detection
    hist_bins: tuple[int, int, int] = (16, 4, 4)  # joint H, S, V histogram bins
    pixel_weight: float = 0.5  # weight of the mean abs grey difference (0..1) in the change score
    min_score: float = 0.25  # a cut needs at least this change score (0 = identical, ~1 = unrelated)
    adaptive_k: float = 8.0  # ... and score > local median + k * local MAD (robust spread)
    window_s: float = 1.0  # half width of the local window for the adaptive threshold
    min_cut_gap_s: float = 0.3  # cuts closer than this keep only the strongest one
    min_shot_s: float = 3.0  # shots this long or longer are kept; shorter -> "too_short"


@dataclass(frozen=True)
class TrackConfig:
    """Face detection, mesh tracking and per-track rejection."""

    detect_every: int = 10  # run the face detector every K frames (mesh tracks in between)
    mesh_every: int = 2  # run the face mesh every K frames, interpolating between (1 doubles the cost; see lpm curation bench)
    detector_model: int = 1  # mediapipe face_detection model_selection (1 full range finds small faces; 0 short range)
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5  # face mesh presence below this drops the face for a frame
    new_track_iou: float = 0.3  # a detection overlapping an active track less than this starts a track
    mesh_crop_scale: float = 2.0  # side of the square region fed to a track's face mesh / face size
    recentre_fraction: float = 0.15  # move the mesh region when the face drifts this far (of its side)
    max_faces: int = 2  # more faces than this at once (split-screen has 2) -> "too_many_faces"
    too_many_fraction: float = 0.3  # ... in at least this fraction of detection rounds
    max_gap_s: float = 0.4  # missed frames up to this long are interpolated; longer ends the track
    max_jump: float = 0.35  # per-frame centre jump / face height above this breaks the track
    min_track_s: float = 3.0  # track segments shorter than this -> "broken_track"
    min_face_px: float = 48.0  # median face height (source px) below this -> "face_too_small"
    crop_scale: float = 1.8  # crop box side / face size (max of width, height of the landmark box)
    crop_smooth_s: float = 0.2  # Gaussian sigma (seconds) of crop box centre/size smoothing
    max_abs_yaw: float = 50.0  # degrees; frames beyond this or max_abs_pitch are "extreme"
    max_abs_pitch: float = 35.0
    max_extreme_fraction: float = 0.3  # more extreme frames than this -> "extreme_pose"


@dataclass(frozen=True)
class QualityConfig:
    """Per-track image, landmark and audio quality gates."""

    sample_every: int = 5  # image metrics on every K-th frame of a track
    min_crop_px: float = 128.0  # median crop side (source px) below this -> "low_resolution" (2x upsampling to 256)
    metric_size: int = 64  # face boxes are resized to this square (grey) before sharpness/exposure
    min_sharpness: float = 0.36  # detail ratio (finest / mid band energy, contrast-invariant) -> "blurry"
    min_brightness: float = 0.25  # mean face luminance in [0, 1]; outside [min, max] -> "bad_exposure"
    max_brightness: float = 0.85
    max_clipped: float = 0.15  # fraction of face pixels at <= 2 % or >= 98 % luminance
    min_face_ratio: float = 0.15  # face height / frame height; outside [min, max] -> "bad_composition"
    max_face_ratio: float = 0.9
    max_crop_outside: float = 0.25  # mean fraction of the crop box outside the frame -> "bad_composition"
    max_jitter: float = 0.004  # non-rigid high-pass RMS of rigid landmarks (face heights) -> "jittery_landmarks"
    jitter_sigma_frames: float = 1.5  # temporal Gaussian used as the low-pass for jitter
    silence_dbfs: float = -50.0  # a 20 ms window below this is silent
    max_silent_fraction: float = 0.95  # more silent windows than this -> "audio_silent"
    min_rms_dbfs: float = -45.0  # whole-track RMS below this -> "audio_silent"
    clip_level: float = 0.99  # |sample| at or above this counts as clipped
    max_clipped_fraction: float = 0.001  # more clipped samples than this -> "audio_clipping"


@dataclass(frozen=True)
class SyncConfig:
    """Audio-video sync from mouth opening vs audio loudness on speaking frames."""

    max_offset_frames: int = 10  # search offsets in [-max, +max] video frames
    tolerance_frames: int = 2  # |best offset| above this -> "av_out_of_sync"
    min_confidence: float = 0.4  # peak correlation below this (when assessable) -> "av_out_of_sync"
    min_speaking_s: float = 2.0  # fewer speaking seconds than this -> sync not assessable (no reject)
    activity_window_s: float = 0.5  # mouth activity = local std of mouth opening over this window
    min_mouth_activity: float = 0.01  # local std (face heights) above this marks a moving mouth
    voice_margin_db: float = 15.0  # audio frames within this of the loud (p95) level count as voiced
    envelope_smooth_frames: float = 1.0  # Gaussian sigma applied to both signals before correlating


@dataclass(frozen=True)
class CurationConfig:
    """All curation thresholds, one section per stage."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    shots: ShotConfig = field(default_factory=ShotConfig)
    tracks: TrackConfig = field(default_factory=TrackConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON types; tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CurationConfig":
        """Build from a (partial) nested dict; unknown sections or keys raise ``ValueError``."""
        kwargs: dict[str, Any] = {}
        sections = {f.name: f for f in fields(cls)}
        for name, values in data.items():
            if name not in sections:
                raise ValueError(f"unknown curation config section {name!r}; expected one of {sorted(sections)}")
            section_cls = sections[name].default_factory  # type: ignore[misc]
            kwargs[name] = _build_section(section_cls, name, values)  # type: ignore[arg-type]
        return cls(**kwargs)

    def with_overrides(self, **sections: dict[str, Any]) -> "CurationConfig":
        """A copy with some fields of some sections replaced: ``cfg.with_overrides(shots={"min_shot_s": 2})``."""
        updated = {}
        for name, values in sections.items():
            current = getattr(self, name, None)
            if current is None:
                raise ValueError(f"unknown curation config section {name!r}")
            updated[name] = _build_section(type(current), name, {**asdict(current), **values})
        return dataclasses.replace(self, **updated)


def _build_section(section_cls: type, name: str, values: dict[str, Any]) -> Any:
    """Instantiate one section from a dict, turning lists back into tuples where the default is one."""
    known = {f.name: f for f in fields(section_cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in curation config section {name!r}; "
                         f"known keys: {sorted(known)}")
    defaults = section_cls()
    cleaned = {k: tuple(v) if isinstance(getattr(defaults, k), tuple) else v for k, v in values.items()}
    return section_cls(**cleaned)
