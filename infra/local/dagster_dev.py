"""Dagster: ``dagster dev`` (webserver + daemon + code server) over ``orchestration.definitions``.

The module is ``settings.dagster_module`` (``LPM_DAGSTER_MODULE``), resolved from the project root.

The instance config (``$DAGSTER_HOME/dagster.yaml``) is written at every start from the stack
settings: telemetry off, SQLite storage under ``DAGSTER_HOME`` by default, PostgreSQL storage
when ``LPM_DAGSTER_POSTGRES_URL`` is set (referenced by name, so the URL and its password
never land in the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.local.binaries import project_root, script
from infra.local.service import Probe, Service, ServiceFailed, http_get, http_post_json
from infra.local.settings import StackSettings

POSTGRES_URL_ENV = "LPM_DAGSTER_POSTGRES_URL"
# Importing torch-heavy definitions on 2 cores can take a while.
CODE_SERVER_STARTUP_TIMEOUT_S = 300

_WORKSPACE_QUERY = """
query LpmHealth {
  version
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def instance_config(settings: StackSettings) -> dict[str, Any]:
    """The Dagster instance configuration for this stack (a ``dagster.yaml`` mapping)."""
    if settings.dagster_postgres_url:
        storage: dict[str, Any] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
    else:
        storage = {"sqlite": {"base_dir": str(settings.dagster_home / "storage")}}
    return {
        "telemetry": {"enabled": False},
        "storage": storage,
        "concurrency": {"runs": {"max_concurrent_runs": settings.dagster_max_concurrent_runs}},
        "code_servers": {"local_startup_timeout": CODE_SERVER_STARTUP_TIMEOUT_S},
    }


def write_instance_yaml(settings: StackSettings) -> Path:
    """Write ``dagster.yaml`` into ``settings.dagster_home`` and return its path."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    path = settings.dagster_home / "dagster.yaml"
    header = "# written by `lpm services up` from the LPM_* environment; edits are overwritten\n"
    path.write_text(header + yaml.safe_dump(instance_config(settings), sort_keys=False))
    return path


class DagsterDev(Service):
    """``dagster dev`` bound to loopback with the stack's client environment."""

    name = "dagster"
    summary = "Dagster webserver, daemon and code server (dagster dev)"
    stop_timeout = 40.0

    def url(self) -> str:
        return self.settings.dagster_url

    def ports(self) -> dict[str, int]:
        return {"LPM_DAGSTER_PORT": self.settings.dagster_port}

    def prepare(self) -> None:
        write_instance_yaml(self.settings)

    def argv(self) -> list[str]:
        return [
            str(script("dagster", "dagster")), "dev",
            "-m", self.settings.dagster_module,
            "-d", str(project_root()),
            "-h", self.settings.host,
            "-p", str(self.settings.dagster_port),
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(self.settings.client_env())
        env["DAGSTER_HOME"] = str(self.settings.dagster_home)
        env["DAGSTER_DISABLE_TELEMETRY"] = "true"
        if self.settings.dagster_postgres_url:
            env[POSTGRES_URL_ENV] = self.settings.dagster_postgres_url
        return env

    def probe(self) -> Probe:
        status, _ = http_get(f"{self.url()}/server_info")
        if status != 200:
            return Probe(False, f"/server_info -> {status or 'no answer'}")
        status, body = http_post_json(f"{self.url()}/graphql", {"query": _WORKSPACE_QUERY})
        if status != 200 or not isinstance(body, dict) or "data" not in body:
            return Probe(False, f"/graphql -> {status or 'no answer'}")
        return _workspace_probe(body["data"])


def _workspace_probe(data: dict[str, Any]) -> Probe:
    """Healthy once every code location is loaded; a load error is fatal."""
    workspace = data.get("workspaceOrError") or {}
    if workspace.get("__typename") == "PythonError":
        raise ServiceFailed(f"Dagster workspace error: {workspace.get('message', '')}")
    entries = workspace.get("locationEntries") or []
    if not entries:
        return Probe(False, "no code location yet")
    for entry in entries:
        location = entry.get("locationOrLoadError") or {}
        if location.get("__typename") == "PythonError":
            raise ServiceFailed(
                f"Dagster code location {entry.get('name')!r} failed to load: "
                f"{location.get('message', '').strip()}"
            )
        if entry.get("loadStatus") != "LOADED":
            return Probe(False, f"code location {entry.get('name')!r} {entry.get('loadStatus')}")
    return Probe(True, f"dagster {data.get('version', '?')}, {len(entries)} code location(s)")
