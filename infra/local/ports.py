"""Free loopback ports and throw-away stack settings (tests, benchmarks)."""

from __future__ import annotations

import errno
import os
import random
import socket
from dataclasses import replace
from pathlib import Path

from infra.local.settings import StackSettings, ensure_credentials

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 20000


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _below_ephemeral_range() -> range | None:
    """Ports under the kernel's ephemeral range (Linux), where outgoing connections never land."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(_LOWEST_PORT, low) if low - _LOWEST_PORT >= 1000 else None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that are free on ``host`` now.

    Chosen below the ephemeral range where the OS exposes it, so a port released by a
    stopped service is not taken by some client's outgoing connection before a restart.
    """
    candidates = _below_ephemeral_range()
    ports: list[int] = []
    if candidates is not None:
        for port in random.sample(candidates, min(len(candidates), 50 * count)):
            if port_free(host, port):
                ports.append(port)
                if len(ports) == count:
                    return ports
    while len(ports) < count:  # fall back to what the OS hands out
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def isolated_settings(home: Path, host: str = "127.0.0.1") -> StackSettings:
    """Settings for a private stack in ``home`` on free ports, SQLite everywhere.

    Credentials come from ``LPM_S3_ACCESS_KEY``/``LPM_S3_SECRET_KEY`` if set, else are
    generated into ``home``; ``LPM_DAGSTER_MODULE`` is honoured. Nothing of the user's
    default stack is touched.
    """
    home = home.resolve()
    access, secret = ensure_credentials(home)
    s3, mlflow, http, grpc, metrics, dagster = free_ports(6, host)
    return replace(
        StackSettings(home=home),
        host=host,
        s3_port=s3,
        mlflow_port=mlflow,
        triton_http_port=http,
        triton_grpc_port=grpc,
        triton_metrics_port=metrics,
        dagster_port=dagster,
        dagster_module=os.environ.get("LPM_DAGSTER_MODULE") or StackSettings.dagster_module,
        access_key=access,
        secret_key=secret,
    )
