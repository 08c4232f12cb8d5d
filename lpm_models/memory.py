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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

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
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        log.info("heap tuning off (%s)", ENV)
        _applied = False
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to tune
        log.info("heap tuning unavailable (no glibc mallopt)")
        _applied = False
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_ok = bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)))  # mallopt returns 1 on success
    trim_ok = bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    ok = mmap_ok and trim_ok
    log.info("heap tuning: mmap threshold %d MiB %s, trim threshold %d MiB %s", mmap_threshold >> 20,
             "set" if mmap_ok else "refused", trim_threshold >> 20, "set" if trim_ok else "refused")
    _applied = ok
    return ok
