"""Corpus-wide curation stage 6: identities across videos and identity-aware reference images."""

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.assets.curation import CURATION_PREFIX, DATA_BUCKET, _reject
from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX, raw_video_partitions
from orchestration.assets.understanding import performance_annotations
from orchestration.resources import CatalogResource, ObjectStoreResource

REFERENCES_PREFIX = "references/"
PLANS_KEY = REFERENCES_PREFIX + "plans.json"


class ReferencesConfig(dg.Config):
    """Clip length and the reference choice."""

    clip_seconds: float = 8.0
    min_clip_seconds: float = 3.0
    image_size: int = 128


def curated_videos(store: ObjectStoreResource, instance: dg.DagsterInstance) -> list[str]:
    """Partitions whose per-video curation reached the annotation stage (video ids, sorted)."""
    ids = [Path(p).stem for p in instance.get_dynamic_partitions(raw_video_partitions.name)]
    return sorted(v for v in ids if store.exists(DATA_BUCKET, f"{CURATION_PREFIX}{v}/annotations.json"))


def load_video_clips(store: ObjectStoreResource, video_id: str, workdir: Path) -> tuple[Path, list[Any]]:
    """Download a curated video and the tracks that survived pairing."""
    from lpm_models.data.curation.types import FaceTrack

    prefix = f"{CURATION_PREFIX}{video_id}/"
    pairing = json.loads(store.get_bytes(DATA_BUCKET, prefix + "pairing.json"))
    tracks = []
    for clip in pairing["clips"]:
        path = store.get_file(DATA_BUCKET, f"{prefix}tracks/{clip['track_id']}.npz", workdir / f"{clip['track_id']}.npz")
        tracks.append(FaceTrack.load(path))
    raw = next(k for k in store.list(RAW_BUCKET, RAW_PREFIX) if Path(k).stem == video_id)
    video = store.get_file(RAW_BUCKET, raw, workdir / Path(raw).name, verify=False)
    return video, tracks


@dg.asset(group_name="curation", deps=[performance_annotations], kinds={"dlib", "s3"},
          description="Identity embeddings (dlib 128-d) cluster tracks into identities across videos; every clip "
          "gets a global appearance reference from OUTSIDE the clip, 1-4 pose views and 1-8 expression references.")
def identity_references(context: dg.AssetExecutionContext, config: ReferencesConfig,
                        object_store: ObjectStoreResource, catalog: CatalogResource) -> dg.MaterializeResult:
    from lpm_models.data.curation.clips import split_clips
    from lpm_models.data.curation.identity import FaceEncoder, cluster_tracks, profile_video
    from lpm_models.data.curation.references import ReferenceConfig, plan_all_references, render_references
    from lpm_models.data.dataset.codec import encode_png

    videos = curated_videos(object_store, context.instance)
    if not videos:
        raise dg.Failure("no curated videos yet: materialize the per-video curation (job curate_video) first")
    with tempfile.TemporaryDirectory(prefix="lpm-refs-") as tmp:
        encoder, profiles, tracks, paths = FaceEncoder(), {}, {}, {}
        for i, video_id in enumerate(videos, 1):
            work = Path(tmp) / video_id
            work.mkdir()
            paths[video_id], video_tracks = load_video_clips(object_store, video_id, work)
            tracks.update({t.track_id: t for t in video_tracks})
            profiles.update(profile_video(paths[video_id], video_tracks, encoder=encoder))
            context.log.info("profiled %d/%d videos (%d tracks)", i, len(videos), len(tracks))
        identity_of = cluster_tracks(profiles, tracks.values())
        clips = [c for t in tracks.values() for c in split_clips(t, config.clip_seconds, config.min_clip_seconds)]
        ref_cfg = ReferenceConfig(image_size=config.image_size)
        plans, rejected = plan_all_references(clips, tracks, identity_of, ref_cfg, profiles)
        for clip_id, why in rejected.items():
            _reject(catalog, context, "references", "clip", clip_id, why.reason, why.detail)
        sets = render_references(plans, tracks, paths, ref_cfg)
        documents = []
        for refs in sets:
            images = {"appearance": [refs.appearance], "pose": refs.poses, "expression": refs.expressions}
            stored = {}
            for kind, items in images.items():
                stored[kind] = []
                for j, item in enumerate(items):
                    key = f"{REFERENCES_PREFIX}{refs.clip.clip_id}/{kind}_{j}.png"
                    object_store.put_bytes(DATA_BUCKET, key, encode_png(item.image), content_type="image/png")
                    stored[kind].append({"key": key, "source": item.source.to_dict()})
            documents.append({"clip": vars(refs.clip), "identity": identity_of[refs.clip.track_id], "images": stored})
        plans_uri = object_store.put_bytes(DATA_BUCKET, PLANS_KEY, json.dumps(
            {"videos": videos, "identity_of": identity_of, "clips": documents}, indent=1).encode(),
            content_type="application/json")
    sizes = Counter(identity_of.values())
    return dg.MaterializeResult(metadata={
        "videos": len(videos), "tracks": len(tracks), "identities": len(sizes),
        "clips_with_references": len(documents), "clips_rejected": len(rejected),
        "rejections": dg.MetadataValue.json(dict(Counter(r.reason for r in rejected.values()))),
        "tracks_per_identity": dg.MetadataValue.json(dict(sorted(sizes.items()))),
        "plans": dg.MetadataValue.path(plans_uri),
    })
