"""`lpm bench`: model URIs, argument errors, listing cases and a baselines-only run without recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.bench import parse_model_uri, unique_names
from orchestration.cli import main as lpm
from quality.bench.cases import CaseSet
from quality.bench.systems import GroundTruthSystem, StillSystem
from tests.quality.bench_factory import SPEC, bench_cases  # noqa: F401  (session fixture)


def test_model_uris() -> None:
    assert parse_model_uri("models:/lpm-online@challenger") == ("lpm-online", "challenger", None)
    assert parse_model_uri("models:/lpm-base/12") == ("lpm-base", None, "12")
    for bad in ("lpm-online", "models:/lpm-online", "runs:/abc/model", "models:/a/b/c"):
        with pytest.raises(ValueError, match="models:/NAME@ALIAS"):
            parse_model_uri(bad)


def test_systems_of_one_kind_get_distinct_names() -> None:
    systems = [StillSystem(), StillSystem()]
    unique_names(systems, [None, None])  # type: ignore[arg-type]
    assert [s.name for s in systems] == ["still", "still-1"]
    assert GroundTruthSystem.name == "ground_truth"


def test_nothing_to_run_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert lpm(["bench", "run"]) == 1
    with pytest.raises(SystemExit):
        lpm(["bench", "compare", "only-one"])


def test_cases_and_a_baselines_run(bench_cases: CaseSet, tmp_path: Path,  # noqa: F811
                                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "test-small.yaml"
    spec.write_text(SPEC)
    cache = str(bench_cases.root.parent.parent)
    assert lpm(["bench", "cases", "--cases", str(spec), "--cache-dir", cache]) == 0
    listed = capsys.readouterr().out
    assert all(c.case_id in listed for c in bench_cases.cases)
    out_json = tmp_path / "rows.json"
    assert lpm(["bench", "run", "--baselines", "--cases", str(spec), "--cache-dir", cache, "--subset", "speaking",
                "--no-record", "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "ground truth" in table and "still image" in table and "took" in table and "MLflow" not in table
    assert out_json.is_file() and '"rows"' in out_json.read_text()


def test_compare_prints_deltas_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    from tests.quality.test_bench_compare import BASE, _log_run, rows

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("lpm", artifact_location=(tmp_path / "artifacts").as_uri())
    base = rows({"sync": BASE, "overall": BASE})
    old = _log_run(client, exp_id, "old", base, "1", tmp_path)
    new = _log_run(client, exp_id, "new", [dict(r, sync=r["sync"] - 0.3) for r in base], "2", tmp_path)
    assert lpm(["bench", "compare", new, old]) == 0
    out = capsys.readouterr().out
    assert "lpm-online/2 vs lpm-online/1" in out and "| sync |" in out and "95% CI" in out and "REGRESSED" in out
    assert lpm(["bench", "compare", new, old, "--check"]) == 1
    assert lpm(["bench", "compare", old, old, "--check"]) == 0
