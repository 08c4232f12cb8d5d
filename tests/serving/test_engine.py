"""Serving engine (no Triton): validation, session isolation, seeds, padding, eviction, drain, stats."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from serving.engine import ServingError, StreamingService, derive_seed
from tests.serving.factory import audio, images, small_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    return small_engine()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def service(engine, clock: Clock) -> StreamingService:  # type: ignore[no-untyped-def]
    return StreamingService(engine, idle_timeout_s=30.0, max_sessions=4, clock=clock)


def chunk(service: StreamingService, seed: int) -> np.ndarray:
    return audio(service.chunk_samples, seed)


def solo(service: StreamingService, sid: int, image_seed: int, seed: int | None, chunks: int = 3) -> list[np.ndarray]:
    image, refs = images(image_seed)
    service.start(sid, image, refs, prompt="calm", seed=seed)
    out = [service.step(sid, chunk(service, 10 * image_seed + j), chunk(service, 100 + j)).frames for j in range(chunks)]
    service.end(sid)
    return out


@contextmanager
def expect(code: str, match: str) -> Iterator[None]:
    """pytest.raises(ServingError, match=...) that also checks the error code."""
    with pytest.raises(ServingError, match=match) as caught:
        yield
    assert caught.value.code == code, caught.value.code


def test_chunk_results_carry_frames_and_positions(service: StreamingService) -> None:
    image, refs = images()
    seed = service.start(1, image, refs, seed=3)
    assert seed == 3
    results = [service.step(1, chunk(service, j), chunk(service, 50 + j)) for j in range(3)]
    h, w = service.frame_size
    assert [r.frames.shape for r in results] == [(service.first_chunk_frames, h, w, 3)] + [(service.chunk_frames, h, w, 3)] * 2
    assert [r.chunk_index for r in results] == [0, 1, 2]
    assert [r.first_frame for r in results] == [0, service.first_chunk_frames, service.first_chunk_frames + service.chunk_frames]
    assert all(r.frames.dtype == np.uint8 and r.padded_samples == 0 and r.seconds > 0 for r in results)
    summary = service.end(1)
    assert summary == {"session": 1, "seed": 3, "chunks": 3, "frames": sum(r.frames.shape[0] for r in results)}


def test_start_validation(service: StreamingService) -> None:
    image, refs = images()
    with expect("invalid_argument", "uint8"):
        service.start(1, image.astype(np.float32))
    with expect("invalid_argument", r"\(H, W, 3\)"):
        service.start(1, image[..., 0])
    with expect("invalid_argument", "numpy array"):
        service.start(1, image.tolist())  # type: ignore[arg-type]
    with expect("invalid_argument", "references exceed"):
        service.start(1, image, refs * (service.max_references + 1))
    with expect("invalid_argument", "prompt is empty"):
        service.start(1, image, refs, prompt="  ")
    with expect("invalid_argument", "seed"):
        service.start(1, image, refs, seed=-1)
    assert 1 not in service
    service.start(1, image, refs)
    with expect("duplicate_start", "already open"):
        service.start(1, image, refs)
    assert service.stats()["errors"] == {"invalid_argument": 6, "duplicate_start": 1}


def test_step_validation(service: StreamingService) -> None:
    n = service.chunk_samples
    good = chunk(service, 0)
    with expect("unknown_session", "never started"):
        service.step(9, good, good)
    image, refs = images()
    service.start(9, image, refs)
    cases = [
        (good.astype(np.float64), good, "float32"),
        (good.reshape(1, -1), good, "1-D"),
        (np.zeros(0, np.float32), np.zeros(0, np.float32), "empty"),
        (np.zeros(n + 1, np.float32), np.zeros(n + 1, np.float32), "more than one chunk"),
        (good, good[: n // 2], "same time span"),
        (np.full(n, np.nan, np.float32), good, "NaN"),
    ]
    for a_self, a_other, match in cases:
        with expect("invalid_argument", match):
            service.step(9, a_self, a_other)
    # a refused request leaves the session usable
    assert service.step(9, good, good).chunk_index == 0
    service.end(9)
    with expect("unknown_session", "ended"):
        service.step(9, good, good)
    with expect("unknown_session", "ended"):
        service.end(9)


def test_interleaved_sessions_equal_their_solo_runs(engine) -> None:  # type: ignore[no-untyped-def]
    solo_a = solo(StreamingService(engine), 1, image_seed=1, seed=11)
    solo_b = solo(StreamingService(engine), 2, image_seed=2, seed=22)
    service = StreamingService(engine)
    for sid, image_seed, seed in ((1, 1, 11), (2, 2, 22)):
        image, refs = images(image_seed)
        service.start(sid, image, refs, prompt="calm", seed=seed)
    mixed: dict[int, list[np.ndarray]] = {1: [], 2: []}
    for j in range(3):
        for sid, image_seed in ((2, 2), (1, 1)):
            mixed[sid].append(service.step(sid, chunk(service, 10 * image_seed + j), chunk(service, 100 + j)).frames)
    assert all(np.array_equal(x, y) for x, y in zip(mixed[1], solo_a))
    assert all(np.array_equal(x, y) for x, y in zip(mixed[2], solo_b))
    assert not np.array_equal(solo_a[1], solo_b[1])


def test_sessions_without_a_seed_derive_one_from_their_id(engine) -> None:  # type: ignore[no-untyped-def]
    service = StreamingService(engine)
    image, refs = images()
    assert service.start(5, image, refs) == derive_seed(5)
    assert derive_seed(5) != derive_seed(6) and derive_seed("5") == derive_seed(5)
    a = service.step(5, chunk(service, 0), chunk(service, 1)).frames
    service.end(5)
    service.start(5, image, refs)
    assert np.array_equal(service.step(5, chunk(service, 0), chunk(service, 1)).frames, a)


def test_a_short_final_chunk_is_zero_padded(service: StreamingService) -> None:
    image, refs = images()
    half = service.chunk_samples // 2
    outs = []
    for sid, a_self in ((1, chunk(service, 0)[:half]), (2, np.pad(chunk(service, 0)[:half], (0, service.chunk_samples - half)))):
        service.start(sid, image, refs, seed=1)
        result = service.step(sid, a_self, np.zeros_like(a_self))
        outs.append(result)
    assert outs[0].padded_samples == service.chunk_samples - half and outs[1].padded_samples == 0
    assert np.array_equal(outs[0].frames, outs[1].frames)


def test_idle_sessions_are_evicted(service: StreamingService, clock: Clock) -> None:
    image, refs = images()
    service.start(1, image, refs)
    service.start(2, image, refs)
    clock.now += 20
    service.step(2, chunk(service, 0), chunk(service, 1))
    clock.now += 15  # session 1 idle 35 s, session 2 idle 15 s
    assert service.evict_idle() == [1]
    assert 1 not in service and 2 in service
    with expect("unknown_session", r"evicted after 35.0 s idle"):
        service.step(1, chunk(service, 0), chunk(service, 1))
    assert service.evict_idle(now=clock.now + 31) == [2]
    stats = service.stats()
    assert stats["open"] == 0 and stats["evicted"] == 2 and stats["started"] == 2
    service.start(1, image, refs)  # an evicted id can start again
    assert 1 in service


def test_a_busy_session_is_not_evicted(service: StreamingService, clock: Clock) -> None:
    image, refs = images()
    service.start(1, image, refs)
    entry = service._take(1)  # as step() does while generating
    with expect("busy", "previous chunk"):
        service.step(1, chunk(service, 0), chunk(service, 1))
    assert service.evict_idle(now=clock.now + 100) == []
    entry.busy = False
    assert service.evict_idle(now=clock.now + 100) == [1]


def test_capacity_limit(engine, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    service = StreamingService(engine, max_sessions=1, clock=clock)
    image, refs = images()
    service.start(1, image, refs)
    with expect("capacity", "limit is 1"):
        service.start(2, image, refs)
    service.end(1)
    service.start(2, image, refs)


def test_drain_closes_everything_and_refuses_new_sessions(service: StreamingService) -> None:
    image, refs = images()
    for sid in (1, 2, 3):
        service.start(sid, image, refs)
    service.step(2, chunk(service, 0), chunk(service, 1))
    assert sorted(service.drain()) == [1, 2, 3]
    with expect("unavailable", "shutting down"):
        service.start(4, image, refs)
    with expect("unknown_session", "shut down"):
        service.step(2, chunk(service, 0), chunk(service, 1))
    stats = service.stats()
    assert stats["open"] == 0 and stats["drained"] == 3 and stats["draining"]
    assert stats["chunks"] == 1 and stats["step_p50_s"] is not None


def test_constructor_rejects_bad_limits(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="idle_timeout_s"):
        StreamingService(engine, idle_timeout_s=0)
    with pytest.raises(ValueError, match="max_sessions"):
        StreamingService(engine, max_sessions=0)
