"""The Dagster instance config the stack writes: valid for Dagster, no secrets in the file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
import yaml

from infra.local.dagster_dev import POSTGRES_URL_ENV, instance_config, write_instance_yaml
from infra.local.ports import isolated_settings


def test_default_instance_is_sqlite_without_telemetry(tmp_path: Path) -> None:
    settings = replace(isolated_settings(tmp_path), dagster_max_concurrent_runs=3)
    path = write_instance_yaml(settings)
    assert path == settings.dagster_home / "dagster.yaml"
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    try:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.get_runs() == []
        assert (settings.dagster_home / "storage" / "history" / "runs.db").exists()
        assert instance.telemetry_enabled is False
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 3
    finally:
        instance.dispose()


def test_postgres_url_is_referenced_not_written(tmp_path: Path) -> None:
    url = "postgresql://lpm:s3cr3t@db.example:5432/dagster"
    config = instance_config(replace(isolated_settings(tmp_path), dagster_postgres_url=url))
    assert config["storage"] == {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
    assert "s3cr3t" not in yaml.safe_dump(config)


@pytest.mark.integration
def test_postgres_instance_works_against_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv(POSTGRES_URL_ENV, postgres_url)
    settings = replace(isolated_settings(tmp_path), dagster_postgres_url=postgres_url)
    write_instance_yaml(settings)
    assert postgres_url not in (settings.dagster_home / "dagster.yaml").read_text()
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_runs() == []
    finally:
        instance.dispose()
