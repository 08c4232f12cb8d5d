"""Object store: the JuiceFS S3 gateway (MinIO's S3 server code) over a local directory.

Metadata lives in SQLite and objects in ``$LPM_HOME/objects/data``; every top-level
directory is a bucket (``--multi-buckets``). Access and secret key come from the stack
settings and reach the gateway only through its environment.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from infra.local.binaries import juicefs_binary
from infra.local.service import Probe, Service, http_get
from infra.local.settings import BUCKETS, StackSettings

log = logging.getLogger(__name__)

VOLUME_NAME = "lpm"


def minio_client(settings: StackSettings) -> Minio:
    """A MinIO SDK client for the local object store."""
    return Minio(
        settings.s3_address,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=False,
        region="us-east-1",
    )


class ObjectStore(Service):
    """JuiceFS gateway speaking the S3 API on ``settings.s3_port``."""

    name = "objectstore"
    summary = "S3 API object store (JuiceFS gateway, MinIO server code)"

    @property
    def state_dir(self) -> Path:
        return self.settings.home / "objects"

    @property
    def meta_url(self) -> str:
        return f"sqlite3://{self.state_dir / 'meta.db'}"

    def url(self) -> str:
        return self.settings.s3_endpoint

    def ports(self) -> dict[str, int]:
        return {"LPM_S3_PORT": self.settings.s3_port}

    def prepare(self) -> None:
        """Validate credentials; format the volume on first use."""
        if len(self.settings.access_key) < 3 or len(self.settings.secret_key) < 8:
            raise ValueError(
                "LPM_S3_ACCESS_KEY needs >= 3 and LPM_S3_SECRET_KEY >= 8 characters "
                "(MinIO's rule); set both or unset both to have them generated"
            )
        if (self.state_dir / "meta.db").exists():
            return
        data_dir = self.state_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(juicefs_binary()), "--no-agent", "--quiet", "format", self.meta_url, VOLUME_NAME,
            "--storage", "file", "--bucket", f"{data_dir}/", "--trash-days", "0",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            (self.state_dir / "meta.db").unlink(missing_ok=True)
            raise RuntimeError(
                f"`juicefs format` failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
        log.info("formatted object store volume in %s", self.state_dir)

    def argv(self) -> list[str]:
        host = self.settings.host
        return [
            str(juicefs_binary()), "--no-agent", "gateway", self.meta_url,
            f"{host}:{self.settings.s3_port}",
            "--multi-buckets", "--keep-etag", "--object-tag", "--object-meta",
            "--no-banner", "--no-usage-report",
            "--metrics", f"{host}:0",
            # objects already sit on local disk: a read cache would only duplicate them
            "--cache-size", "0", "--cache-dir", str(self.state_dir / "cache"),
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["MINIO_ROOT_USER"] = self.settings.access_key
        env["MINIO_ROOT_PASSWORD"] = self.settings.secret_key
        return env

    def probe(self) -> Probe:
        status, _ = http_get(f"{self.url()}/minio/health/live")
        return Probe(status == 200, f"/minio/health/live -> {status or 'no answer'}")

    def after_healthy(self) -> None:
        """Create the platform's buckets (authenticated, so wrong credentials fail here)."""
        client = minio_client(self.settings)
        for bucket in BUCKETS:
            try:
                if not client.bucket_exists(bucket):
                    client.make_bucket(bucket)
                    log.info("created bucket %s", bucket)
            except S3Error as exc:
                raise RuntimeError(
                    f"object store rejected bucket setup for {bucket!r} ({exc.code}); the "
                    f"credentials in the environment differ from those it was started with? "
                    f"run `lpm services down` and `up` again"
                ) from exc
            except HTTPError as exc:
                raise RuntimeError(f"object store at {self.url()} stopped answering: {exc}") from exc
