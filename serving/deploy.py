"""Explicit-mode Triton deployment of a served model: load, readiness, live check, recovery, retirement.

    deployer = TritonDeployer("127.0.0.1:8001", Path(repository))
    retired = deployer.retire("lpm-online", keep={3, 2, 1})      # drop other version folders
    deployer.load("lpm-online", versions=(1, 2, 3), deadline_s=600)
    health = deployer.ensure_live("lpm-online", (1, 2, 3), instances=2)   # real inferences; unload+load once
    deployer.statistics("lpm-online")

Triton keeps reporting READY after a Python-backend stub died (ENVIRONMENT.md): only a real
request finds it (``Stub process '<instance>' is not healthy``). ``ensure_live`` opens short
sessions on every version, enough to reach each instance, and on failure unloads the model,
waits until Triton has let go of it, loads it again and checks again. Measured with Triton 2.51:
once a request has reached a dead stub, the unload never completes (the model stays UNLOADING);
a load still brings up fresh instances, while the old model's surviving stubs stay in memory
until Triton restarts (reported as ``unload_stuck``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.client import StreamClient
from serving.probe import card_image, speech_like
from serving.params import config_parameters
from serving.repository import (
    PROVENANCE, read_parameters, read_provenance, read_settings, remove_version,
)

log = logging.getLogger(__name__)

DEAD_STUB = "is not healthy"


class DeploymentError(RuntimeError):
    """Triton did not load, serve or unload a model as asked; the message says what it reported."""


@dataclass
class Health:
    """Outcome of ``ensure_live``: errors of the first round, whether a reload recovered it, final errors."""

    first_errors: list[str] = field(default_factory=list)
    recovered: bool = False
    errors: list[str] = field(default_factory=list)
    sessions: int = 0
    reload_s: float | None = None
    unload_stuck: bool = False

    @property
    def live(self) -> bool:
        return not self.errors

    @property
    def dead_stub(self) -> bool:
        return any(DEAD_STUB in e for e in self.first_errors)

    def to_dict(self) -> dict[str, Any]:
        return {"live": self.live, "dead_stub_detected": self.dead_stub, "recovered": self.recovered,
                "first_errors": self.first_errors[:5], "errors": self.errors[:5], "sessions": self.sessions,
                "reload_s": self.reload_s, "unload_stuck": self.unload_stuck}


def repository_versions(repository: Path, model: str) -> list[int]:
    """Version folders (with a provenance file) of ``model`` in the repository, ascending."""
    return sorted(int(p.parent.name) for p in (Path(repository) / model).glob(f"*/{PROVENANCE}")
                  if p.parent.name.isdigit())


def versions_to_keep(available: Iterable[int], newest: int = 2, pinned: Iterable[int] = ()) -> set[int]:
    """The ``newest`` highest versions plus the pinned ones (e.g. the champion) that exist."""
    ordered = sorted(set(available))
    keep = set(ordered[-newest:]) if newest > 0 else set()
    return keep | (set(pinned) & set(ordered))


def _release(client: StreamClient) -> None:
    """Send END for a failed session so Triton frees its sequence slot (a slot held on a dead stub
    would keep the model from unloading); the session's failure is reported by the caller."""
    try:
        client.send_raw([], end=True)
        client.next_reply(timeout_s=10.0)
    except Exception as err:  # noqa: BLE001 - best effort: the stub may be gone
        log.debug("END of failed session %d: %s", client.sequence_id, err)


class TritonDeployer:
    """Loads and checks models on one Triton server (explicit model control) over its repository."""

    def __init__(self, grpc_url: str, repository: Path, poll_s: float = 0.5) -> None:
        import tritonclient.grpc as grpcclient

        self.url, self.repository, self.poll_s = grpc_url, Path(repository), poll_s
        self.client = grpcclient.InferenceServerClient(grpc_url)

    # ------------------------------------------------------------------ state
    def require_server(self) -> None:
        try:
            ready = self.client.is_server_ready()
        except Exception as err:  # noqa: BLE001 - re-raised with what to do
            raise DeploymentError(f"Triton at {self.url} does not answer ({err}); "
                                  "start it (`lpm services up`)") from err
        if not ready:
            raise DeploymentError(f"Triton at {self.url} is not ready")

    def states(self, model: str) -> dict[int, tuple[str, str]]:
        """Version -> (state, reason) as Triton's repository index reports them."""
        index = self.client.get_model_repository_index(as_json=True).get("models", [])
        return {int(m["version"]): (m.get("state", ""), m.get("reason", "")) for m in index
                if m.get("name") == model and str(m.get("version", "")).isdigit()}

    def ready_versions(self, model: str) -> list[int]:
        return sorted(v for v, (state, _) in self.states(model).items() if state == "READY")

    def loaded_matches(self, model: str, versions: Sequence[int]) -> bool:
        """True when Triton serves exactly ``versions`` READY with the config now in the repository
        (a load would only restart the same instances)."""
        if set(self.ready_versions(model)) != set(versions):
            return False
        config_path = self.repository / model / "config.pbtxt"
        settings = read_settings(config_path)
        live = self.client.get_model_config(model, as_json=True).get("config", {})
        instances = sum(int(group.get("count", 1)) for group in live.get("instance_group", []))
        return (settings is not None and config_parameters(live) == read_parameters(config_path)
                and int(live.get("max_batch_size", 0)) == settings.max_sessions and instances == settings.instances)

    # ------------------------------------------------------------------ load / unload
    def load(self, model: str, versions: Sequence[int], deadline_s: float = 600.0) -> float:
        """Load ``model`` (the versions its config lists) and poll until each of ``versions`` is READY."""
        from tritonclient.utils import InferenceServerException

        started = time.monotonic()
        deadline = started + deadline_s
        try:
            self.client.load_model(model, client_timeout=deadline_s)
        except InferenceServerException as err:
            raise DeploymentError(f"Triton refused to load {model}: {err.message()} (states: {self.states(model)}); "
                                  "see the Triton log (`lpm services logs triton`)") from err
        while True:
            missing = [v for v in versions if not self.client.is_model_ready(model, str(v))]
            if not missing:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise DeploymentError(f"{model} versions {missing} not READY within {deadline_s:.0f} s "
                                      f"(states: {self.states(model)})")
            time.sleep(self.poll_s)

    def unload(self, model: str, deadline_s: float = 120.0) -> float:
        """Unload every version of ``model`` and wait until Triton reports none READY or UNLOADING."""
        started = time.monotonic()
        self.client.unload_model(model)
        while any(state in ("READY", "UNLOADING", "LOADING") for state, _ in self.states(model).values()):
            if time.monotonic() - started > deadline_s:
                raise DeploymentError(f"{model} still unloading after {deadline_s:.0f} s: {self.states(model)}")
            time.sleep(self.poll_s)
        return time.monotonic() - started

    def retire(self, model: str, keep: Iterable[int]) -> list[int]:
        """Remove every version folder of ``model`` not in ``keep`` (the next load unloads them)."""
        keep = set(keep)
        retired = [v for v in repository_versions(self.repository, model) if v not in keep]
        for version in retired:
            remove_version(self.repository, model, version)
        if retired:
            log.info("%s: retired versions %s (serving %s)", model, retired, sorted(keep))
        return retired

    # ------------------------------------------------------------------ liveness
    def _session(self, model: str, version: int, seed: int, timeout_s: float) -> str | None:
        with StreamClient(self.url, model, str(version), timeout_s=timeout_s) as client:
            try:
                info = client.open(card_image(64, seed), seed=seed)
                n, rate = int(info["chunk_samples"]), int(info["sample_rate"])
                audio = speech_like(n / rate, rate, seed)[:n]
                client.send(audio, np.zeros_like(audio))
                frames = client.receive().video
                client.finish()
            except Exception as err:  # noqa: BLE001 - gRPC raises its own types; any failure means "not live"
                _release(client)
                return f"v{version}: {type(err).__name__}: {err}"
        if frames.ndim != 4 or frames.shape[0] == 0:
            return f"v{version}: a chunk came back without frames ({frames.shape})"
        return None

    def check_live(self, model: str, versions: Sequence[int], instances: int, timeout_s: float = 60.0) -> list[str]:
        """Errors of ``2 x instances`` short sessions (START, one chunk, END) per version; [] = all live."""
        errors = []
        for version in versions:
            for i in range(2 * max(1, instances)):
                error = self._session(model, version, seed=1000 + i, timeout_s=timeout_s)
                if error:
                    errors.append(error)
        return errors

    def ensure_live(self, model: str, versions: Sequence[int], instances: int, deadline_s: float = 600.0,
                    unload_wait_s: float = 30.0) -> Health:
        """Real inferences on every version; on any failure unload + load once and check again.

        unload_wait_s: how long to wait for the unload before loading again regardless (see below)."""
        health = Health(sessions=len(versions) * 2 * max(1, instances))
        health.first_errors = self.check_live(model, versions, instances)
        if not health.first_errors:
            return health
        log.warning("%s: %d failed sessions (%s); unloading and loading it again", model,
                    len(health.first_errors), health.first_errors[0])
        started = time.monotonic()
        try:
            self.unload(model, deadline_s=unload_wait_s)
        except DeploymentError as err:
            # Triton never finishes unloading a model once a request reached its dead stub; loading it
            # again still brings up fresh instances (the old ones stay in memory until Triton restarts)
            health.unload_stuck = True
            log.warning("%s; loading it again anyway (the old instances stay until Triton restarts)", err)
        self.load(model, versions, deadline_s)
        health.reload_s = round(time.monotonic() - started, 1)
        health.errors = self.check_live(model, versions, instances)
        health.sessions *= 2
        health.recovered = not health.errors
        return health

    # ------------------------------------------------------------------ stats
    def statistics(self, model: str) -> dict[str, dict[str, Any]]:
        """Per version: inference/execution counts, successes, failures, mean queue and compute ms."""
        stats = self.client.get_inference_statistics(model, as_json=True).get("model_stats", [])
        out = {}
        for entry in stats:
            inf = entry.get("inference_stats", {})

            def count(key: str) -> int:
                return int(inf.get(key, {}).get("count", 0))

            def mean_ms(key: str) -> float | None:
                n = count(key)
                return round(int(inf.get(key, {}).get("ns", 0)) / n / 1e6, 3) if n else None

            out[str(entry.get("version", ""))] = {
                "inference_count": int(entry.get("inference_count", 0)),
                "execution_count": int(entry.get("execution_count", 0)),
                "success": count("success"), "fail": count("fail"),
                "queue_ms_mean": mean_ms("queue"), "compute_infer_ms_mean": mean_ms("compute_infer"),
                "last_inference_ms": int(entry.get("last_inference", 0)),
            }
        return out

    def provenance(self, model: str, version: int) -> dict[str, Any]:
        """The provenance file of a version in the repository."""
        return read_provenance(self.repository / model / str(version) / PROVENANCE)
