"""Triton's Prometheus metrics (the metrics port, ``/metrics``): scrape, parse, and watch a model.

    with MetricsWatcher("127.0.0.1:8002", "lpm-online", version="3") as watch:
        ...                                   # run a probe
    watch.figures()   # deltas over the block: requests ok / failed, mean queue / compute ms,
                      # max pending requests, mean CPU utilisation, memory used

Counters are cumulative per (model, version); a watcher scrapes before, every ``interval_s``
during (gauges), and after the block, and reports differences, so figures belong to what
happened inside the block only.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us")
PENDING = "nv_inference_pending_request_count"


@dataclass(frozen=True)
class Sample:
    """One series value: metric name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and malformed lines skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        out.append(Sample(match.group(1), dict(_LABEL.findall(match.group(2) or "")), value))
    return out


def metrics_url(address: str) -> str:
    """``host:port`` or a full URL -> the ``/metrics`` URL."""
    url = address if "://" in address else f"http://{address}"
    return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"


def scrape(address: str, timeout_s: float = 5.0) -> list[Sample]:
    """GET ``/metrics`` of a Triton metrics endpoint and parse it; raises on connection errors."""
    with urllib.request.urlopen(metrics_url(address), timeout=timeout_s) as response:  # noqa: S310 - our endpoint
        return parse(response.read().decode("utf-8", "replace"))


def model_values(samples: Iterable[Sample], model: str, version: str | None = None) -> dict[str, float]:
    """Per metric name, the sum over the series of ``model`` (and ``version`` when given)."""
    out: dict[str, float] = {}
    for s in samples:
        if s.labels.get("model") != model or (version and s.labels.get("version") != str(version)):
            continue
        if "quantile" in s.labels:
            continue
        out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def server_values(samples: Iterable[Sample]) -> dict[str, float]:
    """Server-wide gauges without a model label (CPU utilisation, memory)."""
    return {s.name: s.value for s in samples if "model" not in s.labels}


class MetricsWatcher:
    """Scrapes a model's metrics before, during and after a block and reports the deltas."""

    def __init__(self, address: str, model: str, version: str | None = None, interval_s: float = 1.0) -> None:
        self.address, self.model, self.version, self.interval_s = address, model, version, interval_s
        self.before: dict[str, float] = {}
        self.after: dict[str, float] = {}
        self.max_pending = 0.0
        self.cpu: list[float] = []
        self.memory_used: list[float] = []
        self.scrapes = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> dict[str, float]:
        samples = scrape(self.address)
        self.scrapes += 1
        values = model_values(samples, self.model, self.version)
        server = server_values(samples)
        self.max_pending = max(self.max_pending, values.get(PENDING, 0.0))
        if "nv_cpu_utilization" in server:
            self.cpu.append(server["nv_cpu_utilization"])
        if "nv_cpu_memory_used_bytes" in server:
            self.memory_used.append(server["nv_cpu_memory_used_bytes"])
        return values

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except OSError as err:  # a missed scrape is reported in figures(), the probe goes on
                self.errors.append(str(err))

    def __enter__(self) -> MetricsWatcher:
        self.before = self._sample()
        self._thread = threading.Thread(target=self._loop, name="metrics-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
        self.after = self._sample()

    def delta(self, name: str) -> float:
        return self.after.get(name, 0.0) - self.before.get(name, 0.0)

    def figures(self) -> dict[str, Any]:
        """What Triton counted for the model during the block."""
        ok, failed = self.delta("nv_inference_request_success"), self.delta("nv_inference_request_failure")
        executed = max(self.delta("nv_inference_exec_count"), 1.0)

        def per_request_ms(name: str) -> float | None:
            return round(self.delta(name) / executed / 1000.0, 3) if ok + failed else None

        return {
            "requests_ok": int(ok), "requests_failed": int(failed),
            "queue_ms_mean": per_request_ms("nv_inference_queue_duration_us"),
            "compute_ms_mean": per_request_ms("nv_inference_compute_infer_duration_us"),
            "request_ms_mean": per_request_ms("nv_inference_request_duration_us"),
            "max_pending_requests": int(self.max_pending),
            "cpu_utilization_mean": round(sum(self.cpu) / len(self.cpu), 3) if self.cpu else None,
            "memory_used_gib_max": round(max(self.memory_used) / 2**30, 2) if self.memory_used else None,
            "scrapes": self.scrapes, "scrape_errors": len(self.errors),
        }
