"""Stack settings: environment round trip, generated credentials, port validation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.local.ports import free_ports, isolated_settings
from infra.local.settings import StackSettings

_LPM_VARS = ("LPM_HOME", "LPM_HOST", "LPM_S3_PORT", "LPM_MLFLOW_PORT", "LPM_TRITON_HTTP_PORT",
             "LPM_TRITON_GRPC_PORT", "LPM_TRITON_METRICS_PORT", "LPM_DAGSTER_PORT",
             "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY", "LPM_CATALOG_URL")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _LPM_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_client_env_reproduces_the_stack(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    original = isolated_settings(tmp_path)
    for key, value in original.client_env().items():
        clean_env.setenv(key, value)
    again = StackSettings.from_env()
    for prop in ("home", "s3_endpoint", "mlflow_uri", "triton_http_url", "triton_grpc_url",
                 "dagster_url", "catalog_db_url", "triton_repository", "dagster_home"):
        assert getattr(again, prop) == getattr(original, prop), prop
    assert (again.access_key, again.secret_key) == (original.access_key, original.secret_key)
    assert again.triton_metrics_port == original.triton_metrics_port


def test_generated_credentials_are_private_and_stable(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("LPM_HOME", str(tmp_path))
    first = StackSettings.from_env()
    second = StackSettings.from_env()
    assert len(first.secret_key) >= 8 and first.access_key
    assert (first.access_key, first.secret_key) == (second.access_key, second.secret_key)
    assert stat.S_IMODE((tmp_path / "secrets.env").stat().st_mode) == 0o600
    assert first.secret_key not in repr(first)


def test_a_bad_port_names_its_variable(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("LPM_HOME", str(tmp_path))
    clean_env.setenv("LPM_MLFLOW_PORT", "fifty")
    with pytest.raises(ValueError, match="LPM_MLFLOW_PORT"):
        StackSettings.from_env()


def test_isolated_settings_use_distinct_free_ports(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    ports = [settings.s3_port, settings.mlflow_port, settings.triton_http_port,
             settings.triton_grpc_port, settings.triton_metrics_port, settings.dagster_port]
    assert len(set(ports)) == 6 and all(p > 1024 for p in ports)
    assert settings.host == "127.0.0.1" and settings.home == tmp_path.resolve()
    assert len(set(free_ports(5))) == 5
