"""Detached service processes: spawn in their own session, record, check and stop by PID.

Each service runs as the leader of a new session (and so of a new process group), which
makes the whole tree it forks (workers, code servers, backend stubs) reachable with one
``killpg``. A JSON record next to a plain ``NAME.pid`` file identifies the process by PID
and, where ``/proc`` exists, by its kernel start time so a recycled PID is never mistaken
for the service.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessRecord:
    """What is known about a started service process (persisted in the run directory)."""

    name: str
    pid: int
    pgid: int
    start_ticks: int | None
    started_at: float
    log_path: str
    url: str


def _start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks (Linux), or None where unknown."""
    stat = _PROC / str(pid) / "stat"
    try:
        text = stat.read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; starttime is field 22 (index 19 here).
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    stat = _PROC / str(pid) / "stat"
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def pid_alive(pid: int) -> bool:
    """True if a (non-zombie) process with this PID exists."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def record_alive(record: ProcessRecord) -> bool:
    """True if the recorded process is still the one we started."""
    if not pid_alive(record.pid):
        return False
    ticks = _start_ticks(record.pid)
    return record.start_ticks is None or ticks is None or ticks == record.start_ticks


def group_alive(pgid: int) -> bool:
    """True if a live (non-zombie) member of the process group is left."""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _PROC.is_dir():
        return _group_has_live_member(pgid)
    return True


def _group_has_live_member(pgid: int) -> bool:
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _reset_signals() -> None:
    """Run in the child before exec: undo SIGINT/SIGTERM ignores inherited from a shell."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``NAME.log.1``."""
    if path.exists() and path.stat().st_size > 0:
        path.replace(path.with_name(path.name + ".1"))


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path,
    url: str,
) -> ProcessRecord:
    """Start ``argv`` detached in its own session, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_log(log_path)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by the project, no shell
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_reset_signals,  # noqa: PLW1509 - only resets signal dispositions
        )
    log.debug("started %s pid=%d: %s", name, proc.pid, argv[0])
    return ProcessRecord(
        name=name,
        pid=proc.pid,
        pgid=proc.pid,
        start_ticks=_start_ticks(proc.pid),
        started_at=time.time(),
        log_path=str(log_path),
        url=url,
    )


def request_stop(record: ProcessRecord) -> bool:
    """Send SIGTERM to the service's process group; False if it is already gone."""
    if pid_alive(record.pid) and not record_alive(record):
        return False  # the PID was recycled, so the old group is long gone
    if not group_alive(record.pgid):
        return False
    _signal_group(record.pgid, signal.SIGTERM)
    return True


def terminate(record: ProcessRecord, timeout: float = 20.0, signalled: bool = False) -> bool:
    """Stop the service's process group: SIGTERM, then SIGKILL after ``timeout`` s.

    ``signalled`` skips the SIGTERM when ``request_stop`` already sent it (a second
    SIGTERM makes some servers abandon their clean shutdown). Returns True if the group
    had to be killed.
    """
    if not signalled and not request_stop(record):
        return False
    if _wait_group_gone(record.pgid, timeout):
        _reap(record.pid)
        return False
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", record.name,
                record.pid, timeout)
    _signal_group(record.pgid, signal.SIGKILL)
    if not _wait_group_gone(record.pgid, 10.0):
        raise RuntimeError(
            f"{record.name}: process group {record.pgid} survived SIGKILL; "
            f"inspect it with `ps -g {record.pgid}`"
        )
    _reap(record.pid)
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.1)
    return not group_alive(pgid)


class PidFiles:
    """``NAME.pid`` (the bare PID) and ``NAME.json`` (the full record) in one directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def write(self, record: ProcessRecord) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{record.name}.json").write_text(json.dumps(asdict(record), indent=2))
        (self.run_dir / f"{record.name}.pid").write_text(f"{record.pid}\n")

    def read(self, name: str) -> ProcessRecord | None:
        path = self.run_dir / f"{name}.json"
        if not path.exists():
            return None
        try:
            return ProcessRecord(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise RuntimeError(
                f"unreadable pid record {path}: {exc}; stop the service by hand and delete it"
            ) from exc

    def remove(self, name: str) -> None:
        for suffix in (".json", ".pid"):
            (self.run_dir / f"{name}{suffix}").unlink(missing_ok=True)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    if not path.exists():
        return ""
    with open(path, "r", errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))
