"""Object store resource (MinIO / S3 API) used by every asset that reads or writes data."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from minio import Minio
from minio.error import S3Error
from pydantic import PrivateAttr

log = logging.getLogger(__name__)

SHA_META = "sha256"
PART_SIZE = 16 * 1024 * 1024


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Streaming SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class ObjectStoreResource(dg.ConfigurableResource):
    """MinIO-API object store. Locally the embedded gateway; in production a MinIO cluster.

    Credentials come from the environment (``dg.EnvVar``); every upload stores the SHA-256 of
    its content as object metadata and every download verifies it.
    """

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    _client: Minio | None = PrivateAttr(default=None)

    def client(self) -> Minio:
        if self._client is None:
            url = urlparse(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
            self._client = Minio(
                url.netloc,
                access_key=self.access_key,
                secret_key=self.secret_key,
                secure=url.scheme == "https",
                region=self.region,
            )
        return self._client

    def ensure_bucket(self, bucket: str) -> None:
        if not self.client().bucket_exists(bucket):
            self.client().make_bucket(bucket)

    def put_file(self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream",
                 metadata: dict[str, str] | None = None) -> dict[str, str | int]:
        """Upload a file (multipart above 16 MiB) with its SHA-256 recorded; returns uri, etag, sha256, size."""
        self.ensure_bucket(bucket)
        digest = sha256_file(path)
        meta = {SHA_META: digest, **(metadata or {})}
        result = self.client().fput_object(bucket, key, str(path), content_type=content_type,
                                           metadata=meta, part_size=PART_SIZE)
        return {"uri": f"s3://{bucket}/{key}", "etag": result.etag, "sha256": digest,
                "size": path.stat().st_size}

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        import io

        self.ensure_bucket(bucket)
        meta = {SHA_META: hashlib.sha256(data).hexdigest()}
        self.client().put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type, metadata=meta)
        return f"s3://{bucket}/{key}"

    def get_file(self, bucket: str, key: str, path: Path, verify: bool = True) -> Path:
        """Download an object to ``path``; raises ValueError when the stored SHA-256 does not match."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client().fget_object(bucket, key, str(path))
        if verify:
            expected = self.stat(bucket, key).get(SHA_META)
            if expected and sha256_file(path) != expected:
                raise ValueError(f"checksum mismatch for s3://{bucket}/{key}: object is corrupt or was overwritten")
        return path

    def get_bytes(self, bucket: str, key: str) -> bytes:
        response = self.client().get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stat(self, bucket: str, key: str) -> dict[str, str | int]:
        """Size, etag and user metadata (lower-case keys without the x-amz-meta- prefix)."""
        info = self.client().stat_object(bucket, key)
        meta = {k.lower().removeprefix("x-amz-meta-"): v for k, v in (info.metadata or {}).items()
                if k.lower().startswith("x-amz-meta-")}
        return {"size": info.size, "etag": info.etag, **meta}

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.client().stat_object(bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under a prefix (recursive), sorted."""
        if not self.client().bucket_exists(bucket):
            return []
        return sorted(o.object_name for o in self.client().list_objects(bucket, prefix=prefix, recursive=True)
                      if not o.is_dir)

    def presign(self, bucket: str, key: str, expires_s: int = 3600) -> str:
        return self.client().presigned_get_object(bucket, key, expires=timedelta(seconds=expires_s))
