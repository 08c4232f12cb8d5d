"""The promotion asset (group ``serving``): moves ``champion`` to the deployed candidate when its blocking
checks passed on the newest deployment AND LPM-Bench did not regress against the current champion
(the first candidate that passes the checks becomes champion). Every decision, including a refusal,
is a catalog audit row (``promotions``) and materialization metadata. It ends by writing a
ready-to-run ``lpm stream`` command against the champion."""

from typing import Any

import dagster as dg

from infra.catalog.releases import record_promotion, retire_live_deployments, set_deployment_status
from orchestration.assets.serving import DEPLOYMENT_ASSET, GROUP, triton_deployment
from orchestration.assets.serving_checks import CHECKS, examples_dir
from orchestration.assets.training_support import latest_metadata
from orchestration.examples import write_examples
from orchestration.release import (
    CHAMPION, BenchGate, actor, alias_version, bench_gate, catalog_version, move_alias, resolve_version,
)
from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource

BENCH_ASSET = "lpm_bench"


class PromotionConfig(dg.Config):
    """``bench_asset``: the asset whose materializations carry ``model_version`` and ``mlflow_run_id`` of
    each LPM-Bench run; ``examples_dir``: where the example inputs go ("" = ``$LPM_HOME/examples``)."""

    bench_asset: str = BENCH_ASSET
    examples_dir: str = ""


def check_outcomes(instance: dg.DagsterInstance, asset: str, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per check: passed (None = not evaluated), and whether it judged the asset's newest materialization."""
    key = dg.AssetKey(asset)
    latest = instance.fetch_materializations(key, limit=1).records
    latest_id = latest[0].storage_id if latest else None
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(key, name))
        evaluation = record.evaluation if record is not None else None
        target = getattr(evaluation, "target_materialization_data", None) if evaluation else None
        out[name] = {"passed": None if evaluation is None else bool(evaluation.passed),
                     "current": target is not None and target.storage_id == latest_id,
                     "run_id": record.run_id if record is not None else None,
                     "description": getattr(evaluation, "description", None) if evaluation else None}
    return out


def checks_refusal(outcomes: dict[str, dict[str, Any]]) -> str | None:
    """Why the checks forbid a promotion (None: every check passed on the newest deployment)."""
    problems = []
    for name, o in outcomes.items():
        if o["passed"] is None:
            problems.append(f"{name} was never evaluated")
        elif not o["current"]:
            problems.append(f"{name} has not judged the newest deployment")
        elif not o["passed"]:
            problems.append(f"{name} failed" + (f" ({o['description']})" if o.get("description") else ""))
    return "blocking checks: " + "; ".join(problems) if problems else None


def bench_run_id(instance: dg.DagsterInstance, asset: str, model_version: str, limit: int = 500) -> str | None:
    """``mlflow_run_id`` of the newest ``asset`` materialization whose ``model_version`` is ``model_version``."""
    for record in instance.fetch_materializations(dg.AssetKey(asset), limit=limit).records:
        meta = record.asset_materialization.metadata if record.asset_materialization else {}
        value = getattr(meta.get("model_version"), "value", meta.get("model_version"))
        run = getattr(meta.get("mlflow_run_id"), "value", meta.get("mlflow_run_id"))
        if value is not None and str(value) == str(model_version) and run:
            return str(run)
    return None


def _decide(context: dg.AssetExecutionContext, config: PromotionConfig, tracking_uri: str, candidate: str,
            champion: str | None, outcomes: dict[str, dict[str, Any]]) -> tuple[str, str, BenchGate | None]:
    """(action, reason, bench gate): action promote / refuse / none (already champion)."""
    refusal = checks_refusal(outcomes)
    if refusal:
        return "refuse", refusal, None
    if champion == candidate:
        return "none", f"version {candidate} is already {CHAMPION}", None
    if champion is None:
        return "promote", f"first candidate to pass the blocking checks ({', '.join(CHECKS)}); no {CHAMPION} yet", None
    gate = bench_gate(tracking_uri, candidate, champion, bench_run_id(context.instance, config.bench_asset, candidate),
                      bench_run_id(context.instance, config.bench_asset, champion))
    return ("promote" if gate.allowed else "refuse"), f"checks passed; {gate.reason}", gate


@dg.asset(
    group_name=GROUP, deps=[triton_deployment, BENCH_ASSET], kinds={"mlflow"},
    description="Moves MLflow alias `champion` to the deployed candidate only when smoke_stream and latency_slo "
    "passed on the newest deployment and LPM-Bench did not regress vs the champion (the first passing candidate "
    "becomes champion). Audited in the catalog (promotions); prints a ready-to-run `lpm stream` command.",
)
def model_promotion(context: dg.AssetExecutionContext, config: PromotionConfig, mlflow: MlflowResource,
                    catalog: CatalogResource, object_store: ObjectStoreResource) -> dg.MaterializeResult:
    dep = latest_metadata(context, DEPLOYMENT_ASSET, "materialize triton_deployment first")
    registered, candidate, name = str(dep["registered_model"]), str(dep["model_version"]), str(dep["triton_model"])
    uri, who = mlflow.tracking_uri, actor()
    champion = alias_version(uri, registered, CHAMPION)
    outcomes = check_outcomes(context.instance, DEPLOYMENT_ASSET, CHECKS)
    action, reason, gate = _decide(context, config, uri, candidate, champion, outcomes)
    cat = catalog.catalog()
    cand_id = catalog_version(cat, resolve_version(uri, registered, version=candidate))
    champ_id = catalog_version(cat, resolve_version(uri, registered, version=champion)) if champion else None
    audit = {"checks": outcomes, "bench": gate.to_dict() if gate else None, "triton_model": name,
             "target": dep["target"], "dagster_run_id": context.run.run_id}
    promotion_id = None
    if action == "promote":
        move_alias(uri, registered, CHAMPION, candidate, who=who, reason=reason)
        set_deployment_status(cat, int(dep["deployment_id"]), "live")
        retire_live_deployments(cat, name, str(dep["target"]), keep=int(dep["deployment_id"]))
    if action != "none":
        promotion_id = record_promotion(
            cat, registered_model=registered, alias=CHAMPION, action=action, model_version_id=cand_id,
            previous_model_version_id=champ_id, reason=reason, actor=who, dagster_run_id=context.run.run_id,
            deployment_id=int(dep["deployment_id"]), meta=audit)
    after = candidate if action == "promote" else champion
    context.log.info("%s: %s (%s@%s: %s -> %s)", action, reason, registered, CHAMPION, champion, after)
    return dg.MaterializeResult(metadata=_metadata(
        context, object_store, uri, registered, name, action, reason, candidate, champion, after, outcomes, gate, who,
        promotion_id, config))


def _metadata(context: dg.AssetExecutionContext, store: ObjectStoreResource, tracking_uri: str, registered: str,
              name: str, action: str, reason: str, candidate: str, before: str | None, after: str | None,
              outcomes: dict[str, Any], gate: BenchGate | None, who: str, promotion_id: int | None,
              config: PromotionConfig) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "action": action, "promoted": action == "promote", "reason": reason, "candidate_version": candidate,
        "champion_before": before or "", "champion_after": after or "", "actor": who,
        "checks": dg.MetadataValue.json(outcomes), "promotion_id": promotion_id if promotion_id is not None else -1,
        "bench": dg.MetadataValue.json(gate.to_dict() if gate else {"compared": False}),
    }
    if gate and gate.markdown:
        meta["bench_comparison"] = dg.MetadataValue.md(gate.markdown)
    if after:
        lineage = resolve_version(tracking_uri, registered, version=after).descriptor.lineage
        examples = write_examples(store, lineage, examples_dir(config.examples_dir))
        command = examples.command(name, after, seconds=10)
        meta.update(stream_command=command, champion_version=after,
                    example_image=dg.MetadataValue.path(str(examples.image)))
        context.log.info("Stream the champion: %s", command)
    return meta
