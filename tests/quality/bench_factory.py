"""Shared builders for the LPM-Bench case / runner tests (no tests here): one small case set per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality.bench.cases import CaseSet, load_case_set, parse_spec

SPEC = """
name: test-small
description: four 4-second cases for tests
size: 128
fps: 25
identities: {seed: 1001, candidates: 6, pool: 18, count: 4}
corpus: {seed: 9001, conversations: 2, duration_s: 4.04}
subsets:
  speaking: {count: 1, select: speaking}
  listening: {count: 1, select: listening}
  text_motion: {count: 1, select: any, prompt_every_s: 1.5}
  character_generalisation: {count: 1, styles: [sketch]}
"""


@pytest.fixture(scope="session")
def bench_cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    """The ``test-small`` case set (built once per test session; ~20 s)."""
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (needed to synthesise held-out conversations)")
    cache: Path = tmp_path_factory.mktemp("bench-cache")
    return load_case_set(parse_spec(SPEC), cache)
