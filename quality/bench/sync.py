"""Audio-Video Sync: does the character's mouth move with the speech it is given?

Landmark measure (always available, no weights): curation's sync estimate
(:func:`lpm_models.data.curation.sync.measure_sync`) correlates the face-mesh mouth opening with
the loudness envelope of the ``speak`` audio on the frames where that audio has voice, at every
offset in +-``max_offset_frames``. Reported:

- ``sync_confidence``  peak Pearson r over the offsets, in [-1, 1] (ground truth ~0.8; a mouth
  driven by other speech ~0.2; a still mouth 0)
- ``sync_offset_frames`` offset of the peak (> 0: the audio lags the picture); 0 when in sync
- ``sync_r_at_zero``   r at offset 0, in [-1, 1]: confidence and offset in one number
- ``sync_margin``      peak minus median r over the offsets (peak prominence, >= 0)
- ``speaking_s``       seconds of voiced ``speak`` audio the estimate used
- ``mouth_moving_fraction`` share of those seconds in which the mouth moves at all (local std of
  the opening above curation's ``min_mouth_activity``), in [0, 1]. Below ``min_moving_fraction``
  the mouth is still while the character speaks: the correlations then only measure landmark
  jitter, so confidence and r are reported as 0 (a frozen face must not score by chance)

SyncNet (optional): with a SyncNet weights file (``syncnet_v2.model`` of the public SyncNet
project) the standard Sync-C (confidence, higher is better, ~7-9 on real talking heads) and
Sync-D (min audio-visual feature distance, lower is better) are added, see :mod:`.syncnet`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.config import SyncConfig
from lpm_models.data.curation.sync import measure_sync, speaking_frames
from quality.bench.case import SPEAK, CaseAudio
from quality.bench.features import FaceFeatures, VideoSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncMetricConfig:
    """Landmark sync settings: curation's sync config with a shorter minimum of speech, and the
    share of speaking frames the mouth must move on for the correlation to count."""

    sync: SyncConfig = field(default_factory=lambda: SyncConfig(max_offset_frames=12, min_speaking_s=1.0))
    min_moving_fraction: float = 0.1


def sync_metrics(features: FaceFeatures, audio: CaseAudio, states: np.ndarray | None = None,
                 cfg: SyncMetricConfig | None = None) -> dict[str, Any]:
    """Landmark lip-sync of one video against its ``speak`` audio (see the module docstring).

    states: (N,) label codes; frames labelled speak are where the mouth must follow the audio
    (default: voiced frames of ``audio.speak``).
    """
    cfg = cfg or SyncMetricConfig()
    fps = features.fps
    if states is None:
        states = audio.states(features.n_frames, fps)
    speaking = np.asarray(states) == SPEAK
    empty = {"sync_confidence": 0.0, "sync_offset_frames": 0, "sync_r_at_zero": 0.0, "sync_margin": 0.0,
             "speaking_s": round(float(speaking.sum()) / fps, 2)}
    if features.track is None:
        return empty | {"assessable": False, "detail": "no face tracked"}
    mouth = features.on_timeline(features.track.mouth_open).astype(np.float32)
    moving = float(speaking_frames(mouth, fps, cfg.sync)[speaking].mean()) if speaking.any() else 0.0
    empty["mouth_moving_fraction"] = round(moving, 4)
    if speaking.any() and moving < cfg.min_moving_fraction:
        log.info("sync: the mouth moves on %.0f%% of speaking frames: scored 0", 100 * moving)
        return empty | {"assessable": True, "detail": "mouth still while speaking"}
    result = measure_sync(mouth, audio.speak, audio.sample_rate, fps, cfg.sync, speaking=speaking)
    if not result.assessable:
        log.info("sync: not assessable (%s)", result.detail)
        return empty | {"assessable": False, "detail": result.detail}
    m = cfg.sync.max_offset_frames
    at_zero = float(result.curve[m]) if np.isfinite(result.curve[m]) else 0.0
    return {"sync_confidence": round(result.confidence, 4), "sync_offset_frames": int(result.offset_frames),
            "sync_r_at_zero": round(at_zero, 4), "sync_margin": round(result.margin, 4),
            "speaking_s": round(result.speaking_frames / fps, 2), "mouth_moving_fraction": round(moving, 4),
            "assessable": True, "detail": ""}


def syncnet_metrics(video: VideoSource, features: FaceFeatures, audio: CaseAudio,
                    weights: Path | str, device: str = "cpu") -> dict[str, Any]:
    """SyncNet Sync-C / Sync-D / offset of the tracked face (needs a SyncNet weights file)."""
    from quality.bench.syncnet import load_syncnet, score_track

    model = load_syncnet(weights, device)
    if features.track is None:
        raise ValueError("SyncNet needs a tracked face; none was found in this video")
    result = score_track(model, video, features.track, audio.speak, audio.sample_rate, device=device)
    return {"syncnet_sync_c": round(result.confidence, 4), "syncnet_sync_d": round(result.min_distance, 4),
            "syncnet_offset_frames": result.offset_frames}
