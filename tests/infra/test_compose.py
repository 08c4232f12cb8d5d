"""The production compose file: parses, every service is checkable, wiring matches the code."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local.dagster_dev import instance_config
from infra.local.settings import BUCKETS, StackSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "infra" / "compose"
# Loopback-only reconstruction of local endpoints; containers get full URLs instead.
LOCAL_ONLY = re.compile(r"^LPM_(HOST|.*_PORT)$")
DAGSTER_SERVICES = ("dagster-webserver", "dagster-daemon")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_stack_has_the_production_services(services: dict[str, Any]) -> None:
    assert {"postgres", "minio", "mlflow", "triton", *DAGSTER_SERVICES} <= set(services)


def test_every_service_has_an_image_and_long_running_ones_a_healthcheck(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"
        if _one_shot(service):
            continue
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} has no healthcheck"


def test_dependencies_wait_for_health_or_completion(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            wanted = ("service_completed_successfully" if _one_shot(services[target])
                      else "service_healthy")
            assert rule["condition"] == wanted, f"{name} -> {target}: {rule}"


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_triton_has_shared_memory_and_the_local_launcher(services: dict[str, Any]) -> None:
    triton = services["triton"]
    assert triton["shm_size"]
    assert triton["command"][-3:] == ["-m", "infra.local.foreground", "triton"]
    assert _env(triton)["LPM_TRITON_REPOSITORY"] == "/var/lib/lpm/triton/models"


def _env_vars_read_by(package: Path) -> set[str]:
    """Names the code requires through ``dg.EnvVar("...")``."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        names.update(re.findall(r"EnvVar\(\s*[\"']([A-Z0-9_]+)[\"']", path.read_text()))
    return names


def test_dagster_containers_get_every_variable_the_code_reads(services: dict[str, Any]) -> None:
    client_keys = {k for k in StackSettings(home=Path("/x")).client_env() if not LOCAL_ONLY.match(k)}
    required = client_keys | _env_vars_read_by(ROOT / "orchestration")
    for name in DAGSTER_SERVICES:
        missing = required - set(_env(services[name]))
        assert not missing, f"{name} lacks {sorted(missing)}"
    assert _env(services["mlflow"])["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "MLFLOW_BACKEND_STORE_URI" in _env(services["mlflow"])


def test_buckets_match_the_local_stack(services: dict[str, Any]) -> None:
    script = " ".join(services["buckets"]["command"])
    assert all(bucket in script for bucket in BUCKETS)


def test_env_example_covers_required_variables_with_placeholders(
    compose: dict[str, Any],
) -> None:
    text = (COMPOSE_DIR / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    example = dict(
        line.split("=", 1) for line in (COMPOSE_DIR / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required and required <= set(example)
    for key in required:
        if "KEY" in key or "PASSWORD" in key:
            assert example[key].startswith("change-me"), f"{key} looks like a real secret"
    assert not (COMPOSE_DIR / ".env").exists(), "a real .env must not live in the repository"


def test_dagster_yaml_matches_what_the_local_stack_writes() -> None:
    written = yaml.safe_load((COMPOSE_DIR / "dagster" / "dagster.yaml").read_text())
    settings = replace(StackSettings(home=Path("/x")), dagster_postgres_url="postgresql://db")
    assert written == instance_config(settings)


def test_files_referenced_by_compose_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
