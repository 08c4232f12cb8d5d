"""MLflow on PostgreSQL (LPM_MLFLOW_BACKEND_URI): runs land in the database, the URL stays off argv."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from infra.local.ports import isolated_settings
from infra.local.services import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_mlflow_server_uses_the_postgres_backend(tmp_path: Path, postgres_url: str) -> None:
    import mlflow

    settings = replace(isolated_settings(tmp_path), mlflow_backend_uri=postgres_url)
    stack = Stack(settings)
    try:
        (_, server) = stack.up(["mlflow"])
        client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri)
        experiment = client.create_experiment("pg-backend")
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "store", "postgres")
        cmdline = Path(f"/proc/{server.pid}/cmdline")
        if cmdline.exists():
            assert b"postgresql" not in cmdline.read_bytes()
    finally:
        stack.down()
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT value FROM params WHERE run_uuid = :r AND key = 'store'"),
                                {"r": run.info.run_id}).all()
    finally:
        engine.dispose()
    assert rows == [("postgres",)]
