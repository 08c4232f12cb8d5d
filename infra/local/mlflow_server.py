"""MLflow tracking server: SQLite (or PostgreSQL) backend, artifacts proxied to the object store."""

from __future__ import annotations

from infra.local.binaries import script
from infra.local.service import Probe, Service, http_get

ARTIFACTS_DESTINATION = "s3://lpm-mlflow/"


class MlflowServer(Service):
    """``mlflow server`` with one worker, serving artifacts from ``s3://lpm-mlflow/``."""

    name = "mlflow"
    summary = "MLflow tracking server and model registry"
    requires = ("objectstore",)

    def url(self) -> str:
        return self.settings.mlflow_uri

    def ports(self) -> dict[str, int]:
        return {"LPM_MLFLOW_PORT": self.settings.mlflow_port}

    def prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        backend = self.settings.mlflow_backend
        if backend.startswith("sqlite:///"):
            self.settings.home.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        # The backend URI may hold a database password: it goes in the environment instead.
        return [
            str(script("mlflow", "mlflow")), "server",
            "--host", self.settings.host,
            "--port", str(self.settings.mlflow_port),
            "--workers", "1",
            "--serve-artifacts",
            "--artifacts-destination", ARTIFACTS_DESTINATION,
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "MLFLOW_BACKEND_STORE_URI": self.settings.mlflow_backend,
                "MLFLOW_S3_ENDPOINT_URL": self.settings.s3_endpoint,
                "AWS_ACCESS_KEY_ID": self.settings.access_key,
                "AWS_SECRET_ACCESS_KEY": self.settings.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "MLFLOW_TMP_DIR": str(self.state_dir / "tmp"),
            }
        )
        return env

    def probe(self) -> Probe:
        status, body = http_get(f"{self.url()}/health")
        return Probe(status == 200, f"/health -> {status or 'no answer'} {body[:40]!r}")
