"""Text Controllability: does the character perform the actions its text prompts ask for, when asked?

Curation's action detector (:func:`lpm_models.data.curation.understanding.detect_actions`: nod,
shake, smile, tilt, look_away from face-mesh landmarks and head pose) runs on the evaluated
video's face track; detections are matched one-to-one to the prompts by curation's matcher
(:func:`lpm_models.data.curation.accuracy.match_events`: same action, frame intervals widened
by ``tolerance_s`` overlapping by at least ``min_overlap`` of the shorter). Reported:

- ``text_recall``     prompted actions that were performed, in [0, 1]
- ``text_precision``  detected actions that were prompted, in [0, 1] (unprompted spontaneous
                      actions count against it)
- ``text_f1``         their harmonic mean, in [0, 1]
- ``prompts`` / ``detected``  counts; ``per_action`` tp / fp / fn per action
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpm_models.data.curation.accuracy import match_events
from lpm_models.data.curation.types import ActionEvent
from lpm_models.data.curation.understanding import UnderstandingConfig, detect_actions
from quality.bench.case import PROMPT_ACTIONS, Prompt
from quality.bench.features import FaceFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextControlConfig:
    """Matching tolerance (seconds each side), minimum overlap, and the detector's thresholds."""

    tolerance_s: float = 0.25
    min_overlap: float = 0.3
    understanding: UnderstandingConfig = field(default_factory=UnderstandingConfig)


def detected_actions(features: FaceFeatures, states: np.ndarray | None = None,
                     cfg: TextControlConfig | None = None) -> list[ActionEvent]:
    """Actions (no blinks) detected on the video's face track; frames are absolute video frames."""
    cfg = cfg or TextControlConfig()
    track = features.track
    if track is None:
        return []
    labels = None if states is None else np.asarray(states)[np.asarray(track.frames)]
    return [e for e in detect_actions(track, cfg.understanding, labels, features.signals(), blinks=False)
            if e.action in PROMPT_ACTIONS]


def f1(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall (0 when both are 0)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def text_control_metrics(features: FaceFeatures, prompts: Sequence[Prompt], states: np.ndarray | None = None,
                         cfg: TextControlConfig | None = None) -> dict[str, Any]:
    """Precision / recall / F1 of the detected actions against the prompted ones."""
    cfg = cfg or TextControlConfig()
    if not prompts:
        return {"assessable": False, "detail": "no prompts", "prompts": 0}
    detected = detected_actions(features, states, cfg)
    wanted = [(p.action, p.start_frame, p.end_frame) for p in prompts]
    tolerance = int(round(cfg.tolerance_s * features.fps))
    score = match_events(detected, wanted, PROMPT_ACTIONS, tolerance, cfg.min_overlap)
    precision, recall = score.precision, score.recall
    per_action = {a: {"tp": tp, "fp": fp, "fn": fn} for a, (tp, fp, fn) in sorted(score.counts.items())
                  if tp + fp + fn}
    log.info("text control: %d prompt(s), %d detection(s), P %.2f R %.2f", len(prompts), len(detected),
             precision, recall)
    return {"text_precision": round(precision, 4), "text_recall": round(recall, 4),
            "text_f1": round(f1(precision, recall), 4), "prompts": len(prompts), "detected": len(detected),
            "per_action": per_action, "assessable": features.track is not None}
