"""Dagster definitions load and wire the foundation assets, sensor and jobs."""

from __future__ import annotations

import dagster as dg

from orchestration.definitions import defs


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"synthetic_corpus", "raw_videos"} <= keys


def test_resources_bound_to_environment() -> None:
    resources = defs.resources
    assert set(resources) >= {"object_store", "mlflow", "catalog", "triton"}
    # credentials must come from the environment, never literal values in code
    assert isinstance(resources["object_store"].secret_key, dg.EnvVar)
    assert isinstance(resources["catalog"].url, dg.EnvVar)


def test_sensor_and_jobs_registered() -> None:
    assert defs.resolve_sensor_def("raw_video_sensor").job_name == "curate_video"
    job = defs.resolve_job_def("curate_video")
    assert job.partitions_def is not None


def test_serving_job_runs_the_blocking_checks_before_the_promotion() -> None:
    job = defs.resolve_job_def("deploy_and_promote")
    ops = {node.name for node in job.graph.node_defs}
    assert {"triton_model_repository", "triton_deployment", "model_promotion", "triton_deployment_smoke_stream",
            "triton_deployment_latency_slo"} <= ops
    graph = defs.resolve_asset_graph()
    for name in ("smoke_stream", "latency_slo"):
        assert graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("triton_deployment"), name)).blocking
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "serving"} == {
        "triton_model_repository", "triton_deployment", "model_promotion"}
