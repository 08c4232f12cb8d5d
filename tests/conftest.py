"""Shared fixtures: one real embedded stack per test session (started only when a test asks)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.stack import running_stack


@pytest.fixture(scope="session")
def lpm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The embedded stack on free ports in a temporary LPM_HOME; `lpm_stack.require(...)` starts services."""
    with running_stack(tmp_path_factory) as stack:
        yield stack
