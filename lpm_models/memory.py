"""Process-wide heap tuning for a long-running generator (glibc ``mallopt``).

A streaming step allocates and frees the same tensors of a few MB every chunk. With glibc's
defaults such buffers are served by fresh ``mmap`` calls and handed back on free, so every chunk
pays thousands of page faults (measured on the tiny preset: ~4,600 per 0.24 s chunk in process,
~5,600 inside the Triton Python backend stub, a few ms each chunk). Raising the mmap and trim
thresholds keeps freed buffers in the heap for reuse: faults drop to ~0 per chunk and the RSS
plateaus at the working set instead of breathing. The cost is that a peak stays resident,
which is what a dedicated serving process wants.

``OnlineEngine`` applies it when built, in every process that builds one (the Triton stub, an
in-process bench, a Dagster run, tests); it keeps up to ``TRIM_THRESHOLD_BYTES`` of freed heap.
Opt out with ``LPM_MALLOC_TUNING=0``; for Triton's model instances it must be set in the
environment ``lpm services up`` starts Triton from (the stub inherits it).

The opposite need arises where a process keeps many small tensors while it churns through large
temporary ones: Base LPM's latent cache decodes a clip (tens of MB of frames), encodes its windows
and keeps ~100 KB of latents per window. Under glibc's dynamic threshold the freed frame buffers
raise the mmap threshold, later ones land in the heap between the kept latents, and the heap
cannot shrink: measured +120 MB of RSS per clip (9.4 GB per rank on a 157-clip dataset, which
ran a 24 GB machine out of memory) for 46 MB of kept tensors. ``return_large_buffers`` serves
large allocations with mmap for such a block, so each is handed back on free (RSS flat).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at HEAP_MAX_SIZE / 2 (32 MiB on 64-bit); larger values are refused.
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 1 * 2**30
ENV = "LPM_MALLOC_TUNING"

_applied: bool | None = None


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Ask glibc malloc to keep freed buffers below ``mmap_threshold`` for reuse.

    Idempotent; returns whether the tuning is in effect (False off glibc, or when
    ``LPM_MALLOC_TUNING`` is 0/false/no/off).
    """
    global _applied
    if _applied is not None:
        return _applied
    if _tuning_off():
        log.info("heap tuning off (%s)", ENV)
        _applied = False
        return False
    mallopt = _mallopt()
    if mallopt is None:
        log.info("heap tuning unavailable (no glibc mallopt)")
        _applied = False
        return False
    mmap_ok = bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)))  # mallopt returns 1 on success
    trim_ok = bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    ok = mmap_ok and trim_ok
    log.info("heap tuning: mmap threshold %d MiB %s, trim threshold %d MiB %s", mmap_threshold >> 20,
             "set" if mmap_ok else "refused", trim_threshold >> 20, "set" if trim_ok else "refused")
    _applied = ok
    return ok


def _tuning_off() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off")


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` or None (musl, macOS, Windows)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


@contextmanager
def return_large_buffers(threshold: int = 2**20, after: int = MMAP_THRESHOLD_BYTES) -> Iterator[bool]:
    """Inside the block, allocations of ``threshold`` bytes or more are mmapped (returned to the OS on free).

    On exit the threshold is set to ``after`` (glibc's own ceiling for its dynamic threshold, so
    the process continues as a warmed-up glibc would). Yields whether the setting took effect
    (False off glibc or with ``LPM_MALLOC_TUNING`` off).
    """
    mallopt = None if _tuning_off() else _mallopt()
    if mallopt is None or not mallopt(M_MMAP_THRESHOLD, int(threshold)):
        yield False
        return
    try:
        yield True
    finally:
        mallopt(M_MMAP_THRESHOLD, int(after))
