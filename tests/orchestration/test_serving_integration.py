"""The serving end of the lineage against the real object store, MLflow, Triton and catalog:
triton_model_repository -> triton_deployment (blocking checks smoke_stream, latency_slo) -> model_promotion,
a promotion blocked by a failing SLO, the LPM-Bench gate on real bench runs, dead-stub recovery, rollback.

Two small untrained Online LPM versions (32x32) are uploaded and registered as lpm-online 1 and 2 with
real ``lpm-model/1`` descriptors whose lineage names a tiny curated dataset in the object store (the
example inputs come from it). The tests run in order and share one Dagster instance.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from infra.catalog import Catalog
from infra.catalog.releases import deployment, promotions
from lpm_models.data.dataset.shards import write_dataset
from lpm_models.descriptor import ModelDescriptor
from orchestration.assets.promotion import model_promotion
from orchestration.assets.serving import triton_deployment, triton_model_repository
from orchestration.assets.serving_checks import latency_slo, smoke_stream
from orchestration.registry import file_ref, register_model, version_tags
from orchestration.release import CHAMPION, alias_version
from orchestration.resources import default_resources, object_store_from_env
from quality.bench.compare import CASE_TABLE, TAGS
from tests.dataset_factory import make_sample
from tests.serving.factory import write_model_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ASSETS = [triton_model_repository, triton_deployment, smoke_stream, latency_slo, model_promotion]
SERVING = ["triton_model_repository", "triton_deployment", "model_promotion"]
LOOSE_SLO = {"ttff_p95_s": 20.0, "chunk_p99_s": 20.0, "rtf_per_stream": 8.0, "errors": 0}
IMPOSSIBLE_SLO = {"ttff_p95_s": 1e-6, "chunk_p99_s": 1e-6, "rtf_per_stream": 1e-6, "errors": 0}
BASE_SCORES = [0.50, 0.55, 0.60, 0.45, 0.52, 0.58, 0.49, 0.61]


@dataclass
class World:
    instance: dg.DagsterInstance
    tracking_uri: str
    catalog_url: str
    repository: Path
    grpc_url: str
    tmp: Path
    runs: dict[str, str] = field(default_factory=dict)

    def catalog(self) -> Catalog:
        return Catalog(self.catalog_url)


def slo_file(tmp: Path, name: str, thresholds: dict[str, float]) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"format": "lpm-slo/1", "name": name, "version": 1,
                                    "load": {"streams": 2, "seconds": 2.0, "realtime": True},
                                    "thresholds": thresholds}))
    return str(path)


def run_config(world: World, slo: str, version: str = "", only: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """Run config of the serving ops (``only``: keep just these op names, for a narrower selection)."""
    examples = str(world.tmp / "examples")
    ops = {"triton_model_repository": {"config": {"version": version, "instances": 1, "max_sessions": 4}},
           "triton_deployment_latency_slo": {"config": {"slo": slo}},
           "triton_deployment_smoke_stream": {"config": {"seconds": 1.5, "examples_dir": examples}},
           "model_promotion": {"config": {"examples_dir": examples}}}
    ops.update(extra)
    return {"ops": {k: v for k, v in ops.items() if not only or k in only}}


def materialize(world: World, selection: Any, config: dict[str, Any]) -> dg.ExecuteInProcessResult:
    return dg.materialize(ASSETS, instance=world.instance, resources=default_resources(), selection=selection,
                          run_config=config, raise_on_error=False)


def register(world: World, version_seed: int, manifest_uri: str, dataset_version: str) -> str:
    """Upload a small model's files, register lpm-online version N (alias challenger); returns N."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=world.tracking_uri)
    experiment = client.get_experiment_by_name("lpm") or client.get_experiment(client.create_experiment("lpm"))
    run_id = client.create_run(experiment.experiment_id, tags={"lpm.stage": "online"}).info.run_id
    store = object_store_from_env()
    files = write_model_files(world.tmp / f"model-{version_seed}", seed=version_seed)
    refs = {k: file_ref(store.put_file("lpm-models", f"online/{run_id}/{p.name}", p)) for k, p in files.items()}
    descriptor = ModelDescriptor(kind="online", preset="tiny", files=refs, lineage={
        "dataset_version": dataset_version, "dataset_manifest": manifest_uri, "mlflow_run_id": run_id})
    registered = register_model(client, "lpm-online", run_id, descriptor, version_tags(descriptor, "test-run"))
    client.set_terminated(run_id)
    world.runs[registered.version] = run_id
    return registered.version


def bench_run(world: World, version: str, shift: float) -> str:
    """A real LPM-Bench-shaped MLflow run (case table artifact) of ``version``, reported as lpm_bench."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=world.tracking_uri)
    experiment = client.get_experiment_by_name("lpm")
    run = client.create_run(experiment.experiment_id, tags={
        TAGS["role"]: "system", TAGS["system"]: "triton", TAGS["cases"]: "it-v1",
        TAGS["model_name"]: "lpm-online", TAGS["model_version"]: version})
    rows = [{"case_id": f"c{i}", "subset": "speaking", "sync": s + shift, "motion": s}
            for i, s in enumerate(BASE_SCORES)]
    path = world.tmp / f"bench-{run.info.run_id}" / "cases.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"columns": ["case_id", "subset", "sync", "motion"],
                                "data": [[r["case_id"], r["subset"], r["sync"], r["motion"]] for r in rows]}))
    client.log_artifact(run.info.run_id, str(path), artifact_path=str(Path(CASE_TABLE).parent))
    client.set_terminated(run.info.run_id)
    world.instance.report_runless_asset_event(dg.AssetMaterialization(
        "lpm_bench", metadata={"model_version": version, "mlflow_run_id": run.info.run_id}))
    return run.info.run_id


@pytest.fixture(scope="module")
def world(lpm_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    stack = lpm_stack.require("objectstore", "mlflow", "triton")
    tmp = tmp_path_factory.mktemp("serving-lineage")
    with stack.activated():
        store = object_store_from_env()
        manifest = write_dataset((make_sample(i, n_frames=60, size=32) for i in range(3)), tmp / "ds", shard_size=3)
        for path in sorted((tmp / "ds").iterdir()):
            store.put_file("lpm-data", f"datasets/{manifest.version}/{path.name}", path)
        w = World(dg.DagsterInstance.ephemeral(), os.environ["MLFLOW_TRACKING_URI"], os.environ["LPM_CATALOG_URL"],
                  stack.settings.triton_repository, stack.settings.triton_grpc_url, tmp)
        w.runs["manifest"] = f"s3://lpm-data/datasets/{manifest.version}/manifest.json"
        w.runs["dataset"] = manifest.version
        yield w


def check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    evaluations = [e.asset_check_evaluation_data for e in result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return next(e.passed for e in evaluations if e.check_name == name)


def test_first_candidate_passing_the_checks_becomes_champion(world: World) -> None:
    assert register(world, 1, world.runs["manifest"], world.runs["dataset"]) == "1"
    result = materialize(world, SERVING, run_config(world, slo_file(world.tmp, "loose", LOOSE_SLO)))
    assert result.success
    assert check_passed(result, "smoke_stream") and check_passed(result, "latency_slo")
    assert alias_version(world.tracking_uri, "lpm-online", CHAMPION) == "1"
    repo = result.asset_materializations_for_node("triton_model_repository")[0].metadata
    provenance = repo["provenance"].value
    assert provenance["model_version"] == 1 and provenance["run_id"] == world.runs["1"]
    assert (world.repository / "lpm-online" / "1" / "provenance.json").is_file()
    deployed = result.asset_materializations_for_node("triton_deployment")[0].metadata
    assert deployed["served_versions"].value == [1] and deployed["health"].value["live"]
    assert deployed["triton_stats"].value["1"]["success"] > 0
    promoted = result.asset_materializations_for_node("model_promotion")[0].metadata
    assert promoted["action"].value == "promote" and "first candidate" in promoted["reason"].value
    command = promoted["stream_command"].value
    assert "--version 1" in command and Path(command.split("--image ")[1].split()[0]).is_file()
    with world.catalog() as cat:
        trail = promotions(cat, "lpm-online")
        assert [(p.action, p.from_version, p.to_version) for p in trail] == [("promote", None, "1")]
        assert trail[0].dagster_run_id == result.run_id and trail[0].actor
        row = deployment(cat, trail[0].deployment_id)
        assert row.status == "live" and row.checks["smoke_stream"]["passed"] and row.checks["latency_slo"]["passed"]


def test_a_failing_slo_blocks_the_promotion(world: World) -> None:
    assert register(world, 2, world.runs["manifest"], world.runs["dataset"]) == "2"
    result = materialize(world, SERVING, run_config(world, slo_file(world.tmp, "impossible", IMPOSSIBLE_SLO)))
    assert not result.success and check_passed(result, "smoke_stream") and not check_passed(result, "latency_slo")
    assert not result.asset_materializations_for_node("model_promotion")
    assert alias_version(world.tracking_uri, "lpm-online", CHAMPION) == "1"
    with world.catalog() as cat:  # the blocked promotion is in the audit trail, written by the failed check
        blocked = promotions(cat, "lpm-online")[0]
        assert (blocked.action, blocked.to_version) == ("refuse", "2") and blocked.dagster_run_id == result.run_id
        assert "blocking check latency_slo failed" in blocked.reason
    # asked directly, the promotion refuses and says why
    alone = materialize(world, ["model_promotion"], run_config(world, "", only=("model_promotion",)))
    meta = alone.asset_materializations_for_node("model_promotion")[0].metadata
    assert meta["action"].value == "refuse" and "latency_slo failed" in meta["reason"].value
    assert alias_version(world.tracking_uri, "lpm-online", CHAMPION) == "1"
    with world.catalog() as cat:
        latest = promotions(cat, "lpm-online")[0]
        assert (latest.action, latest.from_version, latest.to_version) == ("refuse", "1", "2")
        assert deployment(cat, latest.deployment_id).status == "failed"


def test_bench_gate_refuses_a_regression_and_promotes_otherwise(world: World) -> None:
    checks_only = dg.AssetSelection.checks_for_assets(triton_deployment)
    rerun = materialize(world, checks_only, run_config(world, slo_file(world.tmp, "loose", LOOSE_SLO), only=(
        "triton_deployment_latency_slo", "triton_deployment_smoke_stream")))
    assert rerun.success and check_passed(rerun, "latency_slo")
    bench_run(world, "1", 0.0)
    bench_run(world, "2", -0.25)   # sync clearly worse
    refused = materialize(world, ["model_promotion"], run_config(world, "", only=("model_promotion",)))
    meta = refused.asset_materializations_for_node("model_promotion")[0].metadata
    assert meta["action"].value == "refuse" and "regressed" in meta["reason"].value
    assert "REGRESSED" in meta["bench_comparison"].value
    assert alias_version(world.tracking_uri, "lpm-online", CHAMPION) == "1"
    bench_run(world, "2", 0.02)    # a newer bench run of version 2: no regression
    promoted = materialize(world, ["model_promotion"], run_config(world, "", only=("model_promotion",)))
    meta = promoted.asset_materializations_for_node("model_promotion")[0].metadata
    assert meta["action"].value == "promote" and "did not regress" in meta["reason"].value
    assert alias_version(world.tracking_uri, "lpm-online", CHAMPION) == "2"
    with world.catalog() as cat:
        assert [(p.action, p.from_version, p.to_version) for p in promotions(cat, "lpm-online")[:2]] == [
            ("promote", "1", "2"), ("refuse", "1", "2")]


def _stub_pids(world: World, version: str) -> list[int]:
    """Backend stubs of this test stack's Triton serving lpm-online ``version`` (children of our server)."""
    needle = f"{world.repository}/lpm-online/{version}/model.py"
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "triton_python_backend_stub" in cmdline and needle in cmdline:
                pids.append(int(proc.name))
    return pids


def test_a_dead_backend_stub_is_found_and_recovered(world: World) -> None:
    pids = _stub_pids(world, "2")
    assert pids, "no backend stub of version 2 found"
    os.kill(pids[0], signal.SIGKILL)
    config = run_config(world, "", version="2", only=("triton_model_repository", "triton_deployment"),
                        triton_deployment={"config": {"unload_wait_s": 5.0}})
    deploy_only = dg.AssetSelection.assets(triton_model_repository, triton_deployment).without_checks()
    result = materialize(world, deploy_only, config)
    health = result.asset_materializations_for_node("triton_deployment")[0].metadata["health"].value
    assert result.success and health["dead_stub_detected"] and health["recovered"] and health["live"]
    assert pids[0] not in _stub_pids(world, "2") and _stub_pids(world, "2")


def test_rollback_restores_the_previous_champion_in_mlflow_and_triton(world: World, capsys: Any) -> None:
    from orchestration.cli import main
    from serving.deploy import TritonDeployer
    from serving.repository import remove_version

    remove_version(world.repository, "lpm-online", 1)  # retired from the repository: rollback rebuilds it
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    assert main(["model", "rollback", "--reason", "integration test"]) == 0
    assert "version 2 -> 1" in capsys.readouterr().out
    assert alias_version(world.tracking_uri, "lpm-online", CHAMPION) == "1"
    assert (world.repository / "lpm-online" / "1" / "provenance.json").is_file()
    deployer = TritonDeployer(world.grpc_url, world.repository)
    assert 1 in deployer.ready_versions("lpm-online") and deployer.check_live("lpm-online", [1], instances=1) == []
    with world.catalog() as cat:
        latest = promotions(cat, "lpm-online")[0]
        assert (latest.action, latest.from_version, latest.to_version) == ("rollback", "2", "1")
        assert latest.reason == "integration test" and latest.actor
        assert deployment(cat, latest.deployment_id).status == "live"
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("model_promotion"))
    meta = event.asset_materialization.metadata
    assert meta["action"].value == "rollback" and meta["champion_after"].value == "1"
    assert main(["model", "promotions"]) == 0
    out = capsys.readouterr().out
    assert "rollback" in out and "refuse" in out and out.count("promote") >= 2
