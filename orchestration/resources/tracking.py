"""MLflow tracking resource: every run carries the Dagster run id, asset and partition."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking server and model registry (local server or a production deployment)."""

    tracking_uri: str
    experiment: str = "lpm"

    def _mlflow(self) -> Any:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    @contextmanager
    def start_run(self, context: dg.AssetExecutionContext | None, run_name: str,
                  tags: dict[str, str] | None = None, experiment: str | None = None) -> Iterator[Any]:
        """Start an MLflow run tagged with the Dagster run id, asset key and partition."""
        mlflow = self._mlflow()
        mlflow.set_experiment(experiment or self.experiment)
        run_tags = dict(tags or {})
        if context is not None:
            run_tags["dagster.run_id"] = context.run.run_id
            run_tags["dagster.asset"] = context.asset_key.to_user_string()
            if context.has_partition_key:
                run_tags["dagster.partition"] = context.partition_key
        with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
            yield run

    def run_url(self, run_id: str) -> str:
        """Link to a run in the MLflow UI."""
        experiment_id = self.client().get_run(run_id).info.experiment_id
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
