"""Settings of the embedded (one-machine) stack, read from the environment.

One home for every endpoint, port and credential the local services use. Clients (Dagster
resources, tests, the CLI) read the same settings, so a stack started by `lpm services up`
is found by everything else without further configuration.

Credentials: taken from the environment (``LPM_S3_ACCESS_KEY`` / ``LPM_S3_SECRET_KEY``) or,
when unset, generated once at random and kept in ``$LPM_HOME/secrets.env`` (mode 0600),
which lives outside the repository. They are never logged.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

BUCKETS = ("lpm-raw", "lpm-data", "lpm-models", "lpm-mlflow")
SECRETS_FILE = "secrets.env"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from exc


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def ensure_credentials(home: Path) -> tuple[str, str]:
    """Return (access_key, secret_key): from the environment, else generated once per home."""
    access = os.environ.get("LPM_S3_ACCESS_KEY")
    secret = os.environ.get("LPM_S3_SECRET_KEY")
    if access and secret:
        return access, secret
    path = home / SECRETS_FILE
    stored = _read_env_file(path)
    if "LPM_S3_ACCESS_KEY" not in stored or "LPM_S3_SECRET_KEY" not in stored:
        home.mkdir(parents=True, exist_ok=True)
        stored = {
            "LPM_S3_ACCESS_KEY": "lpm" + secrets.token_hex(6),
            "LPM_S3_SECRET_KEY": secrets.token_urlsafe(24),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# generated local credentials of the embedded stack; keep private\n")
            for key, value in stored.items():
                handle.write(f"{key}={value}\n")
    return access or stored["LPM_S3_ACCESS_KEY"], secret or stored["LPM_S3_SECRET_KEY"]


@dataclass(frozen=True)
class StackSettings:
    """Where the embedded services live and how clients reach them."""

    home: Path
    host: str = "127.0.0.1"
    s3_port: int = 9100
    mlflow_port: int = 5500
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    dagster_port: int = 3000
    mlflow_backend_uri: str = ""
    dagster_postgres_url: str = ""
    catalog_url: str = ""
    dagster_max_concurrent_runs: int = 1
    dagster_module: str = "orchestration.definitions"
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls) -> "StackSettings":
        """Read settings from ``LPM_*`` environment variables (defaults in parentheses of the README)."""
        home = Path(os.environ.get("LPM_HOME") or Path.cwd() / ".lpm").resolve()
        access, secret = ensure_credentials(home)
        return cls(
            home=home,
            host=os.environ.get("LPM_HOST", "127.0.0.1"),
            s3_port=_int_env("LPM_S3_PORT", 9100),
            mlflow_port=_int_env("LPM_MLFLOW_PORT", 5500),
            triton_http_port=_int_env("LPM_TRITON_HTTP_PORT", 8000),
            triton_grpc_port=_int_env("LPM_TRITON_GRPC_PORT", 8001),
            triton_metrics_port=_int_env("LPM_TRITON_METRICS_PORT", 8002),
            dagster_port=_int_env("LPM_DAGSTER_PORT", 3000),
            mlflow_backend_uri=os.environ.get("LPM_MLFLOW_BACKEND_URI", ""),
            dagster_postgres_url=os.environ.get("LPM_DAGSTER_POSTGRES_URL", ""),
            catalog_url=os.environ.get("LPM_CATALOG_URL", ""),
            dagster_max_concurrent_runs=_int_env("LPM_DAGSTER_MAX_CONCURRENT_RUNS", 1),
            dagster_module=os.environ.get("LPM_DAGSTER_MODULE") or "orchestration.definitions",
            access_key=access,
            secret_key=secret,
        )

    # --- derived locations -------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def triton_repository(self) -> Path:
        return self.home / "triton" / "models"

    @property
    def s3_address(self) -> str:
        """``host:port`` of the object store (the form the minio SDK takes)."""
        return f"{self.host}:{self.s3_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def triton_http_url(self) -> str:
        return f"{self.host}:{self.triton_http_port}"

    @property
    def triton_grpc_url(self) -> str:
        return f"{self.host}:{self.triton_grpc_port}"

    @property
    def triton_metrics_url(self) -> str:
        return f"{self.host}:{self.triton_metrics_port}"

    @property
    def dagster_url(self) -> str:
        return f"http://{self.host}:{self.dagster_port}"

    @property
    def catalog_db_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def mlflow_backend(self) -> str:
        return self.mlflow_backend_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    def client_env(self) -> dict[str, str]:
        """Environment variables that point clients (MLflow, boto3, Dagster) at this stack.

        ``StackSettings.from_env()`` under these variables reproduces this stack's endpoints,
        so child processes (Dagster runs, training launchers) find the same services.
        """
        return {
            "LPM_HOME": str(self.home),
            "LPM_HOST": self.host,
            "LPM_S3_PORT": str(self.s3_port),
            "LPM_MLFLOW_PORT": str(self.mlflow_port),
            "LPM_TRITON_HTTP_PORT": str(self.triton_http_port),
            "LPM_TRITON_GRPC_PORT": str(self.triton_grpc_port),
            "LPM_TRITON_METRICS_PORT": str(self.triton_metrics_port),
            "LPM_DAGSTER_PORT": str(self.dagster_port),
            "LPM_S3_ENDPOINT": self.s3_endpoint,
            "LPM_S3_ACCESS_KEY": self.access_key,
            "LPM_S3_SECRET_KEY": self.secret_key,
            "LPM_CATALOG_URL": self.catalog_db_url,
            "LPM_TRITON_GRPC_URL": self.triton_grpc_url,
            "LPM_TRITON_HTTP_URL": self.triton_http_url,
            "LPM_TRITON_METRICS_URL": self.triton_metrics_url,
            "LPM_TRITON_REPOSITORY": str(self.triton_repository),
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_DISABLE_TELEMETRY": "true",
        }
