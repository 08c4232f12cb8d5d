"""Blocking asset checks of ``triton_deployment``: a real smoke stream and the latency SLO.

Both judge the version the newest deployment loaded, record their result on its catalog row
(``deployments.checks``; a failure marks it ``failed``) and, being blocking, stop
``model_promotion`` in the same run when they fail; a failure is also a ``refuse`` row of the
promotion audit trail (``lpm model promotions``), since ``model_promotion`` does not run to write it.
"""

import contextlib
import os
from pathlib import Path
from typing import Any

import dagster as dg

from infra.catalog.releases import record_promotion, set_deployment_check
from orchestration.assets.serving import DEPLOYMENT_ASSET, triton_deployment
from orchestration.assets.training_support import latest_metadata
from orchestration.examples import write_examples
from orchestration.release import CHAMPION, actor
from orchestration.resources import CatalogResource, ObjectStoreResource, TritonResource
from quality.slo import evaluate, load_slo
from serving.deploy import TritonDeployer
from serving.metrics import MetricsWatcher
from serving.probe import probe
from serving.smoke import smoke_stream as run_smoke_stream

CHECKS = ("smoke_stream", "latency_slo")


def examples_dir(configured: str) -> Path:
    """Where example inputs and previews go: ``configured``, else ``$LPM_HOME/examples``."""
    if configured:
        return Path(configured)
    return Path(os.environ.get("LPM_HOME") or Path.cwd() / ".lpm") / "examples"


def _deployment(context: dg.AssetCheckExecutionContext) -> dict[str, Any]:
    return latest_metadata(context, DEPLOYMENT_ASSET, "materialize triton_deployment first")  # type: ignore[arg-type]


def _record_block(context: dg.AssetCheckExecutionContext, catalog: CatalogResource, dep: dict[str, Any], check: str,
                  why: str) -> None:
    """The audit row of a promotion this failed check blocks (no previous version: the check does not read
    the registry; ``lpm model promotions`` shows the champion it kept from the rows before)."""
    mv_id = dep.get("catalog_model_version_id")
    if mv_id is None:
        return
    record_promotion(catalog.catalog(), registered_model=str(dep["registered_model"]), alias=CHAMPION, action="refuse",
                     model_version_id=int(mv_id), previous_model_version_id=None,
                     reason=f"blocking check {check} failed: {why}", actor=actor(), dagster_run_id=context.run.run_id,
                     deployment_id=int(dep["deployment_id"]), meta={"check": check, "triton_model": dep["triton_model"]})


def _clean(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is not None}


class SmokeStreamConfig(dg.Config):
    """``seconds`` of the example speech streamed; ``examples_dir`` ("" = ``$LPM_HOME/examples``)."""

    seconds: float = 3.0
    examples_dir: str = ""


@dg.asset_check(
    asset=triton_deployment, blocking=True,
    description="A real stream on the deployed version: a character image and speech from the model's own curated "
    "dataset in, frames out; checks stream info, chunk order, frame counts and shapes, pixel value ranges, runtime "
    "states and errors; writes a preview MP4 beside the example inputs.",
)
def smoke_stream(context: dg.AssetCheckExecutionContext, config: SmokeStreamConfig, triton: TritonResource,
                 object_store: ObjectStoreResource, catalog: CatalogResource) -> dg.AssetCheckResult:
    dep = _deployment(context)
    name, version = str(dep["triton_model"]), str(dep["model_version"])
    lineage = TritonDeployer(triton.grpc_url, triton.repository_path()).provenance(name, int(version))["lineage"]
    examples = write_examples(object_store, lineage, examples_dir(config.examples_dir))
    preview = examples.directory / f"smoke-{name}-v{version}.mp4"
    result = run_smoke_stream(triton.grpc_url, name, version, examples.image, examples.speech, examples.user_speech,
                              seconds=config.seconds, out=preview)
    set_deployment_check(catalog.catalog(), int(dep["deployment_id"]), "smoke_stream",
                         {"passed": result.passed, "failures": result.failures, **result.figures})
    context.log.info("smoke stream of %s v%s: %s", name, version, result.markdown())
    if not result.passed:
        _record_block(context, catalog, dep, "smoke_stream", "; ".join(result.failures[:3]))
    return dg.AssetCheckResult(
        passed=result.passed,
        description="; ".join(result.failures[:3]) or f"{result.figures['chunks']} chunks, all checks passed",
        metadata=_clean({
            "model_version": version, "summary": dg.MetadataValue.md(result.markdown()),
            "failures": dg.MetadataValue.json(result.failures), "chunks": result.figures.get("chunks"),
            "frames": result.figures.get("frames"), "states": dg.MetadataValue.json(result.figures.get("states", {})),
            "pixel_mean": result.figures.get("pixel_mean"), "pixel_std_min": result.figures.get("pixel_std_min"),
            "ttff_s": result.figures.get("ttff_s"), "rtf": result.figures.get("rtf"),
            "preview": dg.MetadataValue.path(str(preview)) if preview.exists() else None,
            "example_image": dg.MetadataValue.path(str(examples.image)),
            "example_speech": dg.MetadataValue.path(str(examples.speech)),
            "example_user_speech": dg.MetadataValue.path(str(examples.user_speech)),
            "example_source": dg.MetadataValue.json(examples.source),
            "stream_command": examples.command(name, version),
        }))


class LatencySLOConfig(dg.Config):
    """``slo``: a name in ``quality/slo/`` (``online-tiny``) or the path of an ``lpm-slo/1`` file.
    ``warmup_s``: audio per stream of an unmeasured warm-up with the SLO's concurrency first, so every
    freshly loaded instance has served a request (its first one pays one-off allocation and loading
    costs that no live session sees twice); 0 measures cold instances."""

    slo: str = "online-tiny"
    warmup_s: float = 1.0


@dg.asset_check(
    asset=triton_deployment, blocking=True,
    description="The latency SLO (quality/slo/<name>.yaml): N concurrent real-time streams (serving.probe) with "
    "Triton's Prometheus metrics scraped alongside; TTFF p95, per-chunk p99, RTF of every stream, errors == 0.",
)
def latency_slo(context: dg.AssetCheckExecutionContext, config: LatencySLOConfig, triton: TritonResource,
                catalog: CatalogResource) -> dg.AssetCheckResult:
    slo = load_slo(config.slo)
    dep = _deployment(context)
    name, version = str(dep["triton_model"]), str(dep["model_version"])
    watcher = MetricsWatcher(triton.metrics_url, name, version) if triton.metrics_url else None
    context.log.info("probing %s v%s with %s (%d streams x %g s)", name, version, slo.ref, slo.streams, slo.seconds)
    if config.warmup_s > 0:
        warm = probe(triton.grpc_url, name, version, streams=slo.streams, seconds=config.warmup_s, realtime=False)
        context.log.info("warm-up (not measured): %d stream(s) x %g s, %d error(s)", slo.streams, config.warmup_s,
                         len(warm.all_errors))
    with watcher or contextlib.nullcontext():
        report = probe(triton.grpc_url, name, version, streams=slo.streams, seconds=slo.seconds,
                       realtime=slo.realtime)
    server = watcher.figures() if watcher else {"scraped": False}
    summary = {**report.summary(), "server_errors": int(server.get("requests_failed", 0))}
    verdict = evaluate(summary, slo)
    set_deployment_check(catalog.catalog(), int(dep["deployment_id"]), "latency_slo",
                         {**verdict.to_dict(), "triton_metrics": server, "slo_sha256": slo.sha256})
    context.log.info("%s", verdict.markdown())
    if not verdict.passed:
        _record_block(context, catalog, dep, "latency_slo", "; ".join(verdict.failures))
    return dg.AssetCheckResult(
        passed=verdict.passed,
        description="; ".join(verdict.failures) or f"{slo.ref} met",
        metadata=_clean({
            "model_version": version, "verdict": dg.MetadataValue.md(verdict.markdown()), "slo": slo.ref,
            "slo_file": dg.MetadataValue.path(slo.source), "slo_sha256": slo.sha256, "streams": slo.streams,
            "seconds_per_stream": slo.seconds, "warmup_s": config.warmup_s, "ttff_p95_s": summary.get("ttff_p95_s"),
            "chunk_p50_s": summary.get("chunk_p50_s"), "chunk_p99_s": summary.get("chunk_p99_s"),
            "rtf_max": summary.get("rtf_max"), "rtf_per_stream": dg.MetadataValue.json(summary["rtf_per_stream"]),
            "errors": summary["errors"], "server_errors": summary["server_errors"],
            "triton_metrics": dg.MetadataValue.json(server), "probe": dg.MetadataValue.json(summary),
        }))
