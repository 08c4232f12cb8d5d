"""LPM-Bench asset (group ``evaluation``): the newest ``lpm-online@challenger`` on the default case set.

The Online LPM version is evaluated in process beside the ground-truth and still-image baselines;
the Base LPM it was distilled from (its ``lpm.teacher`` tag) is evaluated once per base version
(a later run reuses that version's bench run). Before anything runs, the cases are checked against
the model's training dataset version (manifest + shards from the object store). Results: an MLflow
parent run with one child run per system (the online child is ``mlflow_run_id``, what the promotion
gate compares with ``quality.bench.compare.compare_mlflow_runs``), catalog ``bench_runs`` /
``bench_results`` rows, and the metadata below.
"""

import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource

GROUP = "evaluation"
ONLINE_URI = "models:/lpm-online@challenger"


class LPMBenchConfig(dg.Config):
    """Run config of ``lpm_bench``: the case set (a name or a YAML path; ``subsets`` / ``limit`` cut it
    down), Base LPM sampling steps per chunk (0: the preset's), baselines, leakage check (``drop_leaked``:
    evaluate the cases that share nothing with training rather than failing; the scores are then on fewer
    cases than the champion's, so the promotion comparison is on unequal sets), side-by-side
    videos logged per model, torch threads (0: torch's default)."""

    cases: str = "default-v1"
    subsets: list[str] = []
    limit: int = 0
    base_steps: int = 2
    baselines: bool = True
    check_leakage: bool = True
    drop_leaked: bool = False
    videos: int = 3
    threads: int = 0
    seed: int = 0


def _store(object_store: ObjectStoreResource) -> Any:
    from serving.store import ObjectStore

    return ObjectStore(object_store.endpoint, object_store.access_key, object_store.secret_key, object_store.region)


def _base_plan(tracking_uri: str, online: Any, cases: str) -> tuple[str | None, str | None]:
    """(URI of the teacher to evaluate now, or None; run id of its earlier bench run, or None)."""
    from orchestration.bench import parse_model_uri, teacher_uri
    from quality.bench.compare import find_bench_run

    uri = teacher_uri(online)
    if uri is None:
        return None, None
    name, _, version = parse_model_uri(uri)
    earlier = find_bench_run(name, str(version), tracking_uri, cases=cases)
    return (None, earlier) if earlier else (uri, None)


def _scores(outcome: Any, system: str) -> dict[str, float]:
    from quality.bench.runner import ALL, summarise

    cell = summarise(outcome.result.rows_of(system))[system][ALL]
    return {f"score_{dim}": round(float(v), 4) for dim, v in cell.items() if dim != "n" and v is not None}


@dg.asset(
    group_name=GROUP, deps=["online_lpm"], kinds={"python", "mlflow"},
    description="LPM-Bench on the newest lpm-online@challenger (and its Base LPM teacher once per base version) "
    "with ground-truth and still-image baselines: per-dimension scores per subset in MLflow and the catalog.",
)
def lpm_bench(context: dg.AssetExecutionContext, config: LPMBenchConfig, mlflow: MlflowResource,
              object_store: ObjectStoreResource, catalog: CatalogResource) -> dg.MaterializeResult:
    from orchestration.bench import BenchRequest, bench_cache_dir, resolve_model_uri, run_request
    from quality.bench.cases import load_case_set
    from quality.bench.runner import format_markdown

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    tracking = mlflow.tracking_uri
    cases = load_case_set(config.cases, bench_cache_dir()).select(config.subsets or None, config.limit or None)
    online = resolve_model_uri(tracking, ONLINE_URI)
    base_uri, base_earlier = _base_plan(tracking, online, cases.spec.name)
    models = [u for u in (base_uri, f"models:/{online.ref.name}/{online.ref.version}") if u]
    context.log.info("LPM-Bench %s (%d cases) on %s%s", cases.spec.name, len(cases.cases), ", ".join(models),
                     f" (Base LPM already benched in run {base_earlier})" if base_earlier else "")
    request = BenchRequest(models=models, baselines=config.baselines, base_steps=config.base_steps or None,
                           seed=config.seed, check_leakage=config.check_leakage,
                           drop_leaked=config.drop_leaked, videos=config.videos,
                           tags={"dagster.run_id": context.run.run_id, "dagster.asset": "lpm_bench"})
    with tempfile.TemporaryDirectory(prefix="lpm-bench-") as tmp:
        outcome = run_request(request, cases, Path(tmp), tracking_uri=tracking, catalog_url=catalog.url,
                              store=_store(object_store), dagster_run_id=context.run.run_id)
    tracked = outcome.tracked
    if tracked is None:
        raise RuntimeError("the bench was not logged to MLflow; lpm_bench needs the MLflow resource")
    online_run = tracked.system_runs["online"]
    metadata: dict[str, Any] = {
        "model_version": str(online.ref.version), "model": online.ref.ref, "mlflow_run_id": online_run,
        "mlflow_url": dg.MetadataValue.url(tracked.url(online_run)),
        "mlflow_parent_url": dg.MetadataValue.url(tracked.url()), "cases": config.cases,
        "cases_digest": cases.spec.digest[:16], "n_cases": len(cases.cases),
        "table": dg.MetadataValue.md(format_markdown(outcome.result)),
        "seconds": round(outcome.result.seconds, 1), "catalog_bench_run_id": outcome.catalog_ids.get("online"),
        "leakage": dg.MetadataValue.json(outcome.leakage), "dataset_version": online.dataset_version or "",
        **_scores(outcome, "online"),
    }
    if "base" in tracked.system_runs:
        metadata |= {"base_model": outcome.refs["base"].ref, "base_mlflow_run_id": tracked.system_runs["base"]}
    elif base_earlier:
        metadata |= {"base_mlflow_run_id": base_earlier, "base_reused": True}
    return dg.MaterializeResult(metadata=metadata)
