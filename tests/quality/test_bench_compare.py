"""LPM-Bench comparison: paired bootstrap CIs, the regression rule, per-case scores, MLflow run loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quality.bench.compare import (CASE_TABLE, TAGS, bootstrap_mean_ci, compare, compare_mlflow_runs,
                                   find_bench_run, rows_from_table)
from quality.bench.scores import dimension_scores


def rows(scores: dict[str, list[float | None]], subset: str = "speaking") -> list[dict]:
    n = len(next(iter(scores.values())))
    return [{"case_id": f"c{i}", "subset": subset, **{d: v[i] for d, v in scores.items()}} for i in range(n)]


BASE = [0.50, 0.55, 0.60, 0.45, 0.52, 0.58, 0.49, 0.61]


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_cases() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.1, 0.05, 8)
    big = rng.normal(0.1, 0.05, 200)
    lo_s, hi_s = bootstrap_mean_ci(small, 2000, 0.95, np.random.default_rng(1))
    lo_b, hi_b = bootstrap_mean_ci(big, 2000, 0.95, np.random.default_rng(1))
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert hi_b - lo_b < hi_s - lo_s
    assert bootstrap_mean_ci(np.full(5, 0.3), 100, 0.95, np.random.default_rng(0)) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError):
        bootstrap_mean_ci(np.zeros(0), 10, 0.95, rng)


def test_clear_drop_regresses_and_noise_does_not() -> None:
    base = rows({"sync": BASE, "motion": BASE})
    worse = rows({"sync": [b - 0.2 for b in BASE], "motion": BASE})
    cmp = compare(worse, base)
    assert cmp.regressed and cmp.deltas["sync"].regressed and not cmp.deltas["motion"].regressed
    assert cmp.deltas["sync"].delta == pytest.approx(-0.2)
    assert cmp.deltas["sync"].ci_high < 0
    # zero-mean jitter: the CI straddles 0, no verdict either way
    jitter = [0.05, -0.05, 0.04, -0.04, 0.03, -0.03, 0.02, -0.02]
    noisy = rows({"sync": [b + j for b, j in zip(BASE, jitter)], "motion": BASE})
    cmp = compare(noisy, base)
    assert not cmp.regressed and cmp.deltas["sync"].ci_low < 0 < cmp.deltas["sync"].ci_high
    assert compare(base, worse).deltas["sync"].improved


def test_tolerance_and_min_cases_gate_the_verdict() -> None:
    base = rows({"identity": BASE})
    slightly = rows({"identity": [b - 0.01 for b in BASE]})
    assert compare(slightly, base, tolerance=0.02).regressed is False      # consistent but within tolerance
    assert compare(slightly, base, tolerance=0.005).regressed is True
    two = compare(rows({"identity": [0.1, 0.1]}), rows({"identity": [0.9, 0.9]}), min_cases=3)
    assert not two.regressed and two.deltas["identity"].n_cases == 2


def test_missing_scores_pair_only_shared_cases() -> None:
    base = rows({"text_control": [0.8, None, 0.7, 0.9], "sync": [0.5, 0.5, 0.5, 0.5]})
    cand = rows({"text_control": [0.8, 0.1, None, 0.9], "sync": [0.5, 0.5, 0.5, 0.5]})
    cand.append({"case_id": "extra", "subset": "speaking", "sync": 0.0})
    cmp = compare(cand, base)
    assert cmp.deltas["text_control"].n_cases == 2 and cmp.deltas["text_control"].delta == 0.0
    assert cmp.deltas["visual"].delta is None and cmp.deltas["visual"].verdict == "n/a"
    assert cmp.unpaired_cases == ["extra"]
    with pytest.raises(ValueError, match="share no case"):
        compare(rows({"sync": [0.1]}), [{"case_id": "other", "sync": 0.2}])
    with pytest.raises(ValueError, match="twice"):
        compare(base + base[:1], base)


def test_markdown_names_dimensions_subsets_and_verdict() -> None:
    base = rows({"sync": BASE}, "speaking") + [dict(r, case_id="l" + r["case_id"], subset="listening")
                                                for r in rows({"sync": BASE})]
    cand = [dict(r, sync=r["sync"] - 0.3) for r in base]
    cmp = compare(cand, base, candidate_label="lpm-online/2", baseline_label="lpm-online/1")
    text = cmp.markdown()
    assert "REGRESSED" in text and "lpm-online/2" in text and "| sync |" in text
    assert "| listening |" in text and "| speaking |" in text
    assert set(cmp.by_subset) == {"listening", "speaking"}


def test_dimension_scores_map_metrics_to_unit_scale() -> None:
    good = {"sync": {"sync_r_at_zero": 0.9, "speaking_s": 3.0, "assessable": True},
            "identity": {"identity_distance_mean": 0.18}, "motion": {"assessable": True, "motion_fd": 0.1},
            "text_control": {"prompts": 2, "text_f1": 0.5}, "visual": {"ssim": 0.9}}
    s = dimension_scores(good)
    assert s["sync"] == 0.9 and s["identity"] == pytest.approx(0.7) and s["motion"] == pytest.approx(1 / 1.1, abs=1e-4)
    assert s["overall"] == pytest.approx((0.9 + 0.7 + 1 / 1.1 + 0.5) / 4, abs=1e-3)
    faceless = {"sync": {"speaking_s": 3.0, "assessable": False, "detail": "no face tracked"},
                "identity": {"identity_distance_mean": float("nan")}, "motion": {"assessable": False},
                "text_control": {"prompts": 0}, "visual": {}}
    s = dimension_scores(faceless)
    assert s == {"sync": 0.0, "identity": 0.0, "motion": 0.0, "text_control": None, "visual": None, "overall": 0.0}
    listening = dict(good, sync={"speaking_s": 0.2, "assessable": False})
    assert dimension_scores(listening)["sync"] is None


def _log_run(client, exp_id: str, system: str, table_rows: list[dict], version: str, tmp: Path) -> str:
    run = client.create_run(exp_id, tags={TAGS["role"]: "system", TAGS["system"]: system, TAGS["cases"]: "t-v1",
                                          TAGS["model_name"]: "lpm-online", TAGS["model_version"]: version})
    columns = sorted({k for r in table_rows for k in r})
    path = tmp / system / "cases.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"columns": columns, "data": [[r.get(c) for c in columns] for r in table_rows]}))
    client.log_artifact(run.info.run_id, str(path), artifact_path=str(Path(CASE_TABLE).parent))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_compare_mlflow_runs_reads_the_case_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("lpm", artifact_location=(tmp_path / "artifacts").as_uri())
    base = rows({"sync": BASE, "motion": BASE})
    base_id = _log_run(client, exp_id, "a", base, "1", tmp_path)
    cand_id = _log_run(client, exp_id, "b", [dict(r, motion=r["motion"] - 0.25) for r in base], "2", tmp_path)
    cmp = compare_mlflow_runs(cand_id, base_id, uri)
    assert cmp.regressed and cmp.deltas["motion"].regressed and not cmp.deltas["sync"].regressed
    assert cmp.candidate_label == "lpm-online/2"
    assert find_bench_run("lpm-online", 2, uri, cases="t-v1") == cand_id
    assert find_bench_run("lpm-online", 3, uri, cases="t-v1") is None
    empty = client.create_run(exp_id).info.run_id
    with pytest.raises(ValueError, match="no LPM-Bench case table"):
        compare_mlflow_runs(empty, base_id, uri)


def test_rows_from_table_round_trip() -> None:
    assert rows_from_table({"columns": ["case_id", "sync"], "data": [["a", 0.5], ["b", None]]}) == [
        {"case_id": "a", "sync": 0.5}, {"case_id": "b", "sync": None}]
