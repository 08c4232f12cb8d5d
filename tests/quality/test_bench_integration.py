"""LPM-Bench against the real object store and MLflow: registered (untrained, tiny at 64 px) Base and Online
LPMs resolved from the registry, weights fetched and verified, leakage checked against their dataset version,
the ``lpm_bench`` asset materialized; then the MLflow runs, the catalog rows and the comparison are checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import torch

from lpm_models.data.dataset.manifest import Manifest
from lpm_models.descriptor import ModelDescriptor
from quality.bench.cases import CaseSet
from quality.bench.compare import CASE_TABLE, TAGS, compare_mlflow_runs, find_bench_run
from tests.quality.bench_factory import SPEC, bench_cases  # noqa: F401  (session fixture)

pytestmark = pytest.mark.integration
DATASET = "ds-bench-test-1"


def _write_models(directory: Path) -> dict[str, Path]:
    from lpm_models.base.checkpoint import CONSOLIDATED_FORMAT, config_to_dict
    from lpm_models.base.model import BaseLPM
    from lpm_models.configs import get_preset
    from lpm_models.online.config import online_preset
    from lpm_models.online.model import OnlineLPM, save_online
    from lpm_models.vae.model import VideoVAE

    torch.manual_seed(0)
    cfg = get_preset("tiny", height=64, width=64)
    base, vae = BaseLPM(cfg).eval(), VideoVAE(cfg.vae).eval()
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"base": directory / "base.pt", "vae": directory / "vae.pt", "online": directory / "online.pt"}
    torch.save({"format": CONSOLIDATED_FORMAT, "config": config_to_dict(cfg), "train": {}, "step": 0,
                "state_dict": base.state_dict(), "ema_state_dict": None, "ema_updates": 0, "extra": {}}, paths["base"])
    torch.save({"state_dict": vae.state_dict()}, paths["vae"])
    save_online(OnlineLPM.from_base(base, online_preset("tiny")).eval(), paths["online"])
    return paths


def _register(tracking_uri: str, store: Any, paths: dict[str, Path]) -> dict[str, str]:
    """Upload the weights, register a new lpm-base and lpm-online version (the online one distilled from that base)
    on dataset DATASET, both @challenger; returns their version numbers (the session's MLflow server is shared with
    other tests, so they need not be 1)."""
    from mlflow.tracking import MlflowClient

    from orchestration.registry import register_model, version_tags

    refs = {k: store.upload(p, f"s3://lpm-models/bench-test/{p.name}").to_dict() for k, p in paths.items()}
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name("lpm") or client.get_experiment(client.create_experiment("lpm"))
    versions: dict[str, str] = {}
    for kind in ("base", "online"):
        teacher = f"lpm-base/{versions['base']}" if kind == "online" else None
        descriptor = ModelDescriptor.from_dict({
            "format": "lpm-model/1", "kind": kind, "preset": "tiny",
            "files": {k: refs[k] for k in (kind, "vae")}, "lineage": {"dataset_version": DATASET}})
        run = client.create_run(exp.experiment_id, tags={"lpm.stage": kind})
        versions[kind] = register_model(client, f"lpm-{kind}", run.info.run_id, descriptor,
                                        version_tags(descriptor, "dagster-test", teacher=teacher)).version
        client.set_terminated(run.info.run_id)
    return versions


def _upload_dataset(store: Any, tmp: Path) -> None:
    manifest = Manifest(version=DATASET, content_sha256="0" * 64, created_at="", shards=[], profile={},
                        clips=[{"clip_id": "c0", "identity": "ident-0000", "video_id": "synth-0000-0000"}],
                        sources={"synth-0000-0000": "a" * 64})
    store.upload(manifest.save(tmp), f"s3://lpm-data/datasets/{DATASET}/manifest.json")


@pytest.fixture(scope="module")
def benched(lpm_stack: Any, bench_cases: CaseSet, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
            ) -> dict[str, Any]:
    from orchestration.assets.bench import lpm_bench
    from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource
    from serving.store import ObjectStore

    lpm_stack.require("objectstore", "mlflow")
    tmp = tmp_path_factory.mktemp("bench-integration")
    spec = tmp / "test-small.yaml"
    spec.write_text(SPEC)  # same text, same digest: the session's built cases are reused from this cache
    with lpm_stack.activated() as env, pytest.MonkeyPatch.context() as mp:
        mp.setenv("LPM_BENCH_CACHE", str(bench_cases.root.parent.parent))
        store = ObjectStore.from_env()
        versions = _register(env["MLFLOW_TRACKING_URI"], store, _write_models(tmp / "models"))
        _upload_dataset(store, tmp)
        catalog_url = f"sqlite:///{tmp / 'catalog.db'}"
        resources = {"mlflow": MlflowResource(tracking_uri=env["MLFLOW_TRACKING_URI"]),
                     "object_store": ObjectStoreResource(endpoint=env["LPM_S3_ENDPOINT"],
                                                         access_key=env["LPM_S3_ACCESS_KEY"],
                                                         secret_key=env["LPM_S3_SECRET_KEY"]),
                     "catalog": CatalogResource(url=catalog_url)}
        first = {"cases": str(spec), "subsets": ["speaking", "listening"], "base_steps": 1, "videos": 1}
        again = first | {"baselines": False, "limit": 1}
        results = [dg.materialize([lpm_bench], resources=resources,
                                  run_config={"ops": {"lpm_bench": {"config": config}}})
                   for config in (first, again)]
    metadata = [r.asset_materializations_for_node("lpm_bench")[0].metadata for r in results]
    return {"tracking_uri": env["MLFLOW_TRACKING_URI"], "catalog_url": catalog_url, "versions": versions,
            "meta": [{k: v.value for k, v in m.items()} for m in metadata]}


def test_materialization_metadata_names_version_run_scores_and_table(benched: dict[str, Any]) -> None:
    meta, online, base = benched["meta"][0], benched["versions"]["online"], benched["versions"]["base"]
    assert meta["model_version"] == online and meta["model"] == f"lpm-online/{online}" and meta["n_cases"] == 2
    assert meta["mlflow_url"].endswith(meta["mlflow_run_id"])
    for dim in ("sync", "identity", "motion", "visual", "overall"):
        assert 0.0 <= meta[f"score_{dim}"] <= 1.0
    assert "| ground truth | 2 |" in meta["table"] and f"| lpm-online/{online} | 2 |" in meta["table"]
    assert meta["leakage"][DATASET]["ok"] is True and meta["base_model"] == f"lpm-base/{base}"
    second = benched["meta"][1]
    assert second["base_reused"] is True and second["base_mlflow_run_id"] == meta["base_mlflow_run_id"]


def test_mlflow_runs_hold_tags_metrics_case_table_and_videos(benched: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=benched["tracking_uri"])
    meta, online = benched["meta"][0], benched["versions"]["online"]
    run = client.get_run(meta["mlflow_run_id"])
    tags = run.data.tags
    assert tags[TAGS["model_name"]] == "lpm-online" and tags[TAGS["model_version"]] == online
    assert tags[TAGS["system"]] == "online" and tags[TAGS["cases"]] == "test-small"
    assert tags["dagster.asset"] == "lpm_bench" and "dagster.run_id" in tags
    assert {"all/overall", "speaking/sync", "listening/motion", "mean_latency_rtf"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "bench")}
    assert CASE_TABLE in artifacts
    assert len(client.list_artifacts(run.info.run_id, "videos")) == 1
    table = json.loads(Path(client.download_artifacts(run.info.run_id, CASE_TABLE)).read_text())
    assert len(table["data"]) == 2 and "overall" in table["columns"]
    parent = client.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags[TAGS["role"]] == "invocation" and "ground_truth/all/overall" in parent.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "bench")} >= {
        "bench/summary.txt", "bench/scores.png", "bench/leakage.json", "bench/case_set.json"}
    assert find_bench_run("lpm-online", online, benched["tracking_uri"], cases="test-small") is not None


def test_comparison_of_two_bench_runs(benched: dict[str, Any]) -> None:
    first, second = (m["mlflow_run_id"] for m in benched["meta"])
    cmp = compare_mlflow_runs(second, first, benched["tracking_uri"])
    assert cmp.deltas["overall"].n_cases == 1 and not cmp.regressed  # the same untrained model, one shared case
    assert f"lpm-online/{benched['versions']['online']}" in cmp.markdown()


def test_catalog_rows_per_system_and_case(benched: dict[str, Any]) -> None:
    from infra.catalog import Catalog
    from infra.catalog.bench import bench_results, latest_bench_run
    from infra.catalog.models import BenchRun
    from infra.catalog.releases import model_version_id

    with Catalog(benched["catalog_url"]) as catalog:
        online = model_version_id(catalog, "lpm-online", benched["versions"]["online"])
        base = model_version_id(catalog, "lpm-base", benched["versions"]["base"])
        assert online is not None and base is not None
        with catalog.session(write=False) as s:
            runs = s.query(BenchRun).order_by(BenchRun.id).all()
            systems = [(r.system, r.model_version_id, r.n_cases) for r in runs]
        assert systems[:4] == [("ground_truth", None, 2), ("still", None, 2), ("base", base, 2), ("online", online, 2)]
        assert systems[4:] == [("online", online, 1)]
        first_online = runs[3]
        assert first_online.mlflow_run_id == benched["meta"][0]["mlflow_run_id"]
        assert first_online.id == benched["meta"][0]["catalog_bench_run_id"]
        assert latest_bench_run(catalog, online, "test-small").id == runs[4].id
        results = bench_results(catalog, first_online.id)
        assert {r.subset for r in results} == {"speaking", "listening"} and all("overall" in r.scores for r in results)


def test_triton_endpoint_is_a_system_with_latency(benched: dict[str, Any], lpm_stack: Any,
                                                  bench_cases: CaseSet,  # noqa: F811
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tritonclient.grpc as grpcclient

    from orchestration.bench import resolve_model_uri
    from orchestration.cli import main as lpm
    from serving.repository import build_model

    stack = lpm_stack.require("objectstore", "mlflow", "triton")
    name = "lpm-bench-it"
    spec = tmp_path / "test-small.yaml"
    spec.write_text(SPEC)
    with stack.activated() as env:
        online = resolve_model_uri(env["MLFLOW_TRACKING_URI"], f"models:/lpm-online/{benched['versions']['online']}")
        build_model(stack.settings.triton_repository, online.descriptor, registered_model="lpm-online",
                    version=int(benched["versions"]["online"]),
                    run_id=online.ref.mlflow_run_id or "run", triton_model=name)
        client = grpcclient.InferenceServerClient(stack.settings.triton_grpc_url)
        client.load_model(name)
        try:
            rows = tmp_path / "rows.json"
            code = lpm(["bench", "run", "--triton", f"grpc://{stack.settings.triton_grpc_url}", "--triton-model", name,
                        "--cases", str(spec), "--cache-dir", str(bench_cases.root.parent.parent),
                        "--subset", "speaking", "--no-record", "--json", str(rows),
                        # --no-record still resolves models through MLflow (it only logs nothing)
                        "--model", f"models:/lpm-online/{benched['versions']['online']}"])
        finally:
            client.unload_model(name)
    assert code == 0 and f"Triton {name}" in capsys.readouterr().out
    by_system = {r["system"]: r for r in json.loads(rows.read_text())["rows"]}
    assert set(by_system) == {"online", "triton"}
    row = by_system["triton"]
    assert row["system"] == "triton" and row["latency.ttff_s"] > 0 and row["latency.chunk_p99_s"] > 0
    assert 0.0 <= row["overall"] <= 1.0
