"""The main job: materialize the whole lineage on the embedded stack, recorded in the Dagster instance
(so every run, materialization and check is visible in the Dagster UI afterwards)."""

from __future__ import annotations

import logging
import os
import time
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


def _job(defs: dg.Definitions, name: str) -> dg.JobDefinition:
    return defs.resolve_job_def(name)


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, run_config: dict[str, Any] | None = None,
         partition_key: str | None = None, tags: dict[str, str] | None = None) -> bool:
    result = _job(defs, name).execute_in_process(
        run_config=run_config or {}, instance=instance, partition_key=partition_key,
        raise_on_error=False, tags={"lpm/main_job": "true", **(tags or {})},
    )
    if not result.success:
        log.error("run %s of %s%s failed; see the Dagster UI", result.run_id, name,
                  f" [{partition_key}]" if partition_key else "")
    return result.success


def run_lineage(corpus: dict[str, Any] | None = None) -> list[StepReport]:
    """Run every stage of the lineage in order. The environment must point at a running stack."""
    from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX, partition_key_for, raw_video_partitions
    from orchestration.definitions import defs
    from orchestration.resources import object_store_from_env

    instance = dg.DagsterInstance.get()
    reports: list[StepReport] = []

    step = StepReport("synthetic_corpus_job")
    started = time.perf_counter()
    run_config = {"ops": {"synthetic_corpus": {"config": corpus}}} if corpus else None
    step.runs = 1
    if not _run(defs, instance, step.job, run_config):
        step.failed.append("synthetic_corpus")
    step.seconds = time.perf_counter() - started
    reports.append(step)
    if step.failed:
        return reports

    step = StepReport("ingest_raw_videos")
    started = time.perf_counter()
    store = object_store_from_env()
    keys = [partition_key_for(k) for k in store.list(RAW_BUCKET, RAW_PREFIX)]
    known = set(instance.get_dynamic_partitions(raw_video_partitions.name))
    instance.add_dynamic_partitions(raw_video_partitions.name, [k for k in keys if k not in known])
    for i, key in enumerate(keys, 1):
        log.info("ingesting %d/%d: %s", i, len(keys), key)
        step.runs += 1
        if not _run(defs, instance, step.job, partition_key=key):
            step.failed.append(key)
    step.seconds = time.perf_counter() - started
    reports.append(step)
    return reports


def ensure_env(client_env: dict[str, str]) -> None:
    """Point this process's clients at the stack (without overriding what the user set)."""
    for key, value in client_env.items():
        os.environ.setdefault(key, value)
