"""Smoke stream: one real session against a served Online LPM, every reply checked against the contract.

    result = smoke_stream(url, "lpm-online", "3", image, speech, user_speech, seconds=3.0, out=Path("smoke.mp4"))
    result.passed, result.failures, result.figures

Checks (each failure is one line of ``failures``): the session opens and names the expected
version; every chunk comes back in order with frames (F, H, W, 3) uint8, F = first_chunk_frames
for chunk 0 and chunk_frames after, H x W as announced, frame indices contiguous; frames are an
image (not flat, not all black or white); runtime states are contract states, the stream starts
in ``warmup`` and leaves it once past the warm-up chunks; no request fails.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.client import ChunkReply, StreamClient, StreamError
from serving.conversation import run_stream
from serving.media import Mp4Writer, read_audio, read_image

log = logging.getLogger(__name__)

RUNTIME_STATES = ("warmup", "idle", "listening", "responding")
INFO_KEYS = ("chunk_samples", "sample_rate", "fps", "chunk_frames", "first_chunk_frames", "height", "width",
             "model", "version", "session", "seed")


@dataclass(frozen=True)
class SmokeLimits:
    """Value-range sanity: a chunk's pixel std above ``min_std`` and mean inside (``min_mean``, ``max_mean``)."""

    min_std: float = 1.0
    min_mean: float = 2.0
    max_mean: float = 253.0


@dataclass
class SmokeResult:
    """Outcome of one smoke stream."""

    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        f = self.figures
        lines = [f"**Smoke stream: {'PASS' if self.passed else 'FAIL'}** ({f.get('chunks', 0)} chunks, "
                 f"{f.get('frames', 0)} frames {f.get('height')}x{f.get('width')} at {f.get('fps')} fps)", "",
                 f"- runtime states: {f.get('states', {})}",
                 f"- pixel mean {f.get('pixel_mean')}, std min {f.get('pixel_std_min')}",
                 f"- TTFF {f.get('ttff_s')} s, RTF {f.get('rtf')}"]
        return "\n".join(lines + [f"- FAIL: {x}" for x in self.failures])


class _Checker:
    def __init__(self, info: dict[str, Any], limits: SmokeLimits) -> None:
        self.info, self.limits = info, limits
        self.failures: list[str] = []
        self.states: dict[str, int] = {}
        self.sequence: list[str] = []
        self.next_frame = 0
        self.chunks = 0
        self.means: list[float] = []
        self.stds: list[float] = []

    def fail(self, message: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(message)

    def check(self, reply: ChunkReply) -> None:
        k, video, info = self.chunks, reply.video, self.info
        self.chunks += 1
        expected = info["first_chunk_frames"] if k == 0 else info["chunk_frames"]
        shape = (expected, info["height"], info["width"], 3)
        if video.dtype != np.uint8 or video.shape != shape:
            self.fail(f"chunk {k}: frames {video.dtype} {video.shape}, expected uint8 {shape}")
        if reply.chunk_index != k:
            self.fail(f"chunk {k}: CHUNK_INDEX {reply.chunk_index}")
        if reply.first_frame != self.next_frame:
            self.fail(f"chunk {k}: FIRST_FRAME {reply.first_frame}, expected {self.next_frame}")
        self.next_frame += video.shape[0]
        state = reply.runtime_state or ""
        self.states[state] = self.states.get(state, 0) + 1
        self.sequence.append(state)
        if state not in RUNTIME_STATES:
            self.fail(f"chunk {k}: runtime state {state!r} is not one of {RUNTIME_STATES}")
        if video.size:
            mean, std = float(video.mean()), float(video.reshape(video.shape[0], -1).std(axis=1).min())
            self.means.append(mean)
            self.stds.append(std)
            if std < self.limits.min_std:
                self.fail(f"chunk {k}: a flat frame (pixel std {std:.2f} < {self.limits.min_std})")
            if not self.limits.min_mean < mean < self.limits.max_mean:
                self.fail(f"chunk {k}: pixel mean {mean:.1f} outside ({self.limits.min_mean}, {self.limits.max_mean})")


def _check_info(info: dict[str, Any], model: str, version: str) -> list[str]:
    missing = [k for k in INFO_KEYS if k not in info]
    if missing:
        return [f"STREAM_INFO lacks {missing}"]
    out = []
    if info["model"] != model or (version and str(info["version"]) != str(version)):
        out.append(f"served by {info['model']} v{info['version']}, expected {model} v{version or 'any'}")
    if min(info["chunk_samples"], info["sample_rate"], info["fps"], info["height"], info["width"]) <= 0:
        out.append(f"STREAM_INFO holds non-positive sizes: {info}")
    return out


def _check_states(sequence: list[str], warmup_chunks: int) -> list[str]:
    out = []
    if sequence and sequence[0] != "warmup":
        out.append(f"the stream began in {sequence[0]!r}, not 'warmup'")
    if len(sequence) > warmup_chunks + 1 and all(s == "warmup" for s in sequence):
        out.append(f"the stream never left 'warmup' in {len(sequence)} chunks")
    return out


def _audio(track: np.ndarray | Path | None, rate: int) -> np.ndarray | None:
    if track is None or isinstance(track, np.ndarray):
        return track
    return read_audio(track, rate)


def smoke_stream(url: str, model: str, version: str, image: np.ndarray | Path, speech: np.ndarray | Path,
                 user_speech: np.ndarray | Path | None = None, *, references: list[np.ndarray] | None = None,
                 seconds: float = 3.0, seed: int = 1, warmup_chunks: int = 2, limits: SmokeLimits = SmokeLimits(),
                 out: Path | None = None, timeout_s: float = 120.0) -> SmokeResult:
    """Stream ``seconds`` of ``speech`` (+ ``user_speech``) as fast as the server answers; check every reply.

    image: (H, W, 3) uint8 or an image file. speech / user_speech: mono float32 at the model's sample
    rate, or audio files (decoded and resampled to the ``sample_rate`` the session announces).
    out: also write the frames with the speech as an MP4 (a preview).
    """
    image = read_image(image) if isinstance(image, Path) else image
    result = SmokeResult()
    with StreamClient(url, model, version, timeout_s=timeout_s) as client:
        try:
            info = client.open(image, references, seed=seed)
        except (StreamError, TimeoutError) as err:
            result.failures.append(f"the session did not open: {err}")
            return result
        result.info = info
        result.failures += _check_info(info, model, version)
        if result.failures:
            client.finish()
            return result
        rate = int(info["sample_rate"])
        speech, user_speech = _audio(speech, rate), _audio(user_speech, rate)
        n = min(speech.size, int(seconds * rate))
        self_audio = np.asarray(speech[:n], np.float32)
        other = None if user_speech is None else np.asarray(user_speech[:n], np.float32)
        checker = _Checker(info, limits)
        writer = Mp4Writer(out, int(info["fps"]), audio_rate=rate) if out else None

        def on_reply(reply: ChunkReply) -> None:
            checker.check(reply)
            if writer is not None:
                writer.add(reply.video)

        try:
            report = run_stream(client, self_audio, other, realtime=False, on_reply=on_reply)
        finally:
            if writer is not None and writer.frames:
                writer.close(self_audio)
            elif writer is not None:
                writer.abort()
    expected = math.ceil(n / int(info["chunk_samples"]))
    result.failures += checker.failures + _check_states(checker.sequence, warmup_chunks)
    result.failures += [f"request failed: {e}" for e in report.errors[:5]]
    if checker.chunks != expected:
        result.failures.append(f"{checker.chunks} of {expected} chunks came back")
    result.figures = {
        "chunks": checker.chunks, "frames": report.frames, "height": info["height"], "width": info["width"],
        "fps": info["fps"], "states": checker.states, "state_sequence": "".join(s[:1] for s in checker.sequence),
        "pixel_mean": round(float(np.mean(checker.means)), 2) if checker.means else None,
        "pixel_std_min": round(min(checker.stds), 2) if checker.stds else None,
        "ttff_s": report.summary()["ttff_s"], "rtf": report.summary()["rtf"], "errors": len(report.errors),
        "seconds": round(n / rate, 3), "version": info["version"], "run_id": info.get("run_id", ""),
    }
    log.info("smoke stream %s v%s: %s %s", model, info["version"], "PASS" if result.passed else "FAIL",
             result.failures[:3] or result.figures)
    return result
