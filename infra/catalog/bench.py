"""LPM-Bench rows of the catalog: one ``bench_runs`` row per evaluated system, one ``bench_results`` row per case.

    run_id = record_bench_run(cat, system="online", model_version_id=mv, suite_version="default-v1",
                              rows=per_case_rows, mlflow_run_id=..., dagster_run_id=...)
    bench_results(cat, run_id)             # the per-case rows back (scores + raw metrics)
    latest_bench_run(cat, mv)              # the newest succeeded run of a model version

A row of ``rows`` carries ``case_id``, ``subset``, one score per dimension (``scores``) and raw
metrics (every other numeric column, kept in ``metrics``). SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from infra.catalog.api import Catalog
from infra.catalog.models import BenchResult, BenchRun

SUITE = "lpm-bench"
_IDS = ("case_id", "subset", "system", "label", "style")


def _json(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _mean(values: list[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def record_bench_run(catalog: Catalog, *, system: str, suite_version: str, rows: Sequence[dict[str, Any]],
                     dimensions: Sequence[str], model_version_id: int | None = None,
                     mlflow_run_id: str | None = None, dagster_run_id: str | None = None,
                     meta: dict[str, Any] | None = None) -> int:
    """One succeeded run of ``system`` with its per-case rows; returns the bench_runs id."""
    if not rows:
        raise ValueError(f"no per-case rows to record for system {system!r}")
    scores = {d: _mean([r.get(d) for r in rows]) for d in dimensions}
    run = BenchRun(model_version_id=model_version_id, system=system, suite=SUITE, suite_version=suite_version,
                   status="succeeded", n_cases=len(rows), overall=scores.get("overall"), scores=scores,
                   mlflow_run_id=mlflow_run_id, dagster_run_id=dagster_run_id, meta=meta)
    with catalog.session() as session:
        session.add(run)
        session.flush()
        session.add_all(BenchResult(
            bench_run_id=run.id, case_id=str(r["case_id"]), subset=str(r["subset"]), overall=r.get("overall"),
            scores={d: r.get(d) for d in dimensions},
            metrics={k: _json(v) for k, v in r.items() if k not in dimensions and k not in _IDS})
            for r in rows)
        return run.id


def bench_results(catalog: Catalog, bench_run_id: int) -> list[BenchResult]:
    """The per-case rows of a bench run, in case order."""
    with catalog.session(write=False) as session:
        return list(session.scalars(sa.select(BenchResult).where(BenchResult.bench_run_id == bench_run_id)
                                    .order_by(BenchResult.id)))


def latest_bench_run(catalog: Catalog, model_version_id: int, suite_version: str | None = None) -> BenchRun | None:
    """The newest succeeded bench run of a model version (on ``suite_version`` when given)."""
    query = sa.select(BenchRun).where(BenchRun.model_version_id == model_version_id, BenchRun.status == "succeeded")
    if suite_version is not None:
        query = query.where(BenchRun.suite_version == suite_version)
    with catalog.session(write=False) as session:
        return session.scalars(query.order_by(BenchRun.id.desc()).limit(1)).first()
