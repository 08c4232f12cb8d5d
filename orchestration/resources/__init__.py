"""Dagster resources, configured from the environment (see infra/local/settings.py for names)."""

from __future__ import annotations

import dagster as dg

from orchestration.resources.catalog import CatalogResource
from orchestration.resources.launcher import TrainingLauncher
from orchestration.resources.object_store import ObjectStoreResource
from orchestration.resources.tracking import MlflowResource
from orchestration.resources.triton import TritonResource

__all__ = [
    "CatalogResource", "MlflowResource", "ObjectStoreResource", "TrainingLauncher", "TritonResource", "default_resources",
    "object_store_from_env",
]


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources bound to environment variables; values are resolved when a run starts."""
    return {
        "object_store": ObjectStoreResource(
            endpoint=dg.EnvVar("LPM_S3_ENDPOINT"),
            access_key=dg.EnvVar("LPM_S3_ACCESS_KEY"),
            secret_key=dg.EnvVar("LPM_S3_SECRET_KEY"),
        ),
        "mlflow": MlflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI")),
        "catalog": CatalogResource(url=dg.EnvVar("LPM_CATALOG_URL")),
        "triton": TritonResource(
            grpc_url=dg.EnvVar("LPM_TRITON_GRPC_URL"),
            http_url=dg.EnvVar("LPM_TRITON_HTTP_URL"),
            repository=dg.EnvVar("LPM_TRITON_REPOSITORY"),
            metrics_url=dg.EnvVar("LPM_TRITON_METRICS_URL"),
        ),
        "launcher": TrainingLauncher(),
    }


def object_store_from_env() -> ObjectStoreResource:
    """An object store resource with values read now (for code running outside a Dagster run)."""
    import os

    missing = [n for n in ("LPM_S3_ENDPOINT", "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY") if not os.environ.get(n)]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)} (or run `eval $(lpm services env)`) to reach the object store")
    return ObjectStoreResource(endpoint=os.environ["LPM_S3_ENDPOINT"], access_key=os.environ["LPM_S3_ACCESS_KEY"],
                               secret_key=os.environ["LPM_S3_SECRET_KEY"])
