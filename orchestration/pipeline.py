"""The main job: materialize the whole lineage on the embedded stack, recorded in the Dagster instance
(so every run, materialization and check is visible in the Dagster UI afterwards)."""

from __future__ import annotations

import logging
import os
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """Outcome of one job (one run, or one run per partition)."""

    job: str
    runs: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_job(name: str, run_config: dict[str, Any] | None = None, partition_key: str | None = None) -> bool:
    """Execute one job of the definitions in this process, recorded in the current Dagster instance."""
    from orchestration.definitions import defs

    result = defs.resolve_job_def(name).execute_in_process(
        run_config=run_config or {}, instance=dg.DagsterInstance.get(), partition_key=partition_key,
        raise_on_error=False, tags={"lpm/main_job": "true"},
    )
    if not result.success:
        log.error("run %s of %s%s failed; see the Dagster UI", result.run_id, name,
                  f" [{partition_key}]" if partition_key else "")
    return result.success


def _timed(report: StepReport, started: float) -> StepReport:
    report.seconds = time.perf_counter() - started
    return report


def run_partitions(job: str, keys: list[str], workers: int) -> StepReport:
    """One run per partition, ``workers`` at a time in separate processes; progress with ETA.

    Workers are spawned, never forked: a fork of this process (Dagster, torch and mediapipe
    threads already running) can corrupt native memory. A worker that dies (a native crash
    in a decoder or face model) breaks only its pool: the partitions it had not finished run
    once more in a fresh pool, and a partition that kills its worker twice is reported failed.
    """
    step, started = StepReport(job, runs=len(keys)), time.perf_counter()
    if workers <= 1:
        outcomes = ((key, run_job(job, partition_key=key)) for key in keys)
        for done, (key, ok) in enumerate(outcomes, 1):
            _progress(job, done, len(keys), started)
            if not ok:
                step.failed.append(key)
        return _timed(step, started)
    pending, done, attempts = list(keys), 0, dict.fromkeys(keys, 0)
    context = multiprocessing.get_context("spawn")
    while pending:
        crashed: list[str] = []
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(run_job, job, None, key): key for key in pending}
            for future in as_completed(futures):
                key = futures[future]
                try:
                    ok = future.result()
                except BrokenProcessPool:
                    crashed.append(key)
                    continue
                done += 1
                _progress(job, done, len(keys), started)
                if not ok:
                    step.failed.append(key)
        for key in crashed:
            attempts[key] += 1
        lost = [k for k in crashed if attempts[k] >= 2]
        if lost:
            log.error("%s: partitions %s crashed their worker twice; see the Dagster UI", job, ", ".join(lost))
            step.failed += lost
            done += len(lost)
        pending = [k for k in crashed if attempts[k] < 2]
        if pending:
            log.warning("%s: a worker process died; re-running %d unfinished partition(s) in a fresh pool",
                        job, len(pending))
    return _timed(step, started)


def _progress(job: str, done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    eta = elapsed / done * (total - done)
    log.info("%s: %d/%d partitions done, %.0f s elapsed, ETA %.0f s", job, done, total, elapsed, eta)


STAGES = ("synthetic_corpus_job", "curate_video", "build_dataset", "train_models", "evaluate_models",
          "deploy_and_promote")


def run_lineage(corpus: dict[str, Any] | None = None, workers: int = 2,
                training: dict[str, Any] | None = None, start: str = STAGES[0]) -> list[StepReport]:
    """Run every stage of the lineage in order. The environment must point at a running stack.

    ``training``: run config of the ``train_models`` job (None: its short CPU budgets; see
    ``orchestration.assets.training.training_run_config``). ``start``: the first stage to run (one of
    ``STAGES``); the stages before it are taken as materialized (their latest materializations are used)."""
    from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX, partition_key_for, raw_video_partitions
    from orchestration.resources import object_store_from_env

    if start not in STAGES:
        raise ValueError(f"unknown stage {start!r}; choose one of {', '.join(STAGES)}")
    if STAGES.index(start) > STAGES.index("curate_video"):
        return _run_jobs(STAGES[STAGES.index(start):], training)
    instance = dg.DagsterInstance.get()
    reports: list[StepReport] = []
    if start == STAGES[0]:
        started = time.perf_counter()
        step = StepReport("synthetic_corpus_job", runs=1)
        if not run_job(step.job, {"ops": {"synthetic_corpus": {"config": corpus}}} if corpus else None):
            step.failed.append("synthetic_corpus")
        reports.append(_timed(step, started))
        if step.failed:
            return reports

    store = object_store_from_env()
    keys = [partition_key_for(k) for k in store.list(RAW_BUCKET, RAW_PREFIX)]
    known = set(instance.get_dynamic_partitions(raw_video_partitions.name))
    instance.add_dynamic_partitions(raw_video_partitions.name, [k for k in keys if k not in known])
    reports.append(run_partitions("curate_video", keys, workers))
    return reports + _run_jobs(STAGES[2:], training)


def _run_jobs(jobs: tuple[str, ...], training: dict[str, Any] | None) -> list[StepReport]:
    """Run unpartitioned jobs in order (``train_models`` with ``training``); stop at the first failure."""
    reports = []
    for job in jobs:
        step, started = StepReport(job, runs=1), time.perf_counter()
        if not run_job(job, training if job == "train_models" else None):
            step.failed.append(job)
        reports.append(_timed(step, started))
        if step.failed:
            break
    return reports


def ensure_env(client_env: dict[str, str]) -> None:
    """Point this process's clients at the stack (without overriding what the user set)."""
    for key, value in client_env.items():
        os.environ.setdefault(key, value)
