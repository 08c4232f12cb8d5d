"""The embedded stack: start, health-check, inspect and stop the local services.

    stack = Stack(StackSettings.from_env())
    stack.up(["objectstore", "mlflow"])   # idempotent; waits until healthy
    stack.status()
    stack.down()

Processes are launched together (their slow start-ups overlap) and then polled until each
answers its health check. PID records and logs live under the settings' state directory,
so any later ``lpm services ...`` call finds them.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.local.dagster_dev import DagsterDev
from infra.local.mlflow_server import MlflowServer
from infra.local.objectstore import ObjectStore
from infra.local.ports import port_free
from infra.local.process import (
    PidFiles,
    ProcessRecord,
    record_alive,
    request_stop,
    spawn,
    tail,
    terminate,
)
from infra.local.service import Probe, Service, ServiceFailed
from infra.local.settings import StackSettings
from infra.local.triton import TritonServer

log = logging.getLogger(__name__)

# Start order; dependencies come first.
SERVICES: dict[str, type[Service]] = {
    cls.name: cls for cls in (ObjectStore, MlflowServer, TritonServer, DagsterDev)
}
POLL_INTERVAL_S = 0.25
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class ServiceStatus:
    """State of one service as seen by ``up`` or ``status``."""

    name: str
    pid: int | None
    url: str
    running: bool
    healthy: bool
    detail: str
    log_path: Path
    startup_s: float | None = None
    already_running: bool = False


class ServiceStartError(RuntimeError):
    """One or more services did not become healthy; the message carries their log tails."""


@dataclass
class _Pending:
    service: Service
    record: ProcessRecord
    started: float
    already_running: bool


class Stack:
    """The local services of one state directory (``settings.home``)."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.pid_files = PidFiles(settings.run_dir)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise ``up``/``down`` of concurrent callers on the same state directory."""
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.run_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def service(self, name: str) -> Service:
        """The service called ``name``."""
        try:
            return SERVICES[name](self.settings)
        except KeyError:
            raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}") from None

    def resolve(self, names: list[str] | tuple[str, ...] | None = None) -> list[str]:
        """Requested services plus their dependencies, in start order (all when empty)."""
        wanted = set(names or SERVICES)
        for name in list(wanted):
            wanted.update(self.service(name).requires)
        return [name for name in SERVICES if name in wanted]

    # --- up --------------------------------------------------------------------------
    def up(self, names: list[str] | None = None, timeout: float = 240.0) -> list[ServiceStatus]:
        """Start the services that are not running and wait until all are healthy.

        Raises ServiceStartError (with each failing service's log tail) if one exits or
        is not healthy within ``timeout`` seconds; failed services started by this call
        are stopped again.
        """
        order = self.resolve(names)
        with self._exclusive():
            return self._up(order, timeout)

    def _up(self, order: list[str], timeout: float) -> list[ServiceStatus]:
        running = {name: self._running_record(name) for name in order}
        for name in order:  # check every port before launching anything
            if running[name] is None:
                self._check_ports_free(self.service(name))
        pending: dict[str, _Pending] = {}
        try:
            for name in order:
                pending[name] = self._launch(self.service(name), running[name])
        except Exception:
            for name, item in pending.items():
                if not item.already_running:
                    self._stop(name)
            raise
        launched = {name for name, item in pending.items() if not item.already_running}
        done, failures = self._await_healthy(pending, time.monotonic() + timeout)
        if failures:
            for name in failures.keys() & launched:  # never stop what was running before
                self._stop(name)
            raise ServiceStartError("\n\n".join(failures.values()))
        return [done[name] for name in order]

    def _running_record(self, name: str) -> ProcessRecord | None:
        """The record of a live process of this service; stale records are removed."""
        record = self.pid_files.read(name)
        if record is not None and not record_alive(record):
            log.info("%s: removing stale pid record (pid %d is gone)", name, record.pid)
            self.pid_files.remove(name)
            return None
        return record

    def _launch(self, service: Service, record: ProcessRecord | None) -> _Pending:
        if record is not None:
            log.debug("%s already running (pid %d)", service.name, record.pid)
            return _Pending(service, record, time.monotonic(), already_running=True)
        service.prepare()
        record = spawn(
            service.name, service.argv(), service.env(), service.log_path,
            cwd=service.settings.home, url=service.url(),
        )
        self.pid_files.write(record)
        log.info("starting %s (pid %d) on %s", service.name, record.pid, service.url())
        return _Pending(service, record, time.monotonic(), already_running=False)

    def _check_ports_free(self, service: Service) -> None:
        for env_name, port in service.ports().items():
            if not port_free(self.settings.host, port):
                raise ServiceStartError(
                    f"{service.name}: port {self.settings.host}:{port} is taken by another "
                    f"process (not started from {self.settings.home}); stop it or choose "
                    f"another port with {env_name}=..."
                )

    def _await_healthy(
        self, pending: dict[str, _Pending], deadline: float
    ) -> tuple[dict[str, ServiceStatus], dict[str, str]]:
        done: dict[str, ServiceStatus] = {}
        failures: dict[str, str] = {}
        while pending:
            for name, item in list(pending.items()):
                outcome = self._check_once(item)
                if outcome is None:
                    continue
                del pending[name]
                if isinstance(outcome, str):
                    failures[name] = outcome
                else:
                    done[name] = outcome
            if pending and time.monotonic() > deadline:
                for name, item in pending.items():
                    failures[name] = self._failure(item, "not healthy before the timeout")
                break
            if pending:
                time.sleep(POLL_INTERVAL_S)
        return done, failures

    def _check_once(self, item: _Pending) -> ServiceStatus | str | None:
        """A status when healthy, a failure message when failed, None to keep waiting."""
        if not record_alive(item.record):
            return self._failure(item, "exited during start-up")
        try:
            probe = item.service.probe()
            if not probe.healthy:
                return None
            item.service.after_healthy()
        except (ServiceFailed, RuntimeError) as exc:
            return self._failure(item, str(exc))
        elapsed = time.monotonic() - item.started
        if not item.already_running:
            log.info("%s healthy after %.1f s", item.service.name, elapsed)
        return self._status(item.service, item.record, probe, None if item.already_running
                            else elapsed, item.already_running)

    def _failure(self, item: _Pending, reason: str) -> str:
        path = item.service.log_path
        return (
            f"{item.service.name} failed: {reason}\n--- last {LOG_TAIL_LINES} lines of "
            f"{path} ---\n{tail(path, LOG_TAIL_LINES).rstrip()}"
        )

    # --- down / status / logs -----------------------------------------------------------
    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop the given (default: all) services by PID; returns the names that were running.

        All are asked to stop at once (SIGTERM to each process group), then each is awaited
        and killed if it outlives its stop timeout.
        """
        wanted = {self.service(n).name for n in (names or SERVICES)}
        with self._exclusive():
            return self._down([n for n in reversed(SERVICES) if n in wanted])

    def _down(self, order: list[str]) -> list[str]:
        records = {n: r for n in order if (r := self.pid_files.read(n)) is not None}
        running = {n for n, r in records.items() if record_alive(r)}
        signalled = {n for n, r in records.items() if request_stop(r)}
        for name, record in records.items():
            if terminate(record, self.service(name).stop_timeout, signalled=name in signalled):
                log.warning("%s had to be killed", name)
            self.pid_files.remove(name)
            if name in running:
                log.info("stopped %s (pid %d)", name, record.pid)
        return [n for n in order if n in running]

    def _stop(self, name: str) -> bool:
        return bool(self._down([name]))  # called with the lock held

    def status(self, names: list[str] | None = None) -> list[ServiceStatus]:
        """Current state of each service: running by PID and answering its health check."""
        statuses = []
        for name in names or list(SERVICES):
            service = self.service(name)
            record = self.pid_files.read(name)
            if record is None or not record_alive(record):
                detail = "stopped" if record is None else f"not running (stale pid {record.pid})"
                statuses.append(self._status(service, None, Probe(False, detail)))
                continue
            try:
                probe = service.probe()
            except ServiceFailed as exc:
                probe = Probe(False, str(exc))
            statuses.append(self._status(service, record, probe))
        return statuses

    def logs(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines of the service's log."""
        return tail(self.service(name).log_path, lines)

    @staticmethod
    def _status(
        service: Service,
        record: ProcessRecord | None,
        probe: Probe,
        startup_s: float | None = None,
        already_running: bool = False,
    ) -> ServiceStatus:
        return ServiceStatus(
            name=service.name,
            pid=record.pid if record else None,
            url=service.url(),
            running=record is not None,
            healthy=probe.healthy,
            detail=probe.detail,
            log_path=service.log_path,
            startup_s=startup_s,
            already_running=already_running,
        )
