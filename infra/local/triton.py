"""Triton Inference Server from the nvidia-pytriton wheel, Python backend, explicit model control."""

from __future__ import annotations

import os
from pathlib import Path

from infra.local.binaries import (
    build_python_backend,
    scripts_dir,
    triton_library_path,
    tritonserver_binary,
)
from infra.local.service import Probe, Service, http_get

# Shared memory each Python-backend model instance starts with (grows on demand).
SHM_DEFAULT_BYTES = 16 * 1024 * 1024


class TritonServer(Service):
    """``tritonserver`` on loopback over ``settings.triton_repository`` (starts empty)."""

    name = "triton"
    summary = "Triton Inference Server (Python backend, explicit model control)"
    stop_timeout = 30.0

    @property
    def backends_dir(self) -> Path:
        return self.state_dir / "backends"

    def url(self) -> str:
        return f"http://{self.settings.triton_http_url}"

    def ports(self) -> dict[str, int]:
        return {
            "LPM_TRITON_HTTP_PORT": self.settings.triton_http_port,
            "LPM_TRITON_GRPC_PORT": self.settings.triton_grpc_port,
            "LPM_TRITON_METRICS_PORT": self.settings.triton_metrics_port,
        }

    def prepare(self) -> None:
        self.settings.triton_repository.mkdir(parents=True, exist_ok=True)
        build_python_backend(self.backends_dir)

    def argv(self) -> list[str]:
        s = self.settings
        return [
            str(tritonserver_binary()),
            f"--model-repository={s.triton_repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={self.backends_dir}",
            f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
            f"--http-address={s.host}", f"--http-port={s.triton_http_port}",
            f"--grpc-address={s.host}", f"--grpc-port={s.triton_grpc_port}",
            f"--metrics-address={s.host}", f"--metrics-port={s.triton_metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false",
            "--metrics-config=summary_latencies=true",
            "--pinned-memory-pool-byte-size=0",
            # ready = the server answers; each model's readiness is checked on its own
            "--strict-readiness=false",
            "--exit-on-error=false",
            "--exit-timeout-secs=10",
            "--log-info=true",
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        libs = [str(p) for p in triton_library_path()]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        # The backend stub embeds Python and finds this environment (torch, serving) via PATH.
        env["PATH"] = os.pathsep.join([str(scripts_dir()), env.get("PATH", "")])
        env.update(self.settings.client_env())
        return env

    def probe(self) -> Probe:
        status, _ = http_get(f"{self.url()}/v2/health/ready")
        return Probe(status == 200, f"/v2/health/ready -> {status or 'no answer'}")
