"""Raw video ingestion: a sensor adds one dynamic partition per uploaded object; the asset probes,
checksums and catalogs each file, recording bad files as rejections instead of failing."""

import re
import tempfile
from pathlib import Path

import dagster as dg

from lpm_models.media.probe import ProbeError, probe_video
from orchestration.resources import CatalogResource, ObjectStoreResource

RAW_BUCKET = "lpm-raw"
RAW_PREFIX = "videos/"
STAGE = "ingest"
_KEY_OK = re.compile(r"^[A-Za-z0-9._\-/]+$")

raw_video_partitions = dg.DynamicPartitionsDefinition(name="raw_videos")


def partition_key_for(object_key: str) -> str:
    """Partition key of a raw object (its key below the raw prefix)."""
    return object_key.removeprefix(RAW_PREFIX)


@dg.asset(
    partitions_def=raw_video_partitions,
    group_name="ingestion",
    kinds={"s3", "sqlalchemy"},
    description="One raw conversation video: probed (container, streams, codecs, duration, fps, size, "
    "audio rate), checksummed and recorded in the catalog, or rejected with a reason.",
)
def raw_videos(
    context: dg.AssetExecutionContext, object_store: ObjectStoreResource, catalog: CatalogResource
) -> dg.MaterializeResult:
    key = RAW_PREFIX + context.partition_key
    uri = f"s3://{RAW_BUCKET}/{key}"
    if not object_store.exists(RAW_BUCKET, key):
        raise dg.Failure(description=f"{uri} no longer exists in the object store; delete the partition "
                         f"'{context.partition_key}' or re-upload the file")
    db = catalog.catalog()
    with tempfile.TemporaryDirectory(prefix="lpm-ingest-") as tmp:
        path = object_store.get_file(RAW_BUCKET, key, Path(tmp) / Path(key).name, verify=False)
        try:
            probe = probe_video(path)
        except ProbeError as err:
            db.upsert_rejected_video(object_key=uri, reason=err.reason, detail=err.detail,
                                     run_id=context.run.run_id)
            context.log.warning("rejected %s: %s (%s)", uri, err.reason, err.detail)
            return dg.MaterializeResult(metadata={
                "status": "rejected", "reason": err.reason, "detail": err.detail,
                "object": dg.MetadataValue.url(object_store.presign(RAW_BUCKET, key)), "uri": uri,
            })
    info = probe.to_dict()
    video_id = db.upsert_source_video(object_key=uri, run_id=context.run.run_id, **info)
    context.log.info("ingested %s: %.1f s %dx%d @ %.2f fps", uri, probe.duration_s, probe.width, probe.height, probe.fps)
    return dg.MaterializeResult(
        metadata={
            "status": "ingested", "uri": uri, "catalog_id": video_id, "sha256": probe.sha256,
            "duration_s": float(probe.duration_s), "fps": float(probe.fps),
            "resolution": f"{probe.width}x{probe.height}", "video_codec": probe.video_codec,
            "audio_codec": probe.audio_codec, "audio_rate": int(probe.audio_rate),
            "size_bytes": int(probe.size_bytes),
            "object": dg.MetadataValue.url(object_store.presign(RAW_BUCKET, key)),
        },
        data_version=dg.DataVersion(probe.sha256),
    )


@dg.sensor(job_name="curate_video", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description=f"Watches s3://{RAW_BUCKET}/{RAW_PREFIX} and ingests every new object.")
def raw_video_sensor(context: dg.SensorEvaluationContext, object_store: ObjectStoreResource) -> dg.SensorResult | dg.SkipReason:
    known = set(context.instance.get_dynamic_partitions(raw_video_partitions.name))
    new: list[str] = []
    for object_key in object_store.list(RAW_BUCKET, RAW_PREFIX):
        part = partition_key_for(object_key)
        if part in known:
            continue
        if not _KEY_OK.match(part):
            context.log.warning("skipping %s: object names may use letters, digits and . _ - / only", object_key)
            continue
        new.append(part)
    if not new:
        return dg.SkipReason(f"no new objects under s3://{RAW_BUCKET}/{RAW_PREFIX}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=p, run_key=p) for p in new],
        dynamic_partitions_requests=[raw_video_partitions.build_add_request(new)],
    )
