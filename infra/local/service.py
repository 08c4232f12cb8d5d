"""The contract every embedded service implements, plus loopback HTTP probe helpers."""

from __future__ import annotations

import abc
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from infra.local.settings import StackSettings

# Probes talk to loopback services: never route them through an HTTP(S)_PROXY of the user.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Probe:
    """Outcome of one health check."""

    healthy: bool
    detail: str = ""


class ServiceFailed(RuntimeError):
    """A service reported an error that waiting will not fix (e.g. a broken code location)."""


class Service(abc.ABC):
    """One embedded service: how to prepare, launch, probe and finish starting it."""

    name: ClassVar[str]
    summary: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    stop_timeout: ClassVar[float] = 20.0

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    @property
    def state_dir(self) -> Path:
        """Where this service keeps its data under the stack's home."""
        return self.settings.home / self.name

    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the service."""

    @abc.abstractmethod
    def ports(self) -> dict[str, int]:
        """Ports the service listens on, keyed by the environment variable that sets each."""

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """Command line (no secrets: those travel in ``env``)."""

    @abc.abstractmethod
    def probe(self) -> Probe:
        """One health check; raise ServiceFailed for errors that waiting cannot fix."""

    def prepare(self) -> None:
        """Idempotent one-time setup before launch (formatting, config files, directories)."""

    def env(self) -> dict[str, str]:
        """Environment of the service process: ours plus the service's own variables."""
        return dict(os.environ)

    def after_healthy(self) -> None:
        """Work to do once the service answers (e.g. creating buckets); must be idempotent."""


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body); status 0 when nothing answers."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def http_post_json(url: str, payload: dict[str, Any], timeout: float = 5.0) -> tuple[int, Any]:
    """POST a JSON body; returns (status, decoded JSON or None)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None
