"""Latency probe: K concurrent sessions paced at real time against a served Online LPM.

    report = probe("127.0.0.1:8001", "lpm-online", streams=2, seconds=5)
    report.summary()   # ttff / per-chunk p50 p95 p99 / rtf per stream / errors

Used by SLO checks (time to first frame, per-chunk latency, real-time factor under N
streams, zero errors) and by ``python -m serving.bench``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.client import StreamClient
from serving.conversation import StreamReport, percentile, run_stream

log = logging.getLogger(__name__)


def speech_like(seconds: float, sample_rate: int, seed: int, active: float = 0.5) -> np.ndarray:
    """Deterministic test audio: syllable-rate modulated noise in turns (active fraction ``active``)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))) ** 2
    turn = (np.sin(2 * np.pi * t / 4.0 + rng.uniform(0, 2 * np.pi)) > 1 - 2 * active).astype(np.float32)
    return (rng.standard_normal(n) * 0.15 * envelope * turn).astype(np.float32)


def card_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test card (smooth gradients + noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, 1 - x * y], axis=-1) * 200 + rng.integers(0, 55, (size, size, 3))
    return base.astype(np.uint8)


@dataclass
class ProbeReport:
    """Per-stream reports plus errors that happened outside a stream (connect, START)."""

    streams: list[StreamReport]
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def all_errors(self) -> list[str]:
        return self.errors + [e for s in self.streams for e in s.errors]

    def summary(self) -> dict[str, Any]:
        latencies = [x for s in self.streams for x in s.latencies]
        ttffs = [s.ttff_s for s in self.streams if s.ttff_s is not None]
        rtfs = [s.rtf for s in self.streams if s.rtf is not None]
        lags = [x for s in self.streams for x in s.lags]

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "streams": len(self.streams) + len(self.errors), "completed": len(self.streams),
            "chunks": sum(s.chunks for s in self.streams),
            "ttff_p50_s": r(percentile(ttffs, 50)), "ttff_p95_s": r(percentile(ttffs, 95)),
            "ttff_max_s": r(max(ttffs) if ttffs else None),
            "chunk_p50_s": r(percentile(latencies, 50)), "chunk_p95_s": r(percentile(latencies, 95)),
            "chunk_p99_s": r(percentile(latencies, 99)),
            "rtf_per_stream": [r(x) for x in rtfs], "rtf_max": r(max(rtfs) if rtfs else None),
            "max_lag_s": r(max(lags) if lags else None),
            "errors": len(self.all_errors), "error_messages": self.all_errors[:5], "wall_s": r(self.wall_s),
        }


def _one_stream(url: str, model: str, version: str, seconds: float, realtime: bool, seed: int,
                prompt: str | None, results: list[StreamReport], errors: list[str], lock: threading.Lock) -> None:
    try:
        with StreamClient(url, model, version) as client:
            info = client.open(card_image(seed=seed), prompt=prompt, seed=seed)
            rate = int(info["sample_rate"])
            report = run_stream(client, speech_like(seconds, rate, 2 * seed), speech_like(seconds, rate, 2 * seed + 1),
                                realtime=realtime)
        with lock:
            results.append(report)
    except Exception as err:  # a failed stream is a probe finding, not a crash
        log.warning("stream %d failed: %s", seed, err)
        with lock:
            errors.append(f"stream {seed}: {type(err).__name__}: {err}")


def probe(url: str, model: str, version: str = "", streams: int = 2, seconds: float = 5.0,
          realtime: bool = True, prompt: str | None = None) -> ProbeReport:
    """Open ``streams`` concurrent sessions of ``seconds`` of audio each and measure them."""
    if streams < 1 or seconds <= 0:
        raise ValueError("streams must be >= 1 and seconds > 0")
    results: list[StreamReport] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()
    threads = [threading.Thread(target=_one_stream, name=f"probe-{i}", daemon=True,
                                args=(url, model, version, seconds, realtime, i + 1, prompt, results, errors, lock))
               for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = ProbeReport(streams=results, errors=errors, wall_s=time.perf_counter() - started)
    log.info("probe %s x%d: %s", model, streams, report.summary())
    return report
