"""Dimension scores: one number in [0, 1] per LPM-Bench dimension and case, higher is better.

The metric modules report raw figures on their own scales (a correlation, a dlib distance, a
Frechet distance, an F1). The benchmark tables, the overall score and the regression gate
(:mod:`.compare`) need them on one scale with one direction, so each dimension's headline metric
is mapped to a score:

============== ===================================== ================================================
dimension      score                                 reads as
============== ===================================== ================================================
sync           max(sync_r_at_zero, 0)                0 = mouth unrelated to the speech, 1 = perfect
identity       clip(1 - distance / 0.6, 0, 1)        0 = another person (dlib threshold), 1 = same face
motion         1 / (1 + motion_fd)                   1 = the reference's motion distribution; a
                                                     frozen face ~0.05-0.1
text_control   text_f1                               share of prompted actions performed, precisely
visual         ssim vs the aligned ground truth      pixel agreement (not in ``overall``: a generative
                                                     model need not reproduce the truth pixel by pixel)
overall        mean of sync, identity, motion,       the paper's four dimensions, equally weighted
               text_control where applicable
============== ===================================== ================================================

A dimension that does not apply to a case is ``None`` (no prompts: no text score; fewer than a
second of the character's speech: no sync score). A dimension that applies but cannot be measured
because the video shows no trackable face scores 0: the system failed to draw a character.
"""

from __future__ import annotations

import math
from typing import Any

DIMENSIONS = ("sync", "identity", "motion", "text_control", "visual", "overall")
OVERALL_PARTS = ("sync", "identity", "motion", "text_control")
IDENTITY_THRESHOLD = 0.6
MIN_SPEAKING_S = 1.0


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _no_face(metrics: dict[str, Any]) -> bool:
    return metrics.get("detail") == "no face tracked"


def sync_score(m: dict[str, Any]) -> float | None:
    """max(r at offset 0, 0); None when the character speaks less than :data:`MIN_SPEAKING_S`."""
    if float(m.get("speaking_s", 0.0)) < MIN_SPEAKING_S:
        return None
    if _no_face(m):
        return 0.0
    if not m.get("assessable", False):
        return None
    r = _finite(m.get("sync_r_at_zero"))
    return None if r is None else max(r, 0.0)


def identity_score(m: dict[str, Any]) -> float:
    """1 - mean dlib distance / 0.6, clipped to [0, 1]; 0 when no face could be embedded."""
    d = _finite(m.get("identity_distance_mean"))
    if d is None:
        return 0.0
    return min(max(1.0 - d / IDENTITY_THRESHOLD, 0.0), 1.0)


def motion_score(m: dict[str, Any]) -> float | None:
    """1 / (1 + motion Frechet distance); 0 without a face; None without a reference performance."""
    if not m.get("assessable", False):
        return 0.0
    fd = _finite(m.get("motion_fd"))
    return None if fd is None else 1.0 / (1.0 + fd)


def text_score(m: dict[str, Any]) -> float | None:
    """text F1; None for a case without prompts."""
    if int(m.get("prompts", 0)) == 0:
        return None
    return _finite(m.get("text_f1")) or 0.0


def visual_score(m: dict[str, Any]) -> float | None:
    """SSIM against the aligned ground truth; None without ground-truth frames."""
    return _finite(m.get("ssim"))


def overall_score(scores: dict[str, float | None]) -> float | None:
    """Mean of the applicable :data:`OVERALL_PARTS` scores."""
    parts = [scores[d] for d in OVERALL_PARTS if scores.get(d) is not None]
    return float(sum(parts) / len(parts)) if parts else None  # type: ignore[arg-type]


def dimension_scores(result: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Scores per :data:`DIMENSIONS` from one :func:`~.evaluate.evaluate_video` result."""
    scores: dict[str, float | None] = {
        "sync": sync_score(result.get("sync", {})),
        "identity": identity_score(result.get("identity", {})),
        "motion": motion_score(result.get("motion", {})),
        "text_control": text_score(result.get("text_control", {})),
        "visual": visual_score(result.get("visual", {})),
    }
    scores["overall"] = overall_score(scores)
    return {k: (None if v is None else round(v, 4)) for k, v in scores.items()}
