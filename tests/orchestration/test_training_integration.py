"""video_vae -> base_lpm (2 FSDP2 ranks) -> online_lpm against the real object store and MLflow, with
minimal budgets; then the registry contract as a serving client would read it."""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lpm_models.data.dataset.shards import write_dataset
from orchestration.assets.distillation import online_lpm
from orchestration.assets.training import base_lpm, video_vae
from orchestration.assets.training_support import split_s3
from orchestration.registry import CHALLENGER, resolve_model
from orchestration.resources import default_resources, object_store_from_env
from orchestration.resources.object_store import sha256_file
from tests.dataset_factory import make_sample

pytestmark = pytest.mark.integration

MICRO = {"resolution": 32, "clip_frames": 9}
BUDGET = {
    "video_vae": {"steps": 4, "batch_size": 2, "crop": 16, **MICRO},
    "base_lpm": {"steps": 4, "ranks": 2, "batch_size": 1, "log_every": 1, **MICRO},
    "online_lpm": {"steps_ode": 2, "steps_dmd": 1, "steps_self_forcing": 1, "steps_refiner": 1, "clips": 2,
                   "heldout": 1, "batch_size": 2, "teacher_substeps": 1},
}


@pytest.fixture(scope="module")
def trained(lpm_stack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny curated dataset in the object store, reported as curated_dataset; the three assets materialized."""
    lpm_stack.require("objectstore", "mlflow")
    with lpm_stack.activated():
        store = object_store_from_env()
        local = tmp_path_factory.mktemp("dataset") / "v"
        manifest = write_dataset((make_sample(i, n_frames=40, size=32) for i in range(6)), local, shard_size=3)
        prefix = f"datasets/{manifest.version}/"
        for path in sorted(local.iterdir()):
            store.put_file("lpm-data", prefix + path.name, path)
        instance = dg.DagsterInstance.ephemeral()
        instance.report_runless_asset_event(dg.AssetMaterialization("curated_dataset", metadata={
            "version": manifest.version, "manifest": dg.MetadataValue.path(f"s3://lpm-data/{prefix}manifest.json")}))
        result = dg.materialize([video_vae, base_lpm, online_lpm], instance=instance, resources=default_resources(),
                                run_config={"ops": {k: {"config": v} for k, v in BUDGET.items()}})
        assert result.success
        yield {"result": result, "instance": instance, "store": store, "version": manifest.version,
               "tracking_uri": os.environ["MLFLOW_TRACKING_URI"], "catalog_url": os.environ["LPM_CATALOG_URL"],
               "tmp": tmp_path_factory.mktemp("downloads")}


def _client(trained: Any) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=trained["tracking_uri"])


def test_online_challenger_resolves_to_files_with_matching_checksums(trained: Any) -> None:
    version, descriptor = resolve_model(trained["tracking_uri"], "lpm-online", CHALLENGER)
    assert descriptor.kind == "online" and descriptor.preset == "tiny" and set(descriptor.files) == {"online", "vae"}
    for name, ref in descriptor.files.items():
        bucket, key = split_s3(ref.uri)
        assert bucket == "lpm-models" and key.startswith(("online/", "vae/"))
        local = trained["store"].get_file(bucket, key, trained["tmp"] / f"{name}.pt")
        assert sha256_file(local) == ref.sha256 and local.stat().st_size == ref.bytes
    _, vae_descriptor = resolve_model(trained["tracking_uri"], "lpm-vae", CHALLENGER)
    assert descriptor.files["vae"] == vae_descriptor.files["vae"]  # the VAE the teacher was trained with


def test_versions_are_tagged_with_dataset_teacher_and_dagster_run(trained: Any) -> None:
    client = _client(trained)
    online = client.get_model_version_by_alias("lpm-online", CHALLENGER)
    base = client.get_model_version_by_alias("lpm-base", CHALLENGER)
    run_id = trained["result"].run_id
    assert online.tags["lpm.teacher"] == f"lpm-base/{base.version}"
    for version in (online, base):
        assert version.tags["lpm.dataset_version"] == trained["version"]
        assert version.tags["dagster.run_id"] == run_id and version.tags["lpm.preset"] == "tiny"
        assert len(version.tags.get("git.commit", "0" * 40)) == 40
    _, base_descriptor = resolve_model(trained["tracking_uri"], "lpm-base", CHALLENGER)
    assert set(base_descriptor.files) == {"base", "vae"}
    assert base_descriptor.lineage["dataset_version"] == trained["version"]


def test_base_run_logged_once_from_pipes_events_with_previews(trained: Any) -> None:
    client = _client(trained)
    version = client.get_model_version_by_alias("lpm-base", CHALLENGER)
    run = client.get_run(version.run_id)
    assert run.data.tags["dagster.run_id"] == trained["result"].run_id
    assert run.data.params["ranks"] == "2" and run.data.params["run_ranks"] == "2"
    history = client.get_metric_history(version.run_id, "loss")
    steps = [m.step for m in history]
    assert steps and len(steps) == len(set(steps)), "loss logged more than once per step (not rank 0 only?)"
    assert "samples_per_s" in run.data.metrics and "final_loss" in run.data.metrics
    previews = [a.path for a in client.list_artifacts(version.run_id, "previews")]
    assert any(p.endswith(".png") for p in previews) and any(p.endswith(".mp4") for p in previews)
    assert not any(Path(a.path).suffix == ".pt" for a in client.list_artifacts(version.run_id)), \
        "weights must not go through the tracking server"
    assert not any("SECRET" in k.upper() or "ACCESS_KEY" in k.upper() for k in run.data.params)


def test_materialization_metadata_links_everything(trained: Any) -> None:
    result = trained["result"]
    for asset, weights in (("video_vae", "vae"), ("base_lpm", "base"), ("online_lpm", "online")):
        meta = result.asset_materializations_for_node(asset)[0].metadata
        for key in ("mlflow_run", "model", "model_version", f"{weights}_uri", f"{weights}_sha256", "seconds",
                    "dataset_version", "final_loss"):
            assert key in meta, (asset, key)
        assert meta["dataset_version"].value == trained["version"]
    assert "psnr" in result.asset_materializations_for_node("video_vae")[0].metadata
    online = result.asset_materializations_for_node("online_lpm")[0].metadata
    stages = [m.step for m in _client(trained).get_metric_history(online["mlflow_run_id"].value, "ode/ode_loss")]
    assert stages == [1, 2]
    logs = [e.message for e in trained["instance"].all_logs(result.run_id) if e.message]
    assert any(m.startswith("progress step=") for m in logs), "Pipes progress did not reach the Dagster logs"


def test_catalog_links_online_to_teacher_to_vae(trained: Any) -> None:
    from infra.catalog import Catalog, models as m

    client = _client(trained)
    versions = {name: client.get_model_version_by_alias(name, CHALLENGER).version
                for name in ("lpm-vae", "lpm-base", "lpm-online")}
    with Catalog(trained["catalog_url"]).session(write=False) as s:
        rows = {(r.name, r.version): r for r in s.query(m.ModelVersion)}
        online, base, vae = (rows[(n, versions[n])] for n in ("lpm-online", "lpm-base", "lpm-vae"))
        assert online.parent_id == base.id and base.parent_id == vae.id and vae.parent_id is None
        assert online.kind == "online" and online.artifact_uri.startswith("s3://lpm-models/online/")
        assert online.meta["source"].endswith("/model") and online.meta["descriptor"]["kind"] == "online"
        assert online.dagster_run_id == trained["result"].run_id and len(online.sha256) == 64
