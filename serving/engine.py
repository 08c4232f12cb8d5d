"""Serving engine: a table of Online LPM streaming sessions keyed by correlation id.

Pure Python + torch (no Triton import), so it is unit-tested in process and wrapped by the
thin Triton adapter (``serving/triton_model.py``)::

    service = StreamingService(OnlineEngine(model, vae), idle_timeout_s=30)
    service.start(7, character_image, references, prompt="smiles", seed=1)
    chunk = service.step(7, self_audio, other_audio)     # ChunkResult: frames (F, H, W, 3) uint8
    service.end(7)

Every session owns its noise generator (seeded per session: explicitly, or derived from its
correlation id), so a session's frames equal a solo run of it whatever else is interleaved.
Sessions idle for longer than ``idle_timeout_s`` are dropped by ``evict_idle`` (Triton
never sends END for a sequence it timed out); ``drain`` ends everything on shutdown.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpm_models.online.engine import OnlineEngine, Session

log = logging.getLogger(__name__)

SessionId = int | str
MAX_IMAGE_SIDE = 4096
MAX_PROMPT_CHARS = 2000
RECENTLY_GONE = 1024  # ended / evicted ids remembered for precise error messages


class ServingError(ValueError):
    """A request the engine refuses; ``code`` names the kind (stable, used in stats and tests)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ChunkResult:
    """Frames of one generated chunk. frames: (F, H, W, 3) uint8 RGB."""

    frames: np.ndarray
    chunk_index: int
    first_frame: int
    runtime_state: str
    padded_samples: int
    seconds: float


@dataclass
class _Entry:
    session: Session
    seed: int
    started_at: float
    last_active: float
    chunks: int = 0
    frames: int = 0
    busy: bool = False


@dataclass
class _Counters:
    started: int = 0
    ended: int = 0
    evicted: int = 0
    drained: int = 0
    chunks: int = 0
    frames: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    step_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=4096))


def derive_seed(session_id: SessionId) -> int:
    """A stable 63-bit seed for a session that did not send one."""
    digest = hashlib.sha256(f"lpm-session:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _check_image(name: str, image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ServingError("invalid_argument", f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ServingError("invalid_argument", f"{name} must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ServingError("invalid_argument", f"{name} must have shape (H, W, 3), got {image.shape}")
    if max(image.shape[:2]) > MAX_IMAGE_SIDE:
        raise ServingError("invalid_argument", f"{name} is {image.shape[1]}x{image.shape[0]}; "
                                               f"the longest side may be at most {MAX_IMAGE_SIDE} pixels")
    return image


def _check_prompt(prompt: Any) -> str | None:
    if prompt is None:
        return None
    if not isinstance(prompt, str):
        raise ServingError("invalid_argument", f"prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ServingError("invalid_argument", "prompt is empty; omit it to keep the current one")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ServingError("invalid_argument", f"prompt has {len(prompt)} characters, at most {MAX_PROMPT_CHARS}")
    return prompt


class StreamingService:
    """Online LPM sessions keyed by correlation id: start / step / end, eviction, drain, stats.

    Thread-safe: the table is guarded by a lock; a session is marked busy while it steps,
    so eviction and a second concurrent step on the same session are refused.
    """

    def __init__(self, engine: OnlineEngine, idle_timeout_s: float = 30.0, max_sessions: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s}")
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.engine = engine
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_sessions = int(max_sessions)
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[SessionId, _Entry] = {}
        self._gone: OrderedDict[SessionId, str] = OrderedDict()
        self._counters = _Counters()
        self._draining = False

    # ------------------------------------------------------------------ model facts
    @property
    def chunk_samples(self) -> int:
        """Audio samples per channel per step."""
        return self.engine.chunk_samples

    @property
    def chunk_frames(self) -> int:
        """Video frames per chunk (the first chunk has ``first_chunk_frames``)."""
        return self.engine.chunk_frames

    @property
    def first_chunk_frames(self) -> int:
        return self.chunk_frames - self.engine.model.cfg.dit.temporal_factor + 1

    @property
    def sample_rate(self) -> int:
        return self.engine.model.cfg.audio.sample_rate

    @property
    def fps(self) -> int:
        return self.engine.model.cfg.fps

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the generated frames."""
        cfg = self.engine.model.cfg
        return cfg.height, cfg.width

    @property
    def max_references(self) -> int:
        return self.engine.model.cfg.max_refs - 1

    def __contains__(self, session_id: SessionId) -> bool:
        with self._lock:
            return session_id in self._sessions

    # ------------------------------------------------------------------ errors
    def _fail(self, code: str, message: str) -> ServingError:
        self._counters.errors[code] += 1
        return ServingError(code, message)

    def _forget(self, session_id: SessionId, why: str) -> None:
        self._gone[session_id] = why
        self._gone.move_to_end(session_id)
        while len(self._gone) > RECENTLY_GONE:
            self._gone.popitem(last=False)

    def _unknown(self, session_id: SessionId) -> ServingError:
        why = self._gone.get(session_id)
        detail = f"it was {why}" if why else "it was never started"
        return self._fail("unknown_session", f"session {session_id!r} is not open ({detail}); "
                                             "send a START request to open it")

    # ------------------------------------------------------------------ lifecycle
    def start(self, session_id: SessionId, character_image: np.ndarray,
              references: Sequence[np.ndarray] | np.ndarray | None = None,
              prompt: str | None = None, seed: int | None = None) -> int:
        """Open a session; returns its seed. Raises ServingError on invalid input or state."""
        try:
            image = _check_image("character image", character_image)
            refs = [_check_image(f"reference {i}", r) for i, r in enumerate(list(references or []))]
            prompt = _check_prompt(prompt)
        except ServingError as err:
            self._counters.errors[err.code] += 1
            raise
        if len(refs) > self.max_references:
            raise self._fail("invalid_argument", f"{len(refs)} references exceed this model's limit of "
                                                 f"{self.max_references}")
        if seed is not None and not 0 <= int(seed) < 2**63:
            raise self._fail("invalid_argument", f"seed must be in [0, 2**63), got {seed}")
        with self._lock:
            if self._draining:
                raise self._fail("unavailable", "the server is shutting down; retry on another replica")
            if session_id in self._sessions:
                raise self._fail("duplicate_start", f"session {session_id!r} is already open; "
                                                    "send END before starting it again")
            if len(self._sessions) >= self.max_sessions:
                raise self._fail("capacity", f"{len(self._sessions)} sessions are open, the limit is "
                                             f"{self.max_sessions}; retry later")
            now = self._clock()
            use_seed = derive_seed(session_id) if seed is None else int(seed)
            entry = _Entry(session=None, seed=use_seed, started_at=now, last_active=now, busy=True)  # type: ignore[arg-type]
            self._sessions[session_id] = entry
        try:
            entry.session = self.engine.start(image, refs, prompt=prompt, seed=use_seed)
        except ValueError as err:
            with self._lock:
                self._sessions.pop(session_id, None)
            raise self._fail("invalid_argument", str(err)) from err
        except BaseException:
            with self._lock:
                self._sessions.pop(session_id, None)
            raise
        with self._lock:
            drained = self._sessions.get(session_id) is not entry
            if not drained:
                entry.busy = False
                entry.last_active = self._clock()
                self._gone.pop(session_id, None)
                self._counters.started += 1
        if drained:  # drain() ran while the session was being built
            self.engine.close(entry.session)
            raise self._fail("unavailable", "the server is shutting down; retry on another replica")
        log.info("session %r started (seed %d, %d references, prompt %r)", session_id, use_seed, len(refs), prompt)
        return use_seed

    def _audio(self, name: str, chunk: Any) -> np.ndarray:
        if not isinstance(chunk, np.ndarray):
            raise self._fail("invalid_argument", f"{name} must be a numpy array, got {type(chunk).__name__}")
        if chunk.dtype != np.float32:
            raise self._fail("invalid_argument", f"{name} must be float32 PCM in [-1, 1], got dtype {chunk.dtype}")
        if chunk.ndim != 1:
            raise self._fail("invalid_argument", f"{name} must be 1-D ({self.chunk_samples},), got shape {chunk.shape}")
        if chunk.size == 0:
            raise self._fail("invalid_argument", f"{name} is empty; send {self.chunk_samples} samples "
                                                 f"({self.chunk_frames} frames at {self.sample_rate} Hz)")
        if chunk.size > self.chunk_samples:
            raise self._fail("invalid_argument", f"{name} has {chunk.size} samples, more than one chunk "
                                                 f"({self.chunk_samples} at {self.sample_rate} Hz); split it")
        if not np.isfinite(chunk).all():
            raise self._fail("invalid_argument", f"{name} contains NaN or infinite samples")
        return chunk

    def _take(self, session_id: SessionId) -> _Entry:
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                raise self._unknown(session_id)
            if entry.busy:
                raise self._fail("busy", f"session {session_id!r} is still generating its previous chunk; "
                                         "send the next chunk after its frames arrive")
            entry.busy = True
            return entry

    def step(self, session_id: SessionId, self_audio: np.ndarray, other_audio: np.ndarray,
             prompt: str | None = None) -> ChunkResult:
        """Generate one chunk from one audio chunk per channel (shorter final chunks are zero-padded)."""
        a_self, a_other = self._audio("character audio", self_audio), self._audio("user audio", other_audio)
        if a_self.size != a_other.size:
            raise self._fail("invalid_argument", f"character audio has {a_self.size} samples but user audio "
                                                 f"{a_other.size}; send both channels for the same time span")
        try:
            prompt = _check_prompt(prompt)
        except ServingError as err:
            self._counters.errors[err.code] += 1
            raise
        pad = self.chunk_samples - a_self.size
        if pad:
            a_self, a_other = np.pad(a_self, (0, pad)), np.pad(a_other, (0, pad))
        entry = self._take(session_id)
        started = time.perf_counter()
        try:
            first = entry.session.frames_out
            frames = self.engine.step(entry.session, a_self, a_other, prompt=prompt)
        finally:
            with self._lock:
                entry.busy = False
                entry.last_active = self._clock()
        seconds = time.perf_counter() - started
        with self._lock:
            entry.chunks += 1
            entry.frames += frames.shape[0]
            self._counters.chunks += 1
            self._counters.frames += frames.shape[0]
            self._counters.step_seconds.append(seconds)
        return ChunkResult(frames=frames, chunk_index=entry.session.chunk_index - 1, first_frame=first,
                           runtime_state=str(entry.session.runtime_state.value), padded_samples=pad, seconds=seconds)

    def end(self, session_id: SessionId) -> dict[str, Any]:
        """Close a session and free its state; returns its summary."""
        entry = self._take(session_id)
        with self._lock:
            self._sessions.pop(session_id, None)
            self._forget(session_id, "ended")
            self._counters.ended += 1
        self.engine.close(entry.session)
        log.info("session %r ended after %d chunks", session_id, entry.chunks)
        return {"session": session_id, "seed": entry.seed, "chunks": entry.chunks, "frames": entry.frames}

    def evict_idle(self, now: float | None = None) -> list[SessionId]:
        """Close sessions idle for longer than ``idle_timeout_s``; returns their ids."""
        now = self._clock() if now is None else now
        with self._lock:
            stale = [sid for sid, e in self._sessions.items()
                     if not e.busy and now - e.last_active > self.idle_timeout_s]
            entries = [self._sessions.pop(sid) for sid in stale]
            for sid, entry in zip(stale, entries):
                self._forget(sid, f"evicted after {now - entry.last_active:.1f} s idle "
                                  f"(timeout {self.idle_timeout_s:g} s)")
            self._counters.evicted += len(stale)
        for sid, entry in zip(stale, entries):
            self.engine.close(entry.session)
            log.info("session %r evicted after %.1f s idle", sid, now - entry.last_active)
        return stale

    def drain(self) -> list[SessionId]:
        """Refuse new sessions and close every open one (shutdown); returns the closed ids."""
        with self._lock:
            self._draining = True
            closed = list(self._sessions.items())
            self._sessions.clear()
            for sid, _ in closed:
                self._forget(sid, "closed because the server shut down")
            self._counters.drained += len(closed)
        for _, entry in closed:
            if entry.session is not None:
                self.engine.close(entry.session)
        if closed:
            log.info("drained %d open sessions", len(closed))
        return [sid for sid, _ in closed]

    def stats(self) -> dict[str, Any]:
        """Counters, open sessions and recent step latency percentiles (seconds)."""
        with self._lock:
            c = self._counters
            steps = np.asarray(c.step_seconds, dtype=np.float64)
            pct = {f"step_p{q}_s": float(np.percentile(steps, q)) if steps.size else None for q in (50, 95, 99)}
            return {"open": len(self._sessions), "started": c.started, "ended": c.ended, "evicted": c.evicted,
                    "drained": c.drained, "chunks": c.chunks, "frames": c.frames, "errors": dict(c.errors),
                    "draining": self._draining, **pct}
