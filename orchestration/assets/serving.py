"""Serving assets (group ``serving``): the Triton model repository of a registered Online LPM version
and its deployment on Triton (explicit model control). Blocking checks on the deployment live in
``serving_checks``; the promotion that follows them in ``promotion``.

MLflow version N is Triton version N. The deployment keeps the two newest versions and the
current champion loaded and unloads the rest; it proves every loaded version live with real
sessions (a dead backend stub still reports READY) and reloads the model once if one is not.
"""

import hashlib
from typing import Any

import dagster as dg

from infra.catalog.releases import record_deployment, set_deployment_status
from orchestration.assets.distillation import online_lpm
from orchestration.assets.training_support import latest_metadata
from orchestration.registry import CHALLENGER
from orchestration.release import CHAMPION, alias_version, catalog_version, resolve_version
from orchestration.resources import CatalogResource, MlflowResource, TritonResource
from serving.deploy import DeploymentError, TritonDeployer, repository_versions, versions_to_keep
from serving.params import ServingParams
from serving.repository import ServeSettings, build_model, read_provenance, read_settings

GROUP = "serving"
REPOSITORY_ASSET = "triton_model_repository"
DEPLOYMENT_ASSET = "triton_deployment"


class TritonRepositoryConfig(dg.Config):
    """Which registered version to serve and how. ``version`` (an MLflow version number) wins over
    ``alias``; ``triton_model`` defaults to the registered name. One instance per CPU core
    (``threads`` each); ``max_sessions`` sequence slots per instance."""

    registered_model: str = "lpm-online"
    alias: str = CHALLENGER
    version: str = ""
    triton_model: str = ""
    instances: int = 2
    max_sessions: int = 4
    threads: int = 1
    idle_timeout_s: float = 30.0


@dg.asset(
    group_name=GROUP, deps=[online_lpm], kinds={"triton", "mlflow"},
    description="Triton model repository entry of lpm-online@challenger (or the version in run config): "
    "<repo>/<model>/config.pbtxt + <N>/model.py + <N>/provenance.json naming the exact MLflow version, run and "
    "weights checksums (MLflow version N = Triton version N).",
)
def triton_model_repository(context: dg.AssetExecutionContext, config: TritonRepositoryConfig,
                            triton: TritonResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    resolved = resolve_version(mlflow.tracking_uri, config.registered_model, version=config.version,
                               alias=config.alias)
    name = config.triton_model or config.registered_model
    settings = ServeSettings(ServingParams(threads=config.threads, idle_timeout_s=config.idle_timeout_s),
                             instances=config.instances, max_sessions=config.max_sessions)
    built = build_model(triton.repository_path(), resolved.descriptor, registered_model=resolved.name,
                        version=int(resolved.version), run_id=resolved.run_id, triton_model=name, settings=settings)
    provenance = read_provenance(built.provenance_path)
    provenance_sha = hashlib.sha256(built.provenance_path.read_bytes()).hexdigest()
    context.log.info("%s version %s (%s) -> %s", resolved.name, resolved.version, resolved.run_id, built.directory)
    return dg.MaterializeResult(
        metadata={
            "triton_model": name, "registered_model": resolved.name, "model_version": resolved.version,
            "model_uri": resolved.uri, "mlflow_run_id": resolved.run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(resolved.run_id)) if resolved.run_id else "",
            "preset": resolved.descriptor.preset, "dataset_version": provenance.get("dataset_version", ""),
            "repository": dg.MetadataValue.path(str(triton.repository_path())),
            "model_dir": dg.MetadataValue.path(str(built.directory)),
            "config": dg.MetadataValue.path(str(built.config_path)),
            "provenance": dg.MetadataValue.json(provenance), "provenance_sha256": provenance_sha,
            "checksums": dg.MetadataValue.json(provenance["checksums"]),
            "versions_in_repository": dg.MetadataValue.json(list(built.versions)),
            "instances": config.instances, "max_sessions": config.max_sessions, "threads": config.threads,
        },
        data_version=dg.DataVersion(provenance_sha[:16]),
    )


class TritonDeploymentConfig(dg.Config):
    """``keep_newest`` versions stay loaded (plus the champion); deadlines in seconds."""

    keep_newest: int = 2
    load_timeout_s: float = 900.0
    unload_wait_s: float = 30.0


def _plan_versions(deployer: TritonDeployer, tracking_uri: str, registered: str, name: str, version: int,
                   keep_newest: int) -> tuple[str | None, list[int], list[int]]:
    """(champion, versions to serve, versions retired): the newest ``keep_newest`` plus the candidate and the
    champion (rebuilt from its MLflow descriptor when its folder is missing); the rest leave the repository."""
    champion = alias_version(tracking_uri, registered, CHAMPION)
    if champion and int(champion) not in repository_versions(deployer.repository, name):
        resolved = resolve_version(tracking_uri, registered, version=champion)
        build_model(deployer.repository, resolved.descriptor, registered_model=registered, version=int(champion),
                    run_id=resolved.run_id, triton_model=name)
    keep = versions_to_keep(repository_versions(deployer.repository, name), keep_newest,
                            pinned=[version] + ([int(champion)] if champion else []))
    return champion, sorted(keep), deployer.retire(name, keep)


def _fail(catalog: Any, deployment_id: int, message: str, **metadata: Any) -> dg.Failure:
    set_deployment_status(catalog, deployment_id, "failed")
    return dg.Failure(message, metadata={"deployment_id": deployment_id, **metadata})


@dg.asset(
    group_name=GROUP, deps=[triton_model_repository], kinds={"triton"},
    description="The repository's newest version loaded on Triton (explicit model control) beside the previous "
    "one and the champion; readiness polled with a deadline; every loaded version proven live by real sessions "
    "(a dead backend stub is reloaded). Blocking checks: smoke_stream, latency_slo.",
)
def triton_deployment(context: dg.AssetExecutionContext, config: TritonDeploymentConfig, triton: TritonResource,
                      mlflow: MlflowResource, catalog: CatalogResource) -> dg.MaterializeResult:
    repo = latest_metadata(context, REPOSITORY_ASSET, "materialize triton_model_repository first")
    name, version, registered = str(repo["triton_model"]), int(repo["model_version"]), str(repo["registered_model"])
    deployer = TritonDeployer(triton.grpc_url, triton.repository_path())
    deployer.require_server()
    champion, served, retired = _plan_versions(deployer, mlflow.tracking_uri, registered, name, version,
                                               config.keep_newest)
    settings = read_settings(deployer.repository / name / "config.pbtxt") or ServeSettings()
    cat = catalog.catalog()
    mv_id = catalog_version(cat, resolve_version(mlflow.tracking_uri, registered, version=version))
    dep_id = record_deployment(cat, model_version_id=mv_id, target=triton.grpc_url, triton_model=name,
                               repository_uri=str(deployer.repository / name / str(version)),
                               provenance_sha256=str(repo["provenance_sha256"]), dagster_run_id=context.run.run_id,
                               meta={"served_versions": served, "retired_versions": retired, "champion": champion})
    try:
        reused = deployer.loaded_matches(name, served)
        load_s = 0.0 if reused else deployer.load(name, served, config.load_timeout_s)
        context.log.info("%s versions %s %s; checking each with real sessions", name, served,
                         "already served with this config" if reused else f"ready in {load_s:.1f} s")
        health = deployer.ensure_live(name, served, settings.instances, config.load_timeout_s, config.unload_wait_s)
    except DeploymentError as err:
        raise _fail(cat, dep_id, str(err)) from err
    if health.dead_stub:
        context.log.warning("a dead backend stub was found and %s", "recovered by unload + load" if health.recovered
                            else "NOT recovered")
    if not health.live:
        raise _fail(cat, dep_id, f"{name} is not live after unload + load: {health.errors[:3]}",
                    health=dg.MetadataValue.json(health.to_dict()))
    stats = deployer.statistics(name)
    return dg.MaterializeResult(metadata={
        "triton_model": name, "registered_model": registered, "model_version": str(version),
        "target": triton.grpc_url, "metrics": triton.metrics_url, "served_versions": dg.MetadataValue.json(served),
        "retired_versions": dg.MetadataValue.json(retired), "champion_at_deploy": champion or "",
        "instances": settings.instances, "max_sessions": settings.max_sessions,
        "load_seconds": round(load_s, 1), "reloaded": not reused, "health": dg.MetadataValue.json(health.to_dict()),
        "dead_stub_recovered": health.dead_stub and health.recovered,
        "triton_stats": dg.MetadataValue.json(stats), "deployment_id": dep_id, "catalog_model_version_id": mv_id,
        "provenance_sha256": str(repo["provenance_sha256"]),
        "model_states": dg.MetadataValue.json({str(v): s for v, (s, _) in deployer.states(name).items()}),
    })
