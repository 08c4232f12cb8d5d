"""Curation stage 7: the immutable, versioned curated dataset (shards + manifest in the object store),
guarded by the Great Expectations suite as blocking asset checks, logged to MLflow as a dataset."""

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from orchestration.assets.curation import CURATION_PREFIX, DATA_BUCKET
from orchestration.assets.dataset_report import (contact_sheet, funnel, funnel_markdown, funnel_plot,
                                                 record_catalog)
from orchestration.assets.references import PLANS_KEY, identity_references, load_video_clips
from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource

DATASETS_PREFIX = "datasets/"
CHECK_GROUPS = ("schema", "ranges", "balance", "references", "leakage", "uniqueness", "integrity")


class DatasetConfig(dg.Config):
    """Sample format and sharding of the curated dataset."""

    size: int = 128
    fps: float = 25.0
    shard_size: int = 16


def _samples(store: ObjectStoreResource, plans: dict[str, Any], workdir: Path, cfg: DatasetConfig,
             checksums: dict[str, str], log: Any) -> Iterator[Any]:
    """Assemble curated samples video by video (only one video's tracks in memory at a time)."""
    from lpm_models.data.curation.references import ReferenceImage, ReferenceSet, ReferenceSource
    from lpm_models.data.curation.types import ActionEvent, ClipLabels
    from lpm_models.data.dataset.assemble import SampleConfig, assemble_sample
    from lpm_models.data.dataset.codec import decode_png
    from lpm_models.data.curation.references import ClipSpan

    sample_cfg = SampleConfig(size=cfg.size, fps=cfg.fps)
    by_video: dict[str, list[dict[str, Any]]] = {}
    for doc in plans["clips"]:
        by_video.setdefault(doc["clip"]["video_id"], []).append(doc)
    for n, (video_id, docs) in enumerate(sorted(by_video.items()), 1):
        work = workdir / video_id
        work.mkdir()
        video, tracks = load_video_clips(store, video_id, work)
        tracks = {t.track_id: t for t in tracks}
        doc = lambda name: json.loads(store.get_bytes(DATA_BUCKET, f"{CURATION_PREFIX}{video_id}/{name}"))  # noqa: E731
        notes, quality = doc("annotations.json")["clips"], {r["track_id"]: r for r in doc("quality.json")["reports"]}
        for item in docs:
            clip = ClipSpan(**item["clip"])
            with np.load(store.get_file(DATA_BUCKET, f"{CURATION_PREFIX}{video_id}/labels/{clip.track_id}.npz",
                                        work / f"{clip.track_id}.labels.npz")) as z:
                labels = ClipLabels(clip.track_id, z["labels"], z["self_audio"], z["other_audio"],
                                    int(z["sample_rate"]), int(z["sync_offset"]), float(z["sync_confidence"]))
            images = {kind: [ReferenceImage(ReferenceSource.from_dict(i["source"]),
                                            decode_png(store.get_bytes(DATA_BUCKET, i["key"]))) for i in items]
                      for kind, items in item["images"].items()}
            refs = ReferenceSet(clip, images["appearance"][0], images["pose"], images["expression"])
            note = notes[clip.track_id]
            events = [ActionEvent(**e) for e in note["descriptors"]["events"]]
            yield assemble_sample(clip, tracks[clip.track_id], labels, refs, item["identity"], video, sample_cfg,
                                  captions=note["captions"], actions=events,
                                  quality=quality[clip.track_id]["metrics"], source_sha256=checksums[video_id])
        log.info("assembled clips of %d/%d videos", n, len(by_video))


@dg.asset(group_name="curation", deps=[identity_references], kinds={"s3", "mlflow", "sqlalchemy"},
          description="Immutable curated dataset version: WebDataset-style tar shards + manifest with checksums "
          "in s3://lpm-data/datasets/<version>/, catalog rows, MLflow dataset with profile, funnel and preview.")
def curated_dataset(context: dg.AssetExecutionContext, config: DatasetConfig, object_store: ObjectStoreResource,
                    catalog: CatalogResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    from lpm_models.data.dataset.shards import write_dataset

    plans = json.loads(object_store.get_bytes(DATA_BUCKET, PLANS_KEY))
    db = catalog.catalog()
    checksums = {Path(v.object_key).stem: v.sha256 for v in db.source_videos(status="ingested")}
    with tempfile.TemporaryDirectory(prefix="lpm-dataset-") as tmp:
        kept: list[Any] = []

        def keep(samples: Iterator[Any]) -> Iterator[Any]:
            for sample in samples:  # the first dozen samples make the preview sheet
                if len(kept) < 12:
                    kept.append(sample)
                yield sample

        out = Path(tmp) / "dataset"
        samples = _samples(object_store, plans, Path(tmp), config, checksums, context.log)
        manifest = write_dataset(keep(samples), out, config.shard_size, config=config.model_dump(),
                                 source_checksums=checksums)
        prefix = f"{DATASETS_PREFIX}{manifest.version}/"
        manifest_uri = f"s3://{DATA_BUCKET}/{prefix}manifest.json"
        if object_store.exists(DATA_BUCKET, prefix + "manifest.json"):
            context.log.info("dataset %s already stored; versions are immutable, not rewriting", manifest.version)
        else:
            for shard in manifest.shards:
                object_store.put_file(DATA_BUCKET, prefix + shard.name, out / shard.name)
            object_store.put_file(DATA_BUCKET, prefix + "manifest.json", out / "manifest.json")
        planned_s = sum((d["clip"]["end_frame"] - d["clip"]["start_frame"]) / config.fps for d in plans["clips"])
        rows = funnel(object_store, catalog, plans["videos"], manifest, planned_s)
        run_id, run_url = _log_mlflow(context, mlflow, manifest, manifest_uri, rows, kept, Path(tmp))
        record_catalog(catalog, manifest, manifest_uri, context.run.run_id, run_id,
                       {d["clip"]["clip_id"]: d for d in plans["clips"]})
    profile = manifest.profile
    return dg.MaterializeResult(metadata={
        "version": manifest.version, "manifest": dg.MetadataValue.path(manifest_uri),
        "clips": profile["clips"], "hours": profile["hours"], "identities": profile["identities"],
        "balance": dg.MetadataValue.json(profile["balance"]), "shards": len(manifest.shards),
        "funnel": dg.MetadataValue.md(funnel_markdown(rows)), "mlflow_run": dg.MetadataValue.url(run_url),
    }, data_version=dg.DataVersion(manifest.version))


def _log_mlflow(context: dg.AssetExecutionContext, mlflow: MlflowResource, manifest: Any, uri: str,
                rows: list[dict[str, Any]], preview: list[Any], tmp: Path) -> tuple[str, str]:
    import mlflow as mlf
    import pandas as pd

    with mlflow.start_run(context, run_name=f"dataset-{manifest.version}",
                          tags={"lpm.stage": "dataset", "lpm.dataset_version": manifest.version}) as run:
        frame = pd.DataFrame(manifest.clips).drop(columns=["captions", "actions", "quality", "ref_sources"],
                                                  errors="ignore")
        dataset = mlf.data.from_pandas(frame, source=uri, name="lpm-curated", digest=manifest.version)
        mlf.log_input(dataset, context="training")
        p = manifest.profile
        mlf.log_metrics({"clips": p["clips"], "hours": p["hours"], "identities": p["identities"],
                         **{f"balance_{k}": v for k, v in p["balance"].items()},
                         "mean_sync_confidence": p["mean_sync_confidence"]})
        mlf.log_dict(manifest.to_dict(), "manifest.json")
        mlf.log_dict({"funnel": rows}, "funnel.json")
        mlf.log_artifact(str(funnel_plot(rows, tmp / "funnel.png")), "plots")
        if preview:
            mlf.log_artifact(str(contact_sheet(preview, tmp / "preview.png")), "preview")
        return run.info.run_id, mlflow.run_url(run.info.run_id)


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(f"ge_{g}", asset=curated_dataset, blocking=True,
                             description=f"Great Expectations: {g} expectations of the curated dataset")
           for g in CHECK_GROUPS],
)
def curated_dataset_expectations(context: dg.AssetCheckExecutionContext,
                                 object_store: ObjectStoreResource) -> Iterator[dg.AssetCheckResult]:
    """Download the newest dataset version and run the suite; one result per check group."""
    from lpm_models.data.dataset.manifest import Manifest
    from quality.expectations import validate_dataset

    event = context.instance.get_latest_materialization_event(curated_dataset.key)
    version = event.asset_materialization.metadata["version"].value
    prefix = f"{DATASETS_PREFIX}{version}/"
    with tempfile.TemporaryDirectory(prefix="lpm-ge-") as tmp:
        for key in object_store.list(DATA_BUCKET, prefix):
            object_store.get_file(DATA_BUCKET, key, Path(tmp) / Path(key).name)
        report = validate_dataset(Manifest.load(Path(tmp)), Path(tmp))
    groups = report.by_check()
    for group in CHECK_GROUPS:
        failed = [r for r in report.failures() if r.check == group]
        yield dg.AssetCheckResult(
            check_name=f"ge_{group}", passed=groups.get(group, True), asset_key=curated_dataset.key,
            metadata={"version": version, "failed_expectations": len(failed),
                      "details": dg.MetadataValue.md(report.markdown() if failed else "passed"),
                      "clips": report.counts.get("clips", 0)})
