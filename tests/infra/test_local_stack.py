"""Stack bookkeeping: dependency order, port conflicts, stale records, start failures."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infra.local.ports import isolated_settings
from infra.local.process import ProcessRecord
from infra.local.services import SERVICES, ServiceStartError, Stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(isolated_settings(tmp_path))


def test_dependencies_are_added_and_ordered(stack: Stack) -> None:
    assert stack.resolve(["mlflow"]) == ["objectstore", "mlflow"]
    assert stack.resolve(["dagster", "objectstore"]) == ["objectstore", "dagster"]
    assert stack.resolve() == list(SERVICES)
    with pytest.raises(ValueError, match="unknown service 'redis'"):
        stack.resolve(["redis"])


def test_a_taken_port_is_reported_before_anything_starts(stack: Stack) -> None:
    with socket.socket() as squatter:
        squatter.bind((stack.settings.host, stack.settings.mlflow_port))
        squatter.listen()
        with pytest.raises(ServiceStartError, match="LPM_MLFLOW_PORT"):
            stack.up(["mlflow"])
    assert not list(stack.settings.run_dir.glob("*.pid"))  # the object store was not launched


def test_status_of_a_stopped_stack(stack: Stack) -> None:
    statuses = stack.status()
    assert [s.name for s in statuses] == list(SERVICES)
    assert not any(s.healthy or s.running or s.pid for s in statuses)
    assert stack.down() == []


def test_a_stale_record_is_shown_and_cleared(stack: Stack) -> None:
    ghost = ProcessRecord(name="triton", pid=2**22 + 7, pgid=2**22 + 7, start_ticks=1,
                          started_at=0.0, log_path=str(stack.settings.log_dir / "triton.log"),
                          url="http://127.0.0.1:1")
    stack.pid_files.write(ghost)
    (status,) = stack.status(["triton"])
    assert not status.running and "stale pid" in status.detail
    assert stack.down(["triton"]) == []
    assert stack.pid_files.read("triton") is None


@pytest.mark.integration
def test_a_service_that_dies_fails_with_its_log_tail(stack: Stack) -> None:
    meta = stack.settings.home / "objects" / "meta.db"
    meta.parent.mkdir(parents=True)
    meta.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(ServiceStartError) as caught:
        stack.up(["objectstore"], timeout=60)
    message = str(caught.value)
    assert "objectstore failed" in message and "objectstore.log" in message
    assert stack.pid_files.read("objectstore") is None  # cleaned up after the failure


@pytest.mark.integration
def test_concurrent_ups_start_one_process(stack: Stack) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: stack.up(["objectstore"], timeout=60), range(2)))
    try:
        (first,), (second,) = results
        assert first.pid == second.pid and first.healthy and second.healthy
        assert sorted([first.already_running, second.already_running]) == [False, True]
    finally:
        assert stack.down() == ["objectstore"]
