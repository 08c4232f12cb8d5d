"""Training progress over Dagster Pipes: the reporter a training child process loads, and the
parent-side reading of what it reported.

The training CLIs take ``--reporter module:factory`` (see ``lpm_models.base.train``); the
launcher passes :data:`REPORTER_SPEC`, so the child calls :func:`make`. On global rank 0 it
opens the Pipes connection and every ``(event, data)`` becomes

* a Dagster log line (``pipes.log``), shown live in the run's logs,
* a custom message ``{"event", "time", "data"}`` the parent turns into MLflow params and
  metrics (:class:`TrainingEvents`), so they are logged once, by the orchestrator,
* for the ``done`` event, the asset materialization's metadata (scalar results).

Other ranks log locally only. This module imports ``dagster_pipes`` (small) but not dagster.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

REPORTER_SPEC = "orchestration.pipes_reporter:make"
NON_METRIC_KEYS = frozenset({"step", "max_steps", "eta_s", "time"})
Reporter = Callable[[str, dict[str, Any]], None]


def is_global_rank_zero(env: Mapping[str, str]) -> bool:
    """True in the process that reports: RANK (torchrun, clusters) or LOCAL_RANK + NODE_RANK
    (Lightning's own launcher sets them for the processes it starts); unset means rank 0."""
    if env.get("RANK"):
        return int(env["RANK"]) == 0
    return int(env.get("LOCAL_RANK") or 0) == 0 and int(env.get("NODE_RANK") or env.get("GROUP_RANK") or 0) == 0


def jsonable(value: Any) -> Any:
    """Plain JSON data: paths and unknown objects become strings, NaN/inf become None."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return jsonable(value.item())
    return str(value)


def summary(event: str, data: Mapping[str, Any]) -> str:
    """One log line: ``event key=value ...`` with floats at 4 significant digits."""
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items()
             if not isinstance(v, (Mapping, list, tuple))]
    return f"{event} {' '.join(parts)}".strip()


def scalar_metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of a result (numbers, strings, booleans) for materialization metadata."""
    return {k: v for k, v in jsonable(dict(data)).items() if isinstance(v, (int, float, str, bool))}


class PipesReporter:
    """A ``(event, data)`` reporter writing to an open Dagster Pipes context."""

    def __init__(self, pipes: Any, materialize_on: str = "done") -> None:
        self.pipes, self.materialize_on = pipes, materialize_on
        self._materialized = False

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        payload = {"event": event, "time": time.time(), "data": jsonable(data)}
        self.pipes.report_custom_message(payload)
        self.pipes.log.info(summary(event, data))
        if event == self.materialize_on and not self._materialized:
            self.pipes.report_asset_materialization(metadata=scalar_metadata(data))
            self._materialized = True


def _local_reporter(event: str, data: dict[str, Any]) -> None:
    log.info("%s", summary(event, data))


def make() -> Reporter:
    """Reporter factory for ``--reporter orchestration.pipes_reporter:make``.

    Rank 0 opens Pipes (closed at exit; an uncaught exception is reported to Dagster with
    its traceback); other ranks get a local logging reporter.
    """
    if not is_global_rank_zero(os.environ):
        return _local_reporter
    from dagster_pipes import open_dagster_pipes

    pipes = open_dagster_pipes()
    previous_hook = sys.excepthook

    def report_crash(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        pipes.__exit__(kind, error, tb)  # closes the connection carrying the exception
        previous_hook(kind, error, tb)

    sys.excepthook = report_crash
    atexit.register(pipes.close)
    return PipesReporter(pipes)


# ------------------------------------------------------------------------ parent side
@dataclass
class TrainingEvents:
    """What a training child reported, read back by the orchestrator.

    ``metrics``: name -> [(step, value, time)] from ``progress`` events (numbers only);
    ``started``/``result``: data of the ``start`` and (first) ``done`` events; ``previews``: PNG/MP4
    files of ``preview`` events; ``events``: every payload in order.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    started: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    previews: list[Path] = field(default_factory=list)

    @classmethod
    def from_messages(cls, messages: list[Any]) -> TrainingEvents:
        """Parse Pipes custom messages (payloads of :class:`PipesReporter`); others are ignored."""
        out = cls()
        for message in messages:
            if not isinstance(message, Mapping) or "event" not in message:
                continue
            out.events.append(dict(message))
            event, data, when = message["event"], dict(message.get("data") or {}), float(message.get("time") or 0.0)
            if event == "start":
                out.started = data
            elif event == "done" and not out.result:  # the first result counts (as for the materialization)
                out.result = data
            elif event == "preview":
                out.previews += [Path(data[k]) for k in ("png", "mp4") if data.get(k)]
            elif event == "progress" and isinstance(data.get("step"), int):
                for name, value in data.items():
                    if name not in NON_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                        out.metrics.setdefault(name, []).append((data["step"], float(value), when))
        return out

    def last(self, name: str) -> float | None:
        """The last reported value of a metric (None if never reported)."""
        series = self.metrics.get(name)
        return series[-1][1] if series else None
