"""Drive one opened session through a whole conversation and measure it.

Latency figures (seconds):
  ttff        first audio chunk sent -> its first frames received
  chunk       a chunk sent -> its last response (final flag) received
  rtf         mean chunk latency / chunk duration (< 1: the stream keeps up with real time)
  lag         real-time pacing only: how late a chunk's frames arrived after its audio ended
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.client import ChunkReply, StreamClient, StreamError

log = logging.getLogger(__name__)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if values else None


@dataclass
class StreamReport:
    """What one stream measured."""

    chunk_s: float
    realtime: bool
    chunks: int = 0
    frames: int = 0
    open_s: float = 0.0
    wall_s: float = 0.0
    ttff_s: float | None = None
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def media_s(self) -> float:
        return self.chunks * self.chunk_s

    @property
    def rtf(self) -> float | None:
        return float(np.mean(self.latencies)) / self.chunk_s if self.latencies else None

    def summary(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {"chunks": self.chunks, "frames": self.frames, "media_s": r(self.media_s), "wall_s": r(self.wall_s),
                "open_s": r(self.open_s), "ttff_s": r(self.ttff_s), "rtf": r(self.rtf),
                "chunk_p50_s": r(percentile(self.latencies, 50)), "chunk_p95_s": r(percentile(self.latencies, 95)),
                "chunk_p99_s": r(percentile(self.latencies, 99)), "max_lag_s": r(max(self.lags) if self.lags else None),
                "errors": len(self.errors), "realtime": self.realtime}


def split_chunks(audio: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """Consecutive chunks; the last one may be shorter (the server zero-pads it)."""
    return [audio[i:i + chunk_samples] for i in range(0, audio.size, chunk_samples)]


def align(other: np.ndarray | None, length: int) -> np.ndarray:
    """The user channel cut or zero-padded to the character channel's length (None: silence)."""
    if other is None:
        return np.zeros(length, np.float32)
    other = other[:length].astype(np.float32)
    return np.pad(other, (0, length - other.size)) if other.size < length else other


class _Tracker:
    def __init__(self, report: StreamReport, t0: float, on_reply: Callable[[ChunkReply], None] | None,
                 progress: Callable[[StreamReport], None] | None) -> None:
        self.report, self.t0, self.on_reply, self.progress = report, t0, on_reply, progress
        self.position: dict[int, int] = {}  # request index -> chunk position
        self.failed_in_a_row = 0

    def handle(self, reply: ChunkReply) -> None:
        report = self.report
        if reply.error:
            report.errors.append(reply.error)
            self.failed_in_a_row += 1
            log.warning("request %d failed: %s", reply.index, reply.error)
            return
        self.failed_in_a_row = 0
        if reply.kind not in ("chunk", "raw"):
            return
        k = self.position.get(reply.index, report.chunks)
        report.latencies.append(reply.latency_s)
        if k == 0 and reply.first_response_at is not None:
            report.ttff_s = reply.first_response_at - reply.sent_at
        if report.realtime and reply.done_at is not None:
            report.lags.append(reply.done_at - (self.t0 + (k + 1) * report.chunk_s))
        report.chunks += 1
        report.frames += sum(f.shape[0] for f in reply.frames)
        if self.on_reply:
            self.on_reply(reply)
        if self.progress:
            self.progress(report)


def run_stream(client: StreamClient, self_audio: np.ndarray, other_audio: np.ndarray | None = None, *,
               realtime: bool = False, prompts: dict[int, str] | None = None,
               on_reply: Callable[[ChunkReply], None] | None = None,
               progress: Callable[[StreamReport], None] | None = None, end: bool = True,
               stop_after_errors: int = 3) -> StreamReport:
    """Stream both audio channels chunk by chunk through an opened session.

    realtime: send chunk k at ``t0 + k * chunk duration`` (as a live microphone would),
    else send each chunk as soon as the previous one's frames are back.
    prompts: chunk number -> prompt update sent with that chunk.
    stop_after_errors: stop sending after this many failed requests in a row (the session is
    likely gone, e.g. timed out); what was sent is still collected.
    """
    if client.info is None:
        raise RuntimeError("open the session (StreamClient.open) before streaming")
    n, rate = int(client.info["chunk_samples"]), int(client.info["sample_rate"])
    self_audio = np.asarray(self_audio, np.float32)
    chunks = split_chunks(self_audio, n)
    others = split_chunks(align(other_audio, self_audio.size), n)
    report = StreamReport(chunk_s=n / rate, realtime=realtime, open_s=client.open_s or 0.0)
    t0 = time.perf_counter()
    tracker = _Tracker(report, t0, on_reply, progress)
    for k, (a_self, a_other) in enumerate(zip(chunks, others)):
        if tracker.failed_in_a_row >= stop_after_errors:
            report.errors.append(f"stopped after {tracker.failed_in_a_row} failed requests in a row")
            break
        if realtime:
            while (wait := t0 + k * report.chunk_s - time.perf_counter()) > 0:
                try:
                    tracker.handle(client.next_reply(timeout_s=wait))
                except TimeoutError:
                    break
        index = client.send(a_self, a_other, prompt=(prompts or {}).get(k))
        tracker.position[index] = k
        if not realtime:
            tracker.handle(client.next_reply())
        while (ready := client.poll()) is not None:
            tracker.handle(ready)
    rest = [client.next_reply() for _ in range(client.in_flight)]
    if end:
        try:
            rest += client.finish()
        except StreamError as err:  # the session is already gone (e.g. evicted): nothing left to free
            report.errors.append(str(err))
    for reply in rest:
        tracker.handle(reply)
    report.wall_s = time.perf_counter() - t0
    expected = math.ceil(self_audio.size / n)
    if report.chunks + len(report.errors) < expected:
        report.errors.append(f"only {report.chunks} of {expected} chunks came back")
    return report
