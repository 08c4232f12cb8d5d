"""Latency SLO files and verdicts (quality.slo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from quality.slo import SLOError, evaluate, load_slo, parse_slo

GOOD = {"streams": 2, "completed": 2, "chunks": 50, "ttff_p95_s": 0.31, "chunk_p50_s": 0.12, "chunk_p95_s": 0.2,
        "chunk_p99_s": 0.25, "rtf_per_stream": [0.52, 0.61], "errors": 0, "error_messages": []}


def slo_dict(**thresholds: Any) -> dict[str, Any]:
    limits = {"ttff_p95_s": 1.0, "chunk_p99_s": 0.6, "rtf_per_stream": 1.0, "errors": 0, **thresholds}
    return {"format": "lpm-slo/1", "name": "t", "version": 3, "load": {"streams": 2, "seconds": 4.0},
            "thresholds": limits}


def test_packaged_file_loads_with_its_checksum_and_ref() -> None:
    slo = load_slo("online-tiny")
    assert slo.ref == f"online-tiny@v{slo.version}" and slo.streams >= 2 and slo.realtime
    assert slo.thresholds.errors == 0 and slo.thresholds.rtf_per_stream <= 1.0
    assert len(slo.sha256) == 64 and slo.source.endswith("online-tiny.yaml")
    assert load_slo(slo.source) == slo  # by path too


def test_all_thresholds_met_passes() -> None:
    verdict = evaluate(GOOD, parse_slo(slo_dict()))
    assert verdict.passed and verdict.failures == []
    assert [r.name for r in verdict.results] == ["ttff_p95_s", "chunk_p99_s", "rtf_per_stream", "errors"]
    text = verdict.markdown()
    assert "PASS" in text and "| rtf_per_stream | [0.52, 0.61] | 1 | pass |" in text


@pytest.mark.parametrize("figures, failing", [
    ({"ttff_p95_s": 1.4}, "ttff_p95_s"),
    ({"chunk_p99_s": 0.9}, "chunk_p99_s"),
    ({"rtf_per_stream": [0.5, 1.2]}, "rtf_per_stream"),              # one stream behind is enough
    ({"rtf_per_stream": [0.5], "completed": 1, "errors": 1}, "rtf_per_stream"),   # a stream never finished
    ({"errors": 2, "error_messages": ["busy: x"]}, "errors"),
    ({"server_errors": 1}, "errors"),                                   # Triton counted a failure
    ({"ttff_p95_s": None}, "ttff_p95_s"),                               # nothing measured is a failure
])
def test_each_threshold_fails_on_its_own(figures: dict[str, Any], failing: str) -> None:
    verdict = evaluate({**GOOD, **figures}, parse_slo(slo_dict()))
    assert not verdict.passed
    assert failing in {r.name for r in verdict.results if not r.passed}
    assert "FAIL" in verdict.markdown() and any(f.startswith(failing) for f in verdict.failures)


def test_a_report_object_is_accepted() -> None:
    class Report:
        def summary(self) -> dict[str, Any]:
            return dict(GOOD)

    assert evaluate(Report(), parse_slo(slo_dict())).passed
    assert not evaluate(Report(), parse_slo(slo_dict(rtf_per_stream=0.1))).passed


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="lpm-slo/0"), "format"),
    (lambda d: d["thresholds"].update(ttff_p95_s=-1), "ttff_p95_s"),
    (lambda d: d["thresholds"].update(rtf=1.0), "unknown keys"),
    (lambda d: d["load"].update(streams=1.5), "integer"),
    (lambda d: d["load"].pop("seconds"), "seconds is missing"),
    (lambda d: d["load"].update(realtime="yes"), "realtime"),
    (lambda d: d["thresholds"].update(chunk_p99_s=True), "finite number"),
])
def test_malformed_files_are_refused(change: Any, message: str) -> None:
    data = slo_dict()
    change(data)
    with pytest.raises(SLOError, match=message):
        parse_slo(data)


def test_unknown_name_lists_known_files(tmp_path: Path) -> None:
    with pytest.raises(SLOError, match="online-tiny"):
        load_slo("no-such-slo")
    path = tmp_path / "x.yaml"
    path.write_text("format: [unclosed")
    with pytest.raises(SLOError, match="not valid YAML"):
        load_slo(path)
    path.write_text(yaml.safe_dump(slo_dict(errors=0)))
    assert load_slo(path).version == 3
