"""The real embedded stack, started through infra.local.services on free ports in a tmp home."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from minio import Minio
from minio.error import S3Error

from infra.local.objectstore import minio_client
from infra.local.process import pid_alive
from infra.local.service import http_post_json
from infra.local.services import SERVICES
from tests.infra.stack import SessionStack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MIB = 1024 * 1024
ECHO_MODEL_PY = b'''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = pb_utils.Tensor("OUT", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
'''
ECHO_CONFIG = {
    "name": "lpm_echo",
    "backend": "python",
    "max_batch_size": 0,
    "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]}],
    "instance_group": [{"kind": "KIND_CPU", "count": 1}],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SessionStack:
    with running_stack(tmp_path_factory, services=list(SERVICES)) as session:
        yield session


def test_every_service_is_up_healthy_and_on_loopback(stack: SessionStack) -> None:
    statuses = stack.stack.status()
    assert [s.name for s in statuses] == list(SERVICES)
    for status in statuses:
        assert status.healthy, f"{status.name}: {status.detail}"
        assert status.pid is not None and pid_alive(status.pid)
        assert status.url.startswith("http://127.0.0.1:")
        assert (stack.settings.run_dir / f"{status.name}.pid").read_text().strip() == str(status.pid)
        assert status.log_path.is_file() and status.log_path.parent == stack.settings.log_dir


def test_object_store_round_trip_with_multipart(stack: SessionStack, tmp_path: Path) -> None:
    client = minio_client(stack.settings)
    assert {b.name for b in client.list_buckets()} >= {"lpm-raw", "lpm-data", "lpm-models", "lpm-mlflow"}
    client.put_object("lpm-raw", "small/hello.txt", io.BytesIO(b"hello"), 5,
                      metadata={"x-amz-meta-origin": "test"})
    assert client.get_object("lpm-raw", "small/hello.txt").read() == b"hello"

    payload = np.random.default_rng(0).integers(0, 256, 50 * MIB, dtype=np.uint8).tobytes()
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    client.fput_object("lpm-data", "big/big.bin", str(source), part_size=8 * MIB)
    stat = client.stat_object("lpm-data", "big/big.bin")
    assert stat.size == 50 * MIB
    assert stat.etag.endswith("-7"), f"expected a 7-part multipart ETag, got {stat.etag}"
    target = tmp_path / "back.bin"
    client.fget_object("lpm-data", "big/big.bin", str(target))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()


def test_object_store_rejects_a_wrong_secret(stack: SessionStack) -> None:
    intruder = Minio(stack.settings.s3_address, access_key=stack.settings.access_key,
                     secret_key=stack.settings.secret_key + "x", secure=False, region="us-east-1")
    with pytest.raises(S3Error) as caught:
        list(intruder.list_objects("lpm-raw"))
    assert caught.value.code in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}


def test_mlflow_artifact_lands_in_the_object_store(stack: SessionStack, tmp_path: Path) -> None:
    import mlflow

    with stack.activated():
        mlflow.set_tracking_uri(stack.settings.mlflow_uri)
        mlflow.set_experiment("infra-test")
        with mlflow.start_run() as run:
            mlflow.log_param("answer", 42)
            mlflow.log_text("artifact body", "notes/hello.txt")
        back = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="notes/hello.txt", dst_path=str(tmp_path))
    assert Path(back).read_text() == "artifact body"
    keys = [o.object_name for o in minio_client(stack.settings).list_objects(
        "lpm-mlflow", recursive=True)]
    assert any(run.info.run_id in k and k.endswith("notes/hello.txt") for k in keys), keys


def test_triton_is_ready_and_serves_a_python_model(stack: SessionStack) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(stack.settings.triton_http_url)
    grpc = grpcclient.InferenceServerClient(stack.settings.triton_grpc_url)
    assert http.is_server_ready() and http.is_server_live()
    assert grpc.is_server_ready()
    assert http.get_model_repository_index() == []  # explicit mode, empty repository

    http.load_model("lpm_echo", config=json.dumps(ECHO_CONFIG),
                    files={"file:1/model.py": ECHO_MODEL_PY})
    try:
        x = np.arange(4, dtype=np.float32)
        inp = grpcclient.InferInput("IN", [4], "FP32")
        inp.set_data_from_numpy(x)
        result = grpc.infer("lpm_echo", [inp])
        np.testing.assert_array_equal(result.as_numpy("OUT"), x * 2)
    finally:
        http.unload_model("lpm_echo")


def test_dagster_answers_graphql_with_the_stack_environment(stack: SessionStack) -> None:
    query = "{ version repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
    status, body = http_post_json(f"{stack.settings.dagster_url}/graphql", {"query": query})
    assert status == 200 and body["data"]["version"]
    assert body["data"]["repositoriesOrError"]["nodes"], body
    config = (stack.settings.dagster_home / "dagster.yaml").read_text()
    assert "enabled: false" in config and "sqlite" in config
    environ = Path(f"/proc/{stack.stack.status(['dagster'])[0].pid}/environ")
    if environ.exists():
        env = dict(item.split("=", 1) for item in environ.read_text().split("\0") if "=" in item)
        assert env["MLFLOW_TRACKING_URI"] == stack.settings.mlflow_uri
        assert env["LPM_S3_ENDPOINT"] == stack.settings.s3_endpoint
        assert env["DAGSTER_HOME"] == str(stack.settings.dagster_home)


def test_cli_status_reads_the_same_stack(stack: SessionStack) -> None:
    env = {**os.environ, **stack.client_env()}
    command = "import sys; from orchestration.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", command, "services", "status"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in SERVICES:
        assert name in done.stdout


def test_up_again_is_a_no_op(stack: SessionStack) -> None:
    before = {s.name: s.pid for s in stack.stack.status()}
    again = stack.stack.up()
    assert all(s.already_running and s.healthy for s in again)
    assert {s.name: s.pid for s in again} == before


def test_object_store_keeps_objects_across_a_restart(stack: SessionStack) -> None:
    client = minio_client(stack.settings)
    client.put_object("lpm-models", "keep/me.txt", io.BytesIO(b"kept"), 4)
    old_pid = stack.stack.status(["objectstore"])[0].pid
    assert stack.stack.down(["objectstore"]) == ["objectstore"]
    assert not pid_alive(old_pid)
    (restarted,) = stack.stack.up(["objectstore"])
    assert not restarted.already_running and restarted.pid != old_pid
    assert client.get_object("lpm-models", "keep/me.txt").read() == b"kept"


def _group_members(pgid: int) -> list[int]:
    """PIDs of the process group (workers, code servers, backend stubs), via /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def test_down_stops_every_process(stack: SessionStack) -> None:
    pids = {s.name: s.pid for s in stack.stack.status()}
    members = {name: _group_members(pid) for name, pid in pids.items()} if Path("/proc").is_dir() else {}
    assert len(members.get("mlflow", [0, 0])) > 1  # the server and its uvicorn worker
    assert sorted(stack.stack.down()) == sorted(SERVICES)
    for name, pid in pids.items():
        assert not pid_alive(pid), f"{name} (pid {pid}) still alive"
        assert not any(pid_alive(m) for m in members.get(name, [])), f"{name} left children"
        assert not (stack.settings.run_dir / f"{name}.pid").exists()
    assert not any(s.healthy or s.pid for s in stack.stack.status())
    assert stack.stack.down() == []
