"""A real embedded stack for integration tests: private home, free ports, torn down at the end.

Wire one session-wide stack in ``tests/conftest.py``::

    from tests.infra.stack import running_stack

    @pytest.fixture(scope="session")
    def lpm_stack(tmp_path_factory):
        with running_stack(tmp_path_factory) as stack:
            yield stack

and let each test ask for the services it needs (started once, on first request)::

    def test_upload(lpm_stack):
        settings = lpm_stack.require("objectstore").settings

``lpm_stack.activated()`` puts the stack's client environment (``MLFLOW_TRACKING_URI``,
``LPM_S3_*``, ``AWS_*``, ...) into ``os.environ`` for the duration of a ``with`` block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from infra.local.ports import isolated_settings
from infra.local.services import ServiceStatus, Stack
from infra.local.settings import StackSettings


class SessionStack:
    """Services of one private home; ``require`` starts missing ones (idempotent)."""

    def __init__(self, settings: StackSettings, timeout: float = 240.0) -> None:
        self.settings = settings
        self.stack = Stack(settings)
        self.timeout = timeout
        self.started: list[ServiceStatus] = []

    def require(self, *names: str) -> "SessionStack":
        """Make sure the named services (and their dependencies) run and are healthy."""
        for status in self.stack.up(list(names), timeout=self.timeout):
            if not status.already_running:
                self.started.append(status)
        return self

    def client_env(self) -> dict[str, str]:
        return self.settings.client_env()

    @contextmanager
    def activated(self) -> Iterator[dict[str, str]]:
        """Temporarily export the stack's client environment into ``os.environ``."""
        env = self.client_env()
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    services: tuple[str, ...] | list[str] = (),
    timeout: float = 240.0,
) -> Iterator[SessionStack]:
    """A SessionStack in a fresh temporary home; ``services`` are started up front.

    Every service started through it is stopped (by PID) when the block ends.
    """
    home = tmp_path_factory.mktemp("lpm-home")
    session = SessionStack(isolated_settings(home), timeout=timeout)
    try:
        if services:
            session.require(*services)
        yield session
    finally:
        session.stack.down()
