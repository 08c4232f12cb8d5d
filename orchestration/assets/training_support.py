"""Shared pieces of the training assets: upstream lookups, weights in the object store, MLflow
logging of Pipes-reported events, and the metadata every training asset returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from lpm_models.descriptor import FileRef, ModelDescriptor
from orchestration.pipes_reporter import TrainingEvents
from orchestration.registry import MODELS_BUCKET, RegisteredVersion, file_ref, git_commit
from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource
from orchestration.resources.launcher import object_store_env

MLFLOW_BATCH = 900  # metrics per log_batch call (the server accepts 1000)
CHILD_LOCAL_KEYS = frozenset({"path", "consolidated", "checkpoint", "format", "latent_std"})  # scratch paths etc.


@dataclass(frozen=True)
class DatasetRef:
    """A curated dataset version in the object store."""

    version: str
    manifest_uri: str

    @property
    def uri(self) -> str:
        """``s3://lpm-data/datasets/<version>``: what the training CLIs take as ``--dataset``."""
        return self.manifest_uri.rsplit("/", 1)[0]


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"expected s3://bucket/key, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def latest_metadata(context: dg.AssetExecutionContext, asset: str, hint: str) -> dict[str, Any]:
    """Plain metadata values of the newest materialization of ``asset``; fails with ``hint`` if none."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{asset} has never been materialized: {hint}")
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def latest_dataset(context: dg.AssetExecutionContext) -> DatasetRef:
    """The newest curated dataset version (metadata ``version`` and ``manifest`` of ``curated_dataset``)."""
    meta = latest_metadata(context, "curated_dataset", "run the build_dataset job (or `lpm run`) first")
    return DatasetRef(version=str(meta["version"]), manifest_uri=str(meta["manifest"]))


def file_from_metadata(meta: Mapping[str, Any], name: str) -> FileRef:
    """The FileRef an upstream asset recorded as ``<name>_uri``, ``<name>_sha256``, ``<name>_bytes``."""
    return FileRef(uri=str(meta[f"{name}_uri"]), sha256=str(meta[f"{name}_sha256"]), bytes=int(meta[f"{name}_bytes"]))


def child_store_env(store: ObjectStoreResource) -> dict[str, str]:
    """Object store settings for a training child (passed as environment, never as arguments)."""
    return object_store_env(store.endpoint, store.access_key, store.secret_key, store.region)


def upload_weights(store: ObjectStoreResource, kind: str, run_id: str, path: Path) -> FileRef:
    """Upload a weights file to ``s3://lpm-models/<kind>/<mlflow run id>/<name>`` (SHA-256 recorded)."""
    return file_ref(store.put_file(MODELS_BUCKET, f"{kind}/{run_id}/{path.name}", path))


def upload_tree(store: ObjectStoreResource, root: Path, prefix: str) -> int:
    """Upload every file under ``root`` to ``s3://lpm-models/<prefix>/...``; returns the byte count."""
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        total += int(store.put_file(MODELS_BUCKET, f"{prefix}/{path.relative_to(root).as_posix()}", path)["size"])
    return total


def download_weights(store: ObjectStoreResource, ref: FileRef, dest: Path) -> Path:
    """Download a FileRef's object to ``dest``, verified against the descriptor's SHA-256."""
    from orchestration.resources.object_store import sha256_file

    bucket, key = split_s3(ref.uri)
    store.get_file(bucket, key, dest)
    if sha256_file(dest) != ref.sha256:
        raise ValueError(f"{ref.uri} does not match the recorded sha256 {ref.sha256[:12]}..; it was replaced")
    return dest


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    return path


def log_params(params: Mapping[str, Any]) -> None:
    """Log run parameters to the active MLflow run (values as strings, MLflow's 6000-char limit)."""
    import mlflow as mlf

    mlf.log_params({k: str(v)[:6000] for k, v in params.items()})


def log_curves(mlflow: MlflowResource, run_id: str, events: TrainingEvents) -> int:
    """Log every Pipes-reported progress metric with its step and time (once, from the orchestrator)."""
    from mlflow.entities import Metric

    metrics = [Metric(key=name, value=value, timestamp=int(when * 1000), step=step)
               for name, series in sorted(events.metrics.items()) for step, value, when in series]
    client = mlflow.client()
    for start in range(0, len(metrics), MLFLOW_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + MLFLOW_BATCH])
    return len(metrics)


def log_dataset_input(store: ObjectStoreResource, dataset: DatasetRef) -> None:
    """Record the curated dataset as the active run's training input (same name/digest as the dataset run)."""
    import mlflow as mlf
    import pandas as pd

    bucket, key = split_s3(dataset.manifest_uri)
    manifest = json.loads(store.get_bytes(bucket, key))
    frame = pd.DataFrame(manifest["clips"]).drop(columns=["captions", "actions", "quality", "ref_sources"],
                                                 errors="ignore")
    mlf.log_input(mlf.data.from_pandas(frame, source=dataset.manifest_uri, name="lpm-curated",
                                       digest=dataset.version), context="training")


def lineage(context: dg.AssetExecutionContext, dataset: DatasetRef, mlflow_run_id: str,
            **extra: str) -> dict[str, str]:
    """Descriptor lineage: dataset, Dagster run, MLflow run, git commit (when known), plus ``extra``."""
    out = {"dataset_version": dataset.version, "dataset_manifest": dataset.manifest_uri,
           "dagster_run_id": context.run.run_id, "mlflow_run_id": mlflow_run_id, **extra}
    commit = git_commit()
    if commit:
        out["git_commit"] = commit
    return out


def record_model_version(catalog: CatalogResource, registered: RegisteredVersion, dagster_run_id: str,
                         mlflow_run_id: str, parent: str | None = None) -> int:
    """Catalog row of a registered version (upserted like every other writer of ``model_versions``),
    linked to its dataset version (when the catalog has it) and to ``parent`` (``name/version`` of
    the teacher or VAE): the walk from a served model back to clips and raw videos."""
    import sqlalchemy as sa

    from infra.catalog import models as m
    from infra.catalog.releases import model_version_id, upsert_model_version

    descriptor, db = registered.descriptor, catalog.catalog()
    weights = descriptor.files[descriptor.kind]  # artifact_uri: the weights (serving's fallback writes the same)
    row_id = upsert_model_version(
        db, name=registered.name, version=registered.version, kind=descriptor.kind, preset=descriptor.preset,
        mlflow_run_id=mlflow_run_id, artifact_uri=weights.uri, sha256=weights.sha256, dagster_run_id=dagster_run_id,
        meta={"source": registered.source, "descriptor": descriptor.to_dict()})
    parent_id = model_version_id(db, *parent.rsplit("/", 1)) if parent else None
    with db.session() as s:
        dataset_id = s.scalars(sa.select(m.DatasetVersion.id).where(
            m.DatasetVersion.version == descriptor.lineage.get("dataset_version", ""))).first()
        s.execute(sa.update(m.ModelVersion).where(m.ModelVersion.id == row_id)
                  .values(parent_id=parent_id, dataset_version_id=dataset_id))
    return row_id


def result_metadata(registered: RegisteredVersion, run_url: str, run_id: str, dataset: DatasetRef, seconds: float,
                    reported: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    """Materialization metadata shared by the training assets: MLflow links, model version,
    every descriptor file (``<name>_uri/_sha256/_bytes``), dataset, timing, the child's report."""
    descriptor: ModelDescriptor = registered.descriptor
    meta: dict[str, Any] = {f"child_{k}": v for k, v in reported.items() if k not in CHILD_LOCAL_KEYS}
    meta.update({
        "mlflow_run": dg.MetadataValue.url(run_url), "mlflow_run_id": run_id,
        "model": registered.name, "model_version": registered.version, "model_uri": registered.uri,
        "alias": registered.alias, "preset": descriptor.preset,
        "dataset_version": dataset.version, "dataset_uri": dataset.uri,
        "dataset_manifest": dg.MetadataValue.path(dataset.manifest_uri), "seconds": round(seconds, 1),
        "descriptor": dg.MetadataValue.json(descriptor.to_dict()),
    })
    for name, ref in descriptor.files.items():
        meta.update({f"{name}_uri": dg.MetadataValue.path(ref.uri), f"{name}_sha256": ref.sha256,
                     f"{name}_bytes": ref.bytes})
    meta.update({k: v for k, v in values.items() if v is not None})
    return meta
