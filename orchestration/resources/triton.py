"""Triton Inference Server resource: gRPC/HTTP client plus the model repository it serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg


class TritonResource(dg.ConfigurableResource):
    """A Triton server with explicit model control and the repository directory it loads from."""

    grpc_url: str
    http_url: str
    repository: str
    metrics_url: str = ""  # host:port of the Prometheus metrics endpoint ("" = not scraped)

    def grpc_client(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(url=self.grpc_url)

    def http_client(self) -> Any:
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(url=self.http_url)

    def repository_path(self) -> Path:
        path = Path(self.repository)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_ready(self) -> bool:
        try:
            return bool(self.http_client().is_server_ready())
        except Exception:  # noqa: BLE001 - connection refused means "not ready", reported as such
            return False
