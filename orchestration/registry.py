"""Model registration (contract ``lpm-model/1``, see ``lpm_models.descriptor``).

A registered version's MLflow artifacts hold only ``model/lpm_model.json``; the weights stay
in the object store (``s3://lpm-models/<kind>/<mlflow run id>/...``) and the descriptor names
them with SHA-256 and size. Registration: log the descriptor as a run artifact, create a
model version whose source is ``<run artifact uri>/model``, tag it, point alias
``challenger`` at it. Nothing is pickled and no weights pass through the tracking server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpm_models.descriptor import ARTIFACT_DIR, DESCRIPTOR_NAME, FileRef, ModelDescriptor

log = logging.getLogger(__name__)

MODELS_BUCKET = "lpm-models"
CHALLENGER = "challenger"
MODEL_NAMES = {"vae": "lpm-vae", "base": "lpm-base", "online": "lpm-online"}
DESCRIPTIONS = {
    "lpm-vae": "LPM causal video VAE. Weights in the object store; descriptor at model/lpm_model.json (lpm-model/1).",
    "lpm-base": "Base LPM (bidirectional DiT, consolidated full + EMA weights) and its VAE; descriptor at "
                "model/lpm_model.json (lpm-model/1).",
    "lpm-online": "Online LPM (distilled causal streaming generator) and its VAE; descriptor at "
                  "model/lpm_model.json (lpm-model/1).",
}


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version created by :func:`register_model`."""

    name: str
    version: str
    source: str
    alias: str
    descriptor: ModelDescriptor

    @property
    def uri(self) -> str:
        """``models:/name/version`` (stable even after the alias moves on)."""
        return f"models:/{self.name}/{self.version}"

    @property
    def ref(self) -> str:
        """``name/version``, the form lineage tags use (e.g. ``lpm.teacher``)."""
        return f"{self.name}/{self.version}"


def file_ref(upload: dict[str, Any]) -> FileRef:
    """A FileRef from :meth:`ObjectStoreResource.put_file`'s result."""
    return FileRef(uri=str(upload["uri"]), sha256=str(upload["sha256"]), bytes=int(upload["size"]))


def git_commit() -> str | None:
    """The code's commit: ``LPM_GIT_COMMIT`` (set by images/CI), else ``git rev-parse HEAD`` of this
    checkout; None when neither is available (e.g. an installed wheel)."""
    if os.environ.get("LPM_GIT_COMMIT"):
        return os.environ["LPM_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, check=True,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def version_tags(descriptor: ModelDescriptor, dagster_run_id: str, teacher: str | None = None) -> dict[str, str]:
    """Model-version tags: dataset version, preset, Dagster run id, git commit (when known), teacher."""
    tags = {"lpm.kind": descriptor.kind, "lpm.preset": descriptor.preset, "dagster.run_id": dagster_run_id,
            "lpm.dataset_version": descriptor.lineage.get("dataset_version", ""), "lpm.format": descriptor.format}
    commit = descriptor.lineage.get("git_commit") or git_commit()
    if commit:
        tags["git.commit"] = commit
    if teacher:
        tags["lpm.teacher"] = teacher
    return tags


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        client.create_registered_model(name, description=DESCRIPTIONS.get(name, ""), tags={"lpm.contract": "lpm-model/1"})


def register_model(client: Any, name: str, run_id: str, descriptor: ModelDescriptor, tags: dict[str, str],
                   alias: str = CHALLENGER) -> RegisteredVersion:
    """Log the descriptor to run ``run_id``, create a version of ``name`` from it, tag it, set ``alias``."""
    with tempfile.TemporaryDirectory(prefix="lpm-descriptor-") as tmp:
        path = Path(tmp) / DESCRIPTOR_NAME
        path.write_text(descriptor.to_json())
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{ARTIFACT_DIR}"
    _ensure_registered_model(client, name)
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                          description=f"{descriptor.kind} model, preset {descriptor.preset}")
    if version.status != "READY":
        raise RuntimeError(f"model version {name}/{version.version} is {version.status}, not READY")
    client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s (alias %s) from run %s", name, version.version, alias, run_id)
    return RegisteredVersion(name, str(version.version), source, alias, descriptor)


def resolve_model(tracking_uri: str, name: str, alias: str = CHALLENGER) -> tuple[Any, ModelDescriptor]:
    """(model version, descriptor) that ``name@alias`` points at; downloads only the descriptor."""
    import mlflow
    from mlflow.tracking import MlflowClient

    version = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, alias)
    with tempfile.TemporaryDirectory(prefix="lpm-descriptor-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.source.rstrip('/')}/{DESCRIPTOR_NAME}",
                                                    dst_path=tmp, tracking_uri=tracking_uri)
        descriptor = ModelDescriptor.from_json(Path(local).read_text())
    return version, descriptor

