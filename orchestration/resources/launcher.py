"""Training launcher resource: runs a training CLI out of process through Dagster Pipes.

Locally each launch is a subprocess of the run (``dg.PipesSubprocessClient``): the child is
``python -m <module> ... --reporter orchestration.pipes_reporter:make``, so its global rank 0
streams logs, progress events and the final result back to the asset. Multi-rank Base LPM
training on CPU is started by Lightning inside that child (it re-executes the command per
rank; only rank 0 reports). In production the same command runs in Kubernetes pods launched
by dagster-k8s's ``PipesK8sClient`` (see ``infra/k8s/base-lpm-training.yaml``).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.pipes_reader import LineSafeMessageReader
from orchestration.pipes_reporter import REPORTER_SPEC, TrainingEvents

log = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu", "auto")
# object store settings the training child reads (lpm_models.base.data); values come from the resource
CHILD_S3_ENV = ("LPM_S3_ENDPOINT", "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY")


@dataclass
class LaunchResult:
    """What one out-of-process training run reported, and how long it took."""

    events: TrainingEvents
    metadata: dict[str, Any] = field(default_factory=dict)  # materialization metadata the child reported
    seconds: float = 0.0


def child_env(threads: int, device: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a training child: thread counts, device visibility, unbuffered output, ``extra``."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: the library default), got {threads}")
    env = {"PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the torch build has CUDA; hide GPUs so every library picks the CPU
    env.update(extra or {})
    return env


def training_command(python: str, module: str, args: Sequence[str], reporter: str = REPORTER_SPEC) -> list[str]:
    """``python -m module args... --reporter SPEC`` (the reporter flag is appended once)."""
    if "--reporter" in args:
        raise ValueError("pass the reporter through the launcher, not in args")
    return [python, "-m", module, *map(str, args), "--reporter", reporter]


class TrainingLauncher(dg.ConfigurableResource):
    """Runs training commands out of process with Dagster Pipes (locally: a subprocess per launch).

    ``python``: interpreter of the child ("" = the one running Dagster); ``workdir``: where
    run directories are created ("" = the system temp dir); ``keep_workdir`` keeps them
    after the asset finished (debugging).
    """

    python: str = ""
    workdir: str = ""
    keep_workdir: bool = False
    termination_timeout_s: float = 30.0

    @contextmanager
    def run_dir(self, name: str) -> Iterator[Path]:
        """A fresh directory for one training run's outputs (removed afterwards unless ``keep_workdir``)."""
        root = Path(self.workdir) if self.workdir else None
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"lpm-{name}-", dir=root))
        try:
            yield path
        finally:
            if self.keep_workdir:
                log.info("kept training directory %s", path)
            else:
                shutil.rmtree(path, ignore_errors=True)

    def launch(self, context: dg.AssetExecutionContext, module: str, args: Sequence[str], *, threads: int = 0,
               device: str = "cpu", env: Mapping[str, str] | None = None,
               extras: Mapping[str, Any] | None = None, cwd: str | None = None) -> LaunchResult:
        """Run ``python -m module args`` under Pipes and return its reported events.

        ``env`` is added to the child's environment only (credentials go here, never into
        ``args``, which are logged). Raises ``DagsterPipesExecutionError`` when the child fails.
        """
        command = training_command(self.python or sys.executable, module, args)
        context.log.info("launching %s", " ".join(command[1:]))
        client = dg.PipesSubprocessClient(forward_termination=True, message_reader=LineSafeMessageReader(),
                                          termination_timeout_seconds=self.termination_timeout_s)
        started = time.perf_counter()
        invocation = client.run(context=context, command=command, env=child_env(threads, device, env),
                                extras=dict(extras or {}), cwd=cwd)
        seconds = time.perf_counter() - started
        events = TrainingEvents.from_messages(invocation.get_custom_messages())
        metadata: dict[str, Any] = {}
        for result in invocation.get_results():
            if isinstance(result, dg.MaterializeResult) and result.metadata:
                metadata.update(result.metadata)
        context.log.info("%s finished in %.1f s (%d events reported)", module, seconds, len(events.events))
        return LaunchResult(events=events, metadata=metadata, seconds=seconds)


def object_store_env(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1") -> dict[str, str]:
    """The child's object store environment (names: :data:`CHILD_S3_ENV` plus the region)."""
    return dict(zip(CHILD_S3_ENV, (endpoint, access_key, secret_key)), LPM_S3_REGION=region)

