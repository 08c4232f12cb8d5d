"""Longer LPM-Bench validations (marker ``slow``): the full report and long-form identity drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quality.bench.groundtruth import DEGRADATIONS, load_cases
from quality.bench.validate import GROUND_TRUTH, evaluate_case, prepare, summarise, validate

pytestmark = pytest.mark.slow

# the metric each degradation must make worse, and by how much at least (absolute)
TARGETS = {
    "audio_shift": ("sync.sync_r_at_zero", +1, 0.5),
    "identity_swap": ("identity.identity_distance_mean", -1, 0.3),
    "identity_drift": ("identity.identity_drift_per_min", -1, 0.5),
    "frozen": ("motion.motion_fd", -1, 3.0),
    "prompts_ignored": ("text_control.text_recall", +1, 0.5),
    "unpaired": ("sync.sync_confidence", +1, 0.3),
}


@pytest.fixture(autouse=True)
def _needs_espeak() -> None:
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (needed to synthesise the corpus)")


def test_validation_report_separates_every_degradation(tmp_path: Path) -> None:
    per_case, table = validate(tmp_path, n_conversations=1, duration_s=12.0, seed=101)
    summary = summarise(per_case)
    for variant, (key, direction, margin) in TARGETS.items():
        gt, bad = summary[GROUND_TRUTH][key], summary[variant][key]
        assert gt is not None and bad is not None, (variant, key)
        assert direction * (gt - bad) > margin, f"{variant}: {key} {bad:.3f} vs ground truth {gt:.3f}"
    assert all(name in table for name in (GROUND_TRUTH, *DEGRADATIONS))


def test_long_form_identity_drift_is_measured_per_minute(tmp_path: Path) -> None:
    root, bank = prepare(tmp_path, n_conversations=1, duration_s=40.0, seed=23)
    case = next(iter(load_cases(root, bank)))
    run = evaluate_case(case, bank, tmp_path, ["identity_drift"])
    gt, drift = run.results[GROUND_TRUTH]["identity"], run.results["identity_drift"]["identity"]
    assert abs(gt["identity_drift_per_min"]) < 0.15 and gt["identity_fail_fraction"] == 0.0
    assert drift["identity_drift_per_min"] > 0.6  # ~0.2 -> ~0.8 over 40 s
    assert drift["identity_drift_delta"] > 0.3
    assert np.isfinite(drift["identity_distance_p95"]) and drift["identity_distance_p95"] > 0.6
