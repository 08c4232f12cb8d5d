"""Record a bench result: MLflow runs (one parent per invocation, one child per system) and catalog rows.

    tracked = log_mlflow(result, tracking_uri, models={"online": ModelRef("lpm-online", "3", "online", "tiny")})
    tracked.system_runs["online"]       # the run ``compare_mlflow_runs`` and the promotion gate read
    record_catalog(result, catalog_url, tracked, models=...)

Child run of a system: tags :data:`~.compare.TAGS` (role ``system``), metrics ``<subset>/<dimension>``
(and ``all/<dimension>``) plus timing / latency means, the per-case table :data:`~.compare.CASE_TABLE`,
side-by-side videos ``videos/<case>.mp4`` (reference | ground truth | generated) for a few cases.
Parent run: every system's metrics as ``<system>/<subset>/<dimension>``, the printed table, a bar
chart per dimension, the case set's provenance and the leakage report.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quality.bench.compare import CASE_TABLE, TAGS
from quality.bench.features import VideoSource
from quality.bench.groundtruth import write_video
from quality.bench.runner import ALL, BenchResult, format_markdown, format_table, summarise
from quality.bench.scores import DIMENSIONS

log = logging.getLogger(__name__)

MODEL_SYSTEMS = ("base", "online", "triton")


@dataclass(frozen=True)
class ModelRef:
    """The registered model version a system ran: name, version, kind, preset, MLflow source run."""

    name: str
    version: str
    kind: str
    preset: str | None = None
    mlflow_run_id: str | None = None
    artifact_uri: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass
class TrackedRun:
    """The MLflow runs of one invocation: the parent and one child per system."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    system_runs: dict[str, str] = field(default_factory=dict)

    def url(self, run_id: str | None = None) -> str:
        """Link to a run (the parent by default) in the MLflow UI."""
        rid = run_id or self.parent_run_id
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{rid}"


def _metrics(summary: dict[str, dict[str, Any]], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{subset}/{dim}": float(cell[dim]) for subset, cell in summary.items()
            for dim in DIMENSIONS if cell.get(dim) is not None}


def _means(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key in keys:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        if values:
            out[f"mean_{key.replace('.', '_')}"] = float(np.mean(values))
    return out


def _frames(path: Path) -> np.ndarray:
    return np.stack([f for _, f in VideoSource.of(path).frames()])


def side_by_side(result: BenchResult, system: str, case_index: int, out: Path) -> Path:
    """reference | ground truth | ``system``'s video of one case, with the character's speech, as MP4."""
    case = result.cases.cases[case_index]
    truth = _frames(result.videos[("ground_truth", case.case_id)]) if ("ground_truth", case.case_id) in result.videos \
        else _frames(case.truth_video)
    made = _frames(result.videos[(system, case.case_id)])
    n = min(len(truth), len(made))
    reference = np.repeat(case.reference_image[None], n, axis=0)
    return write_video(out, np.concatenate([reference, truth[:n], made[:n]], axis=2), case.audio, case.fps)


def _scores_figure(result: BenchResult) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(result.rows)
    systems = result.system_names
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(len(systems), 1)
    for k, system in enumerate(systems):
        values = [summary[system][ALL][d] or 0.0 for d in DIMENSIONS]
        ax.bar(np.arange(len(DIMENSIONS)) + k * width, values, width, label=result.systems[system]["label"])
    ax.set_xticks(np.arange(len(DIMENSIONS)) + width * (len(systems) - 1) / 2, DIMENSIONS)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(f"LPM-Bench {result.cases.spec.name}: all {len(result.cases.cases)} cases")
    ax.legend(fontsize=7, ncols=min(len(systems), 4))
    fig.tight_layout()
    return fig


def _base_tags(result: BenchResult, tags: Mapping[str, str] | None) -> dict[str, str]:
    return {TAGS["cases"]: result.cases.spec.name, "lpm.bench.cases_digest": result.cases.spec.digest[:16],
            **dict(tags or {})}


def _log_system(client: Any, exp_id: str, parent: str, result: BenchResult, system: str, model: ModelRef | None,
                tags: dict[str, str], videos: int, tmp: Path) -> str:
    rows = result.rows_of(system)
    run_tags = tags | {"mlflow.parentRunId": parent, TAGS["role"]: "system", TAGS["system"]: system,
                       "mlflow.runName": f"bench-{system}" + (f"-{model.ref}" if model else "")}
    if model is not None:
        run_tags |= {TAGS["model_name"]: model.name, TAGS["model_version"]: model.version}
    run_id = client.create_run(exp_id, tags=run_tags).info.run_id
    params = {"cases": result.cases.spec.name, "n_cases": len(rows), "label": result.systems[system]["label"]}
    params |= {k: v for k, v in result.systems[system].items() if k != "label" and isinstance(v, (str, int, float))}
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:500])
    metrics = _metrics(summarise(rows)[system]) | _means(rows, ("generate_s", "evaluate_s", "latency.rtf",
                                                               "latency.ttff_s", "latency.chunk_p99_s"))
    from mlflow.entities import Metric

    now = int(1000 * time.time())
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    import pandas as pd

    client.log_table(run_id, pd.DataFrame(rows), CASE_TABLE)
    if system in MODEL_SYSTEMS:
        for index in range(min(videos, len(result.cases.cases))):
            case = result.cases.cases[index]
            path = side_by_side(result, system, index, tmp / system / f"{case.case_id}.mp4")
            client.log_artifact(run_id, str(path), "videos")
    client.set_terminated(run_id)
    return run_id


def log_mlflow(result: BenchResult, tracking_uri: str, *, experiment: str = "lpm",
               models: Mapping[str, ModelRef] | None = None, tags: Mapping[str, str] | None = None,
               leakage: dict[str, Any] | None = None, videos: int = 3, run_name: str | None = None) -> TrackedRun:
    """Log a bench result (see the module docstring); returns the run ids."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    base = _base_tags(result, tags)
    name = run_name or f"bench-{result.cases.spec.name}"
    parent = client.create_run(exp_id, tags=base | {TAGS["role"]: "invocation", "mlflow.runName": name}).info.run_id
    tracked = TrackedRun(tracking_uri, exp_id, parent)
    try:
        with tempfile.TemporaryDirectory(prefix="lpm-bench-log-") as tmp:
            for system in result.system_names:
                tracked.system_runs[system] = _log_system(client, exp_id, parent, result, system,
                                                          (models or {}).get(system), base, videos, Path(tmp))
            client.log_param(parent, "cases", result.cases.spec.name)
            client.log_param(parent, "systems", ",".join(result.system_names))
            now = int(1000 * time.time())
            metrics = {k: v for s, by_subset in summarise(result.rows).items()
                       for k, v in _metrics(by_subset, f"{s}/").items()} | {"bench_seconds": result.seconds}
            client.log_batch(parent, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
            client.log_text(parent, format_table(result), "bench/summary.txt")
            client.log_text(parent, format_markdown(result), "bench/summary.md")
            client.log_figure(parent, _scores_figure(result), "bench/scores.png")
            client.log_dict(parent, {"spec": result.cases.spec.name, "digest": result.cases.spec.digest,
                                     "meta": result.cases.meta, "cases": [c.to_dict() for c in result.cases.cases],
                                     "system_runs": tracked.system_runs}, "bench/case_set.json")
            if leakage is not None:
                client.log_dict(parent, leakage, "bench/leakage.json")
        client.set_terminated(parent)
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    log.info("bench logged to MLflow: parent run %s, systems %s", parent, tracked.system_runs)
    return tracked


def record_catalog(result: BenchResult, catalog_url: str, tracked: TrackedRun | None = None, *,
                   models: Mapping[str, ModelRef] | None = None, dagster_run_id: str | None = None) -> dict[str, int]:
    """One bench_runs row per system (+ bench_results per case); model versions upserted; returns ids."""
    from infra.catalog import Catalog, migrate
    from infra.catalog.bench import record_bench_run
    from infra.catalog.releases import upsert_model_version

    migrate(catalog_url)
    ids: dict[str, int] = {}
    with Catalog(catalog_url) as catalog:
        for system in result.system_names:
            model = (models or {}).get(system)
            mv = None if model is None else upsert_model_version(
                catalog, name=model.name, version=model.version, kind=model.kind, preset=model.preset,
                mlflow_run_id=model.mlflow_run_id, artifact_uri=model.artifact_uri)
            ids[system] = record_bench_run(
                catalog, system=system, suite_version=result.cases.spec.name, rows=result.rows_of(system),
                dimensions=DIMENSIONS, model_version_id=mv,
                mlflow_run_id=tracked.system_runs.get(system) if tracked else None, dagster_run_id=dagster_run_id,
                meta={"label": result.systems[system]["label"], "digest": result.cases.spec.digest[:16],
                      "parent_mlflow_run_id": tracked.parent_run_id if tracked else None})
    return ids


def write_json(result: BenchResult, path: Path) -> Path:
    """Every row of a result as JSON (for ``--json``)."""
    path.write_text(json.dumps({"cases": result.cases.spec.name, "seconds": result.seconds,
                                "systems": result.systems, "rows": result.rows}, indent=1, default=str))
    return path
