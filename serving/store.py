"""Weights files for serving: object store access and a verified local cache.

``fetch_verified(ref, cache_dir)`` returns a local path whose SHA-256 equals ``ref.sha256``
(downloading ``s3://`` objects into the cache, reading ``file://`` in place) and refuses
anything else with ``ChecksumMismatch``. The S3 endpoint and credentials come from the
environment (``LPM_S3_ENDPOINT``, ``LPM_S3_ACCESS_KEY``, ``LPM_S3_SECRET_KEY``), never from
files. Serving talks to the store with the minio SDK directly (it never imports orchestration).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from minio import Minio
from minio.error import S3Error

from lpm_models.descriptor import FileRef

log = logging.getLogger(__name__)

PART_SIZE = 16 * 1024 * 1024
SHA_META = "sha256"


class ChecksumMismatch(ValueError):
    """A weights file does not have the SHA-256 (or size) its descriptor names; it is not loaded."""


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """Streaming SHA-256 (hex) of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass(frozen=True)
class ObjectStore:
    """S3-API object store (MinIO locally and in production)."""

    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> ObjectStore:
        """From ``LPM_S3_ENDPOINT`` / ``LPM_S3_ACCESS_KEY`` / ``LPM_S3_SECRET_KEY``."""
        names = ("LPM_S3_ENDPOINT", "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY")
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            raise RuntimeError(f"the object store is not configured: set {', '.join(missing)} "
                               "(`eval \"$(lpm services env)\"` for the local stack)")
        return cls(os.environ["LPM_S3_ENDPOINT"], os.environ["LPM_S3_ACCESS_KEY"], os.environ["LPM_S3_SECRET_KEY"])

    def client(self) -> Minio:
        url = urlparse(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        return Minio(url.netloc, access_key=self.access_key, secret_key=self.secret_key,
                     secure=url.scheme == "https", region=self.region)

    def download(self, uri: str, path: Path) -> None:
        bucket, key = split_s3_uri(uri)
        try:
            self.client().fget_object(bucket, key, str(path))
        except S3Error as err:
            raise FileNotFoundError(f"cannot download {uri} from {self.endpoint}: {err.code} {err.message}") from err

    def upload(self, path: Path, uri: str) -> FileRef:
        """Upload a file (bucket created if missing) with its SHA-256 as metadata; returns its FileRef."""
        bucket, key = split_s3_uri(uri)
        client = self.client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        digest = sha256_file(path)
        client.fput_object(bucket, key, str(path), metadata={SHA_META: digest}, part_size=PART_SIZE)
        return FileRef(uri=uri, sha256=digest, bytes=path.stat().st_size)


def default_cache_dir() -> Path:
    """``$LPM_SERVING_CACHE``, else ``$LPM_HOME/cache/weights``, else ``~/.cache/lpm/weights``.

    Not ``$LPM_HOME/serving``: Triton runs in ``$LPM_HOME`` and the backend stub puts its working
    directory on ``sys.path``, where a ``serving`` folder would shadow this package.
    """
    if os.environ.get("LPM_SERVING_CACHE"):
        return Path(os.environ["LPM_SERVING_CACHE"])
    if os.environ.get("LPM_HOME"):
        return Path(os.environ["LPM_HOME"]) / "cache" / "weights"
    return Path.home() / ".cache" / "lpm" / "weights"


def _verify(path: Path, ref: FileRef, origin: str) -> None:
    size = path.stat().st_size
    if size != ref.bytes:
        raise ChecksumMismatch(f"{origin} has {size} bytes but the model descriptor says {ref.bytes}; "
                               "refusing to load it (re-register the model or restore the object)")
    digest = sha256_file(path)
    if digest != ref.sha256:
        raise ChecksumMismatch(f"{origin} has sha256 {digest} but the model descriptor says {ref.sha256}; "
                               "refusing to load it (re-register the model or restore the object)")


def fetch_verified(ref: FileRef, cache_dir: Path, store: ObjectStore | None = None) -> Path:
    """A local copy of ``ref`` whose size and SHA-256 match; raises ChecksumMismatch otherwise."""
    if ref.uri.startswith("file://"):
        path = Path(unquote(urlparse(ref.uri).path))
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} ({ref.uri}) does not exist")
        _verify(path, ref, ref.uri)
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = Path(split_s3_uri(ref.uri)[1]).name
    target = cache_dir / f"{ref.sha256}-{name}"
    if target.is_file():
        try:
            _verify(target, ref, f"cached {target}")
            log.info("weights %s: verified cached copy %s", ref.uri, target)
            return target
        except ChecksumMismatch as err:
            log.warning("%s; downloading again", err)
            target.unlink()
    store = store or ObjectStore.from_env()
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    try:
        store.download(ref.uri, partial)
        _verify(partial, ref, ref.uri)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("weights %s: downloaded and verified %.1f MB in %.1f s", ref.uri, ref.bytes / 1e6,
             time.perf_counter() - started)
    return target
