"""The Kubernetes manifest for multi-node Base LPM training matches the code it runs."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from lpm_models.base.checkpoint import dataclass_from_dict
from lpm_models.base.train import RunConfig
from lpm_models.configs import PRESETS
from orchestration.assets.training import BASE_TRAIN_MODULE, BaseLPMConfig, base_train_args
from orchestration.pipes_reporter import REPORTER_SPEC
from orchestration.resources.launcher import CHILD_S3_ENV

MANIFEST = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "base-lpm-training.yaml"


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(MANIFEST.read_text())}


def _pod_container(docs: dict) -> dict[str, Any]:
    return docs[("Pod", "lpm-base-train-0")]["spec"]["containers"][0]


def _worker(docs: dict) -> dict[str, Any]:
    return docs[("Job", "lpm-base-train-workers")]


def _train_args(args: list[str]) -> list[str]:
    """The arguments after ``-m lpm_models.base.train``."""
    assert "-m" in args, args
    at = args.index("-m")
    assert args[at + 1] == BASE_TRAIN_MODULE
    return args[at + 2:]


def _flags(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def _values(args: list[str]) -> dict[str, str]:
    return {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}


def _cli_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        importlib.import_module(BASE_TRAIN_MODULE).main(["--help"])
    return capsys.readouterr().out


def test_node0_runs_the_launcher_command_under_torchrun(docs, capsys: pytest.CaptureFixture[str]) -> None:
    container = _pod_container(docs)
    assert container["command"] == ["torchrun"]
    assert importlib.util.find_spec(BASE_TRAIN_MODULE) is not None
    args = _train_args(container["args"])
    local = base_train_args(BaseLPMConfig(), Path("run.json"), "s3://lpm-data/datasets/v", Path("out"), Path("vae.pt"))
    # same flags as the local launcher; the step budget comes from the run config on the cluster
    assert _flags(args) == (_flags(local) - {"--max-steps"}) | {"--reporter"}
    help_text = _cli_help(capsys)
    assert all(flag in help_text for flag in _flags(args)), "a flag the CLI does not accept"
    values = _values(args)
    assert values["--reporter"] == REPORTER_SPEC
    module, _, factory = REPORTER_SPEC.partition(":")
    assert callable(getattr(importlib.import_module(module), factory))
    assert "--node-rank=0" in container["args"], "the Pipes pod must be node 0 (global rank 0 reports)"


def test_workers_run_the_same_command_on_nodes_1_to_n(docs) -> None:
    job = _worker(docs)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c"]
    words = shlex.split(container["args"][0])
    assert words[:2] == ["exec", "torchrun"]
    assert "--node-rank=$((JOB_COMPLETION_INDEX + 1))" in words
    pod_args = _train_args(_pod_container(docs)["args"])
    worker_args = _train_args(words[1:])
    normalise = lambda a: re.sub(r"\$\((\w+)\)", r"$\1", a)  # noqa: E731 - k8s $(VAR) vs shell $VAR
    assert [normalise(a) for a in pod_args] == worker_args
    assert container["image"] == _pod_container(docs)["image"]
    assert job["spec"]["completionMode"] == "Indexed"


def test_environment_names_match_the_code_and_secrets_stay_in_secrets(docs) -> None:
    containers = [_pod_container(docs), _worker(docs)["spec"]["template"]["spec"]["containers"][0]]
    envs = [{e["name"]: e for e in c["env"]} for c in containers]
    assert envs[0] == envs[1]
    env = envs[0]
    assert set(CHILD_S3_ENV) <= set(env)
    for name in ("LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"] == "lpm-object-store"
    run_vars = docs[("ConfigMap", "lpm-base-train-run")]["data"]
    referenced = set(re.findall(r"\$\((\w+)\)", " ".join(containers[0]["args"])))
    assert referenced <= set(env) | set(run_vars), referenced - set(env) - set(run_vars)
    for container in containers:
        assert container["envFrom"] == [{"configMapRef": {"name": "lpm-base-train-run"}}]


def test_run_config_is_a_valid_multi_node_fsdp_config(docs) -> None:
    data = yaml.safe_load(docs[("ConfigMap", "lpm-base-train-config")]["data"]["run.yaml"])
    run = dataclass_from_dict(RunConfig, data)  # unknown fields raise
    env = {e["name"]: e.get("value") for e in _pod_container(docs)["env"]}
    assert run.preset in PRESETS and run.strategy.kind == "fsdp2" and run.strategy.accelerator == "gpu"
    assert run.strategy.num_nodes == int(env["LPM_NNODES"]) and run.strategy.ranks == int(env["LPM_GPUS_PER_NODE"])
    assert _worker(docs)["spec"]["completions"] == run.strategy.num_nodes - 1
    mount = next(m for m in _pod_container(docs)["volumeMounts"] if m["name"] == "run-config")
    assert _values(_train_args(_pod_container(docs)["args"]))["--config"].startswith(mount["mountPath"] + "/")
    gpus = _pod_container(docs)["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == run.strategy.ranks


def test_rendezvous_service_selects_node0(docs) -> None:
    service = docs[("Service", "lpm-base-train")]
    pod = docs[("Pod", "lpm-base-train-0")]
    assert service["spec"]["clusterIP"] == "None"
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
    assert pod["spec"]["hostname"] == "lpm-base-train-0" and pod["spec"]["subdomain"] == "lpm-base-train"
