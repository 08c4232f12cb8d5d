"""Heap tuning (lpm_models.memory): a stream's freed buffers are reused, not faulted in again every chunk."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
torch.set_num_threads(1)
from lpm_models.memory import retain_freed_memory
from lpm_models.online.bench import build_engine
from serving.probe import card_image, speech_like
engine = build_engine(None, None)  # the random-init tiny engine; building it applies the tuning
print("applied", retain_freed_memory())
n, rate = engine.chunk_samples, engine.model.cfg.audio.sample_rate
audio = speech_like(12 * engine.chunk_seconds, rate, 0)
session = engine.start(card_image(), seed=0)
for k in range(4):
    engine.step(session, audio[k * n:(k + 1) * n], audio[k * n:(k + 1) * n])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for k in range(4, 10):
    engine.step(session, audio[k * n:(k + 1) * n], audio[k * n:(k + 1) * n])
print("faults", (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 6)
"""


def run_script(script: str, tuning: str, *args: str) -> dict[str, str]:
    """Run ``script`` in a fresh interpreter (its own heap); its ``name value`` lines as a dict."""
    env = {**os.environ, "LPM_MALLOC_TUNING": tuning}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split() for line in out.splitlines())


def run_probe(tuning: str) -> tuple[bool, int]:
    values = run_script(PROBE, tuning)
    return values["applied"] == "True", int(values["faults"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_heap_reuses_freed_buffers_without_page_faults() -> None:
    applied, faults = run_probe("1")
    assert applied
    # per chunk of the tiny preset: ~4,600 page faults with glibc's defaults (measured), ~10 tuned
    assert faults < 500


def test_tuning_can_be_switched_off() -> None:
    applied, _ = run_probe("0")
    assert not applied


CHURN = """
import sys
import numpy as np
from lpm_models.bench_report import current_rss_mb
from lpm_models.memory import return_large_buffers

def churn(rounds):
    # what building Base LPM's latent cache does: decode a clip (large, freed), keep small results
    kept = []
    for r in range(rounds):
        frames = np.ones((20 + r % 7) * 2**20 // 8)  # 20-26 MB, a new size each time
        work = [np.ones(2**20 // 8 * (1 + k % 5)) for k in range(8)]  # 1-5 MB temporaries
        kept.append(np.ones(100_000 // 8) * frames[0])  # ~100 KB of latents survive
        del frames, work
    return kept

with return_large_buffers() as ok:
    print("applied", ok)
    start = current_rss_mb()
    kept = churn(int(sys.argv[1]))
    print("growth", int(current_rss_mb() - start))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_large_temporaries_are_returned_while_small_results_are_kept() -> None:
    values = run_script(CHURN, "1", "60")
    assert values["applied"] == "True"
    # 60 rounds keep 6 MB; freed temporaries of up to 40 MB a round must not stay resident
    assert int(values["growth"]) < 40
