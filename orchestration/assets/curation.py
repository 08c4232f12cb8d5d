"""Per-video curation stages (partitioned like raw_videos): shots -> face tracks -> quality-filtered
clips -> speak/listen pairing -> performance annotations.

Each asset runs a pure stage function from ``lpm_models.data.curation`` and keeps its output under
``s3://lpm-data/curation/<video>/``; every rejection is a catalog row with stage and reason. A video
rejected at ingestion (or one that loses everything at a stage) yields an empty, successful stage.
"""

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX, raw_video_partitions, raw_videos
from orchestration.resources import CatalogResource, ObjectStoreResource

DATA_BUCKET = "lpm-data"
CURATION_PREFIX = "curation/"


class CurationRunConfig(dg.Config):
    """Overrides of lpm_models.data.curation.config.CurationConfig, as nested JSON (section -> field -> value)."""

    overrides_json: str = "{}"


def curation_config(config: CurationRunConfig) -> Any:
    from lpm_models.data.curation.config import CurationConfig

    return CurationConfig.from_dict(json.loads(config.overrides_json or "{}"))


class VideoStage:
    """Object-store layout of one raw video's curation outputs plus its local working copy."""

    def __init__(self, context: dg.AssetExecutionContext, store: ObjectStoreResource, workdir: Path) -> None:
        self.context = context
        self.store = store
        self.partition = context.partition_key
        self.video_id = Path(self.partition).stem
        self.prefix = f"{CURATION_PREFIX}{self.video_id}/"
        self.workdir = workdir

    @property
    def raw_uri(self) -> str:
        return f"s3://{RAW_BUCKET}/{RAW_PREFIX}{self.partition}"

    def video(self) -> Path:
        path = self.workdir / Path(self.partition).name
        if not path.exists():
            self.store.get_file(RAW_BUCKET, RAW_PREFIX + self.partition, path, verify=False)
        return path

    def put_json(self, name: str, document: Any) -> str:
        return self.store.put_bytes(DATA_BUCKET, self.prefix + name, json.dumps(document, indent=1).encode(),
                                    content_type="application/json")

    def get_json(self, name: str) -> Any:
        return json.loads(self.store.get_bytes(DATA_BUCKET, self.prefix + name))

    def put_file(self, name: str, path: Path) -> str:
        return str(self.store.put_file(DATA_BUCKET, self.prefix + name, path)["uri"])

    def get_file(self, name: str) -> Path:
        return self.store.get_file(DATA_BUCKET, self.prefix + name, self.workdir / name)

    def load_tracks(self, ids: list[str]) -> list[Any]:
        from lpm_models.data.curation.types import FaceTrack

        return [FaceTrack.load(self.get_file(f"tracks/{tid}.npz")) for tid in ids]


def _reject(catalog: CatalogResource, context: dg.AssetExecutionContext, stage: str, kind: str, key: str,
            reason: str, detail: str) -> None:
    catalog.catalog().record_rejection(stage, (kind, key), reason, detail, context.run.run_id)


def _funnel_metadata(stage: str, kept: int, kept_s: float, rejected: Counter, uri: str) -> dict[str, Any]:
    return {"stage": stage, "kept": kept, "kept_seconds": round(kept_s, 2),
            "rejected": sum(rejected.values()), "rejections": dg.MetadataValue.json(dict(rejected)),
            "output": dg.MetadataValue.path(uri)}


def _ingested(catalog: CatalogResource, uri: str) -> bool:
    row = catalog.catalog().source_video(uri)
    return row is not None and row.status == "ingested"


@dg.asset(partitions_def=raw_video_partitions, group_name="curation", deps=[raw_videos], kinds={"python", "s3"},
          description="Single-shot segments (content-change detection); shots of 3 s or less are rejected.")
def video_shots(context: dg.AssetExecutionContext, config: CurationRunConfig, object_store: ObjectStoreResource,
                catalog: CatalogResource) -> dg.MaterializeResult:
    from lpm_models.data.curation.shots import detect_shots

    with tempfile.TemporaryDirectory(prefix="lpm-shots-") as tmp:
        st = VideoStage(context, object_store, Path(tmp))
        if not _ingested(catalog, st.raw_uri):
            uri = st.put_json("shots.json", {"video_id": st.video_id, "kept": [], "skipped": "not ingested"})
            return dg.MaterializeResult(metadata={**_funnel_metadata("shots", 0, 0.0, Counter(), uri),
                                                  "skipped": "rejected at ingestion"})
        kept, rejected = detect_shots(st.video(), curation_config(config), video_id=st.video_id)
        reasons: Counter = Counter()
        for shot, why in rejected:
            reasons[why.reason] += 1
            _reject(catalog, context, "shots", "shot", shot.shot_id, why.reason, why.detail)
        doc = {"video_id": st.video_id, "kept": [vars(s) | {"shot_id": s.shot_id} for s in kept],
               "rejected": [{"shot_id": s.shot_id, "reason": r.reason} for s, r in rejected]}
        uri = st.put_json("shots.json", doc)
    return dg.MaterializeResult(metadata=_funnel_metadata("shots", len(kept), sum(s.duration_s for s in kept),
                                                          reasons, uri))


@dg.asset(partitions_def=raw_video_partitions, group_name="curation", deps=[video_shots], kinds={"mediapipe", "s3"},
          description="One face track per person per shot (face mesh landmarks, smoothed crops, head pose).")
def face_tracks(context: dg.AssetExecutionContext, config: CurationRunConfig, object_store: ObjectStoreResource,
                catalog: CatalogResource) -> dg.MaterializeResult:
    from lpm_models.data.curation.tracks import track_faces
    from lpm_models.data.curation.types import Shot

    cfg = curation_config(config)
    with tempfile.TemporaryDirectory(prefix="lpm-tracks-") as tmp:
        st = VideoStage(context, object_store, Path(tmp))
        shots = [Shot(**{k: v for k, v in s.items() if k != "shot_id"}) for s in st.get_json("shots.json")["kept"]]
        kept, reasons = [], Counter()
        for shot in shots:
            tracks, rejected = track_faces(st.video(), shot, cfg)
            for subject, why in rejected:
                reasons[why.reason] += 1
                _reject(catalog, context, "tracks", "track", subject, why.reason, why.detail)
            for track in tracks:
                path = Path(tmp) / f"{track.track_id}.npz"
                track.save(path)
                st.put_file(f"tracks/{track.track_id}.npz", path)
                kept.append(track)
            context.log.info("shot %s: %d track(s), %d rejected", shot.shot_id, len(tracks), len(rejected))
        uri = st.put_json("tracks.json", {"video_id": st.video_id, "kept": [t.track_id for t in kept],
                                          "seconds": {t.track_id: t.duration_s for t in kept}})
    return dg.MaterializeResult(metadata=_funnel_metadata("tracks", len(kept), sum(t.duration_s for t in kept),
                                                          reasons, uri))


@dg.asset(partitions_def=raw_video_partitions, group_name="curation", deps=[face_tracks], kinds={"python", "s3"},
          description="Quality gate per track: resolution, sharpness, exposure, composition, landmark jitter, "
          "audio level, clipping, silence and audio-video sync. Passing tracks become clips.")
def quality_clips(context: dg.AssetExecutionContext, config: CurationRunConfig, object_store: ObjectStoreResource,
                  catalog: CatalogResource) -> dg.MaterializeResult:
    from lpm_models.data.curation.quality import assess_track
    from lpm_models.data.curation.types import Rejected
    from lpm_models.data.curation.video_io import read_audio

    cfg = curation_config(config)
    with tempfile.TemporaryDirectory(prefix="lpm-quality-") as tmp:
        st = VideoStage(context, object_store, Path(tmp))
        tracks = st.load_tracks(st.get_json("tracks.json")["kept"])
        reports, reasons = [], Counter()
        if tracks:
            try:
                audio = read_audio(st.video(), sample_rate=16000)
            except Rejected as why:
                audio = None
                for t in tracks:
                    reasons[why.reason] += 1
                    _reject(catalog, context, "quality", "track", t.track_id, why.reason, why.detail)
            for track in tracks if audio is not None else []:
                report = assess_track(track, st.video(), audio, cfg)
                reports.append(report.to_dict())
                for reason in report.reasons:
                    reasons[reason] += 1
                    _reject(catalog, context, "quality", "track", track.track_id, reason, report.details[reason])
        passed = [r["track_id"] for r in reports if r["passed"]]
        seconds = {t.track_id: t.duration_s for t in tracks}
        uri = st.put_json("quality.json", {"video_id": st.video_id, "passed": passed, "reports": reports})
    table = "\n".join(["| track | passed | reasons |", "|---|---|---|"] +
                      [f"| {r['track_id']} | {r['passed']} | {', '.join(r['reasons'])} |" for r in reports])
    return dg.MaterializeResult(metadata={
        **_funnel_metadata("quality", len(passed), sum(seconds[p] for p in passed), reasons, uri),
        "reports": dg.MetadataValue.md(table)})
