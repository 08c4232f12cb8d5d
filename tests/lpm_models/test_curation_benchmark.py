"""The curation benchmark's verdicts and report (the measurement itself runs as `lpm curation bench`)."""

from __future__ import annotations

import math

from lpm_models.data.curation.benchmark import Targets, format_report, verdicts


def _report(x_parallel: float, accuracy: float, precision: float, recall: float, purity: float) -> dict:
    stage = {"video_s": 16.0, "wall_s": 1.0, "cpu_s": 1.0, "x_wall": 16.0, "x_cpu": 16.0}
    return {
        "corpus": "c", "videos": 2, "video_s": 16.0, "workers": 2,
        "stages": {"decode_full": stage, "tracks": stage, "pairing": stage},
        "pipeline": {"video_s": 16.0, "wall_s": 3.2, "cpu_s": 3.0, "x_wall": x_parallel / 2, "x_cpu": 5.3,
                     "x_wall_parallel": x_parallel, "x_cpu_parallel": 10.6},
        "detection_rate": 0.99, "quality_pass_rate": 1.0, "rejections": {"too_small": 1},
        "pairing": {"accuracy": accuracy}, "actions": {"precision": precision, "recall": recall},
        "identity": {"purity": purity, "inverse_purity": 1.0, "clusters": 3, "true_identities": 3, "tracks": 4},
    }


def test_verdicts_compare_each_figure_with_its_target() -> None:
    good = verdicts(_report(12.0, 0.95, 0.9, 0.85, 1.0))
    assert all(ok for _, _, ok in good.values())
    bad = verdicts(_report(4.0, 0.80, 0.9, 0.5, 0.9))
    failed = {name for name, (_, _, ok) in bad.items() if not ok}
    assert failed == {"pipeline x real time (parallel)", "speak/listen frame accuracy", "action recall",
                      "identity purity"}
    assert not verdicts(_report(12.0, math.nan, 0.9, 0.9, 1.0))["speak/listen frame accuracy"][2]
    assert verdicts(_report(4.0, 0.95, 0.9, 0.9, 1.0), Targets(x_realtime=3.0))["pipeline x real time (parallel)"][2]


def test_report_lists_every_stage_and_verdict() -> None:
    text = format_report(_report(4.0, 0.95, 0.9, 0.85, 1.0))
    for token in ("decode_full", "tracks", "pairing", "pipeline", "identity purity", "FAIL", "PASS", "too_small"):
        assert token in text
