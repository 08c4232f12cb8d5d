"""Cold-start benchmark of the embedded services in a fresh, throw-away state directory."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.local.ports import isolated_settings
from infra.local.services import Stack

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    """Seconds from launch to healthy per service, wall time for all, and time to stop."""

    per_service: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    stop_s: float = 0.0
    cpu_count: int = 0


def cold_start_bench(
    names: list[str] | None = None, sequential: bool = False, timeout: float = 300.0
) -> BenchResult:
    """Start the services in a new temporary home on free ports, time them, stop them.

    ``sequential`` starts one service at a time, so each is measured without the others
    competing for the CPU; the default starts them together as ``lpm services up`` does.
    """
    result = BenchResult(cpu_count=os.cpu_count() or 0)
    with tempfile.TemporaryDirectory(prefix="lpm-bench-") as tmp:
        stack = Stack(isolated_settings(Path(tmp)))
        order = stack.resolve(names)
        started = time.monotonic()
        try:
            batches = [[name] for name in order] if sequential else [order]
            for batch in batches:
                for status in stack.up(batch, timeout=timeout):
                    if status.startup_s is not None:
                        result.per_service[status.name] = status.startup_s
            result.total_s = time.monotonic() - started
        finally:
            stopping = time.monotonic()
            stack.down()
            result.stop_s = time.monotonic() - stopping
    log.debug("bench result: %s", result)
    return result
