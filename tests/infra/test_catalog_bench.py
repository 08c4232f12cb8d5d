"""LPM-Bench catalog rows on SQLite and PostgreSQL: runs per system, per-case results, cascades, migration 0003."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from infra.catalog import Catalog, downgrade, head_revision, migrate
from infra.catalog.bench import bench_results, latest_bench_run, record_bench_run
from infra.catalog.models import BenchResult, BenchRun
from infra.catalog.releases import upsert_model_version

DIMS = ("sync", "motion", "overall")
ROWS = [{"case_id": "speaking-a", "subset": "speaking", "system": "online", "sync": 0.5, "motion": 0.2,
         "overall": 0.35, "motion.motion_fd": 4.0, "latency.rtf": 0.8},
        {"case_id": "listening-b", "subset": "listening", "system": "online", "sync": None, "motion": 0.4,
         "overall": 0.4, "motion.motion_fd": 1.5, "latency.rtf": 0.9}]


def test_runs_and_results_round_trip(catalog: Catalog) -> None:
    mv = upsert_model_version(catalog, name="lpm-online", version="3", kind="online")
    first = record_bench_run(catalog, system="online", suite_version="default-v1", rows=ROWS, dimensions=DIMS,
                             model_version_id=mv, mlflow_run_id="r1", meta={"digest": "abc"})
    newer = record_bench_run(catalog, system="online", suite_version="default-v1", rows=ROWS[:1], dimensions=DIMS,
                             model_version_id=mv, mlflow_run_id="r2")
    still = record_bench_run(catalog, system="still", suite_version="default-v1", rows=ROWS, dimensions=DIMS)
    results = bench_results(catalog, first)
    assert [r.case_id for r in results] == ["speaking-a", "listening-b"]
    assert results[0].scores == {"sync": 0.5, "motion": 0.2, "overall": 0.35}
    assert results[1].scores["sync"] is None and results[0].metrics["motion.motion_fd"] == 4.0
    run = latest_bench_run(catalog, mv, "default-v1")
    assert run is not None and run.id == newer and run.mlflow_run_id == "r2" and run.n_cases == 1
    with catalog.session(write=False) as s:
        baseline = s.get(BenchRun, still)
        assert baseline.model_version_id is None and baseline.system == "still"
        assert baseline.scores["motion"] == pytest.approx(0.3) and baseline.overall == pytest.approx(0.375)
    with pytest.raises(ValueError, match="no per-case rows"):
        record_bench_run(catalog, system="online", suite_version="x", rows=[], dimensions=DIMS)


def test_results_are_unique_per_case_and_cascade(catalog: Catalog) -> None:
    run = record_bench_run(catalog, system="still", suite_version="default-v1", rows=ROWS, dimensions=DIMS)
    with pytest.raises(IntegrityError):
        with catalog.session() as s:
            s.add(BenchResult(bench_run_id=run, case_id="speaking-a", subset="speaking", scores={}))
    with catalog.session() as s:
        s.execute(sa.delete(BenchRun).where(BenchRun.id == run))
    assert bench_results(catalog, run) == []


def test_migration_0003_down_and_up(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    migrate(url)
    with Catalog(url) as cat:
        record_bench_run(cat, system="still", suite_version="default-v1", rows=ROWS, dimensions=DIMS)
    downgrade(url, "0002")
    engine = sa.create_engine(url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("bench_runs")}
        assert "system" not in columns and "bench_results" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert migrate(url) == head_revision()
