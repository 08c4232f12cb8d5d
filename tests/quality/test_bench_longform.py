"""LPM-Bench long-form subset (marker ``slow``): a 10-minute held-out case, only built with ``long=True``,
on which ground truth still beats the still image and identity drift is measurable."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality.bench.cases import load_case_set, parse_spec
from quality.bench.runner import run_bench
from quality.bench.systems import GroundTruthSystem, StillSystem

pytestmark = pytest.mark.slow

SPEC = """
name: test-long
size: 128
fps: 25
identities: {seed: 1001, candidates: 6, pool: 18, count: 4}
corpus: {seed: 9001, conversations: 1, duration_s: 4.04}
subsets:
  speaking: {count: 1, select: speaking}
long_form:
  seed: 9002
  conversations: 1
  duration_s: 600.04
  subsets:
    long_form: {count: 1, select: any}
"""


def test_long_form_case_is_ten_minutes_and_only_on_request(tmp_path: Path) -> None:
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    spec = parse_spec(SPEC)
    short = load_case_set(spec, tmp_path)
    assert [c.subset for c in short.cases] == ["speaking"]
    full = load_case_set(spec, tmp_path, long=True)
    long = next(c for c in full.cases if c.subset == "long_form")
    assert long.duration_s >= 600.0 and long.n_frames == 15001
    result = run_bench(full.select(["long_form"]), [GroundTruthSystem(), StillSystem()], tmp_path / "run")
    truth, still = result.rows_of("ground_truth")[0], result.rows_of("still")[0]
    assert truth["motion"] > still["motion"] and truth["overall"] > still["overall"]
    assert truth["identity.identity_drift_per_min"] is not None and abs(truth["identity.identity_drift_per_min"]) < 0.05
