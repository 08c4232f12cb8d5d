"""Detached processes: own session, PID records, group stop, SIGKILL fallback (real processes)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from infra.local.process import (
    PidFiles,
    group_alive,
    pid_alive,
    record_alive,
    spawn,
    tail,
    terminate,
)

HAS_PROC = Path("/proc/self/stat").exists()


def _spawn_sh(tmp_path: Path, script: str, name: str = "svc"):
    return spawn(name, ["/bin/sh", "-c", script], dict(os.environ), tmp_path / f"{name}.log",
                 cwd=tmp_path, url="http://127.0.0.1:0")


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_spawned_process_leads_its_own_group_and_stops_with_its_children(tmp_path: Path) -> None:
    record = _spawn_sh(tmp_path, "sleep 60 & echo started; wait")
    assert _wait_for(lambda: "started" in tail(Path(record.log_path)))
    assert record_alive(record)
    assert os.getpgid(record.pid) == record.pid != os.getpgid(0)
    assert os.getsid(record.pid) == record.pid
    killed = terminate(record, timeout=5)
    assert killed is False  # SIGTERM was enough
    assert not pid_alive(record.pid) and not group_alive(record.pgid)


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    record = _spawn_sh(tmp_path, "trap '' TERM; echo armed; while :; do sleep 0.1; done")
    assert _wait_for(lambda: "armed" in tail(Path(record.log_path)))
    assert terminate(record, timeout=0.5) is True
    assert not group_alive(record.pgid)


def test_terminate_reports_nothing_for_an_exited_process(tmp_path: Path) -> None:
    record = _spawn_sh(tmp_path, "exit 0")
    assert _wait_for(lambda: not pid_alive(record.pid))
    assert terminate(record, timeout=1) is False


@pytest.mark.skipif(not HAS_PROC, reason="start times come from /proc")
def test_a_recycled_pid_is_not_taken_for_the_service(tmp_path: Path) -> None:
    record = _spawn_sh(tmp_path, "sleep 60")
    try:
        impostor = replace(record, start_ticks=record.start_ticks - 1)
        assert record_alive(record) and not record_alive(impostor)
        assert terminate(impostor, timeout=1) is False  # must not signal a stranger
        assert record_alive(record)
    finally:
        terminate(record, timeout=5)


@pytest.mark.skipif(not HAS_PROC, reason="reads the signal mask from /proc")
def test_ignored_sigint_is_not_inherited(tmp_path: Path) -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        record = _spawn_sh(tmp_path, "sleep 60")
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        status = Path(f"/proc/{record.pid}/status").read_text()
        ignored = int(next(l for l in status.splitlines() if l.startswith("SigIgn:")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGINT - 1))
    finally:
        terminate(record, timeout=5)


def test_pid_files_round_trip_and_hold_the_bare_pid(tmp_path: Path) -> None:
    record = _spawn_sh(tmp_path, "sleep 60")
    files = PidFiles(tmp_path / "run")
    try:
        files.write(record)
        assert files.read("svc") == record
        assert (tmp_path / "run" / "svc.pid").read_text().strip() == str(record.pid)
    finally:
        terminate(record, timeout=5)
    files.remove("svc")
    assert files.read("svc") is None and not (tmp_path / "run" / "svc.pid").exists()


def test_a_corrupt_pid_record_is_reported(tmp_path: Path) -> None:
    (tmp_path / "svc.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="unreadable pid record"):
        PidFiles(tmp_path).read("svc")


def test_logs_rotate_and_tail(tmp_path: Path) -> None:
    first = _spawn_sh(tmp_path, "echo one; echo two; echo three")
    assert _wait_for(lambda: not pid_alive(first.pid))
    assert tail(Path(first.log_path), 2) == "two\nthree\n"
    second = _spawn_sh(tmp_path, "echo four")
    assert _wait_for(lambda: not pid_alive(second.pid))
    assert (tmp_path / "svc.log.1").read_text() == "one\ntwo\nthree\n"
    assert tail(Path(second.log_path)) == "four\n"
    assert tail(tmp_path / "missing.log") == ""
