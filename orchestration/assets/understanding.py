"""Per-video curation stages 4-5: speak/listen pairing of every clip, then performance annotations
(descriptors, detected actions, speaker and listener captions)."""

import tempfile
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np

from orchestration.assets.curation import CurationRunConfig, VideoStage, _funnel_metadata, quality_clips
from orchestration.assets.ingest import raw_video_partitions
from orchestration.resources import ObjectStoreResource


@dg.asset(partitions_def=raw_video_partitions, group_name="curation", deps=[quality_clips], kinds={"python", "s3"},
          description="Voice activity + active-speaker attribution: per-frame speak/listen/idle labels per clip, "
          "with the person's own (self) and the interlocutor's (other) audio tracks.")
def speak_listen_pairs(context: dg.AssetExecutionContext, config: CurationRunConfig,
                       object_store: ObjectStoreResource) -> dg.MaterializeResult:
    from lpm_models.data.curation.pairing import pair_shot
    from lpm_models.data.curation.video_io import read_audio

    with tempfile.TemporaryDirectory(prefix="lpm-pairing-") as tmp:
        st = VideoStage(context, object_store, Path(tmp))
        passed = set(st.get_json("quality.json")["passed"])
        all_tracks = st.load_tracks(st.get_json("tracks.json")["kept"])
        rows = []
        if passed:
            audio = read_audio(st.video(), sample_rate=16000)
            for shot_index in sorted({t.shot_index for t in all_tracks}):
                # attribution sees every face of the shot, so speech is never given to the wrong person
                shot_tracks = [t for t in all_tracks if t.shot_index == shot_index]
                for track, labels in zip(shot_tracks, pair_shot(shot_tracks, audio.samples, audio.sample_rate)):
                    if track.track_id not in passed:
                        continue
                    path = Path(tmp) / f"{track.track_id}.labels.npz"
                    np.savez_compressed(path, labels=labels.labels, self_audio=labels.self_audio,
                                        other_audio=labels.other_audio, sample_rate=labels.sample_rate,
                                        sync_offset=labels.sync_offset, sync_confidence=labels.sync_confidence)
                    st.put_file(f"labels/{track.track_id}.npz", path)
                    rows.append({"track_id": track.track_id, "seconds": track.duration_s, **labels.balance(),
                                 "sync_offset": labels.sync_offset, "sync_confidence": labels.sync_confidence})
        uri = st.put_json("pairing.json", {"video_id": st.video_id, "clips": rows})
    frames = sum(r["seconds"] for r in rows)
    balance = {k: round(sum(r[k] * r["seconds"] for r in rows) / frames, 3) if frames else 0.0
               for k in ("speak", "listen", "idle")}
    return dg.MaterializeResult(metadata={**_funnel_metadata("pairing", len(rows), frames, Counter(), uri),
                                          "label_balance": dg.MetadataValue.json(balance)})


@dg.asset(partitions_def=raw_video_partitions, group_name="curation", deps=[speak_listen_pairs],
          kinds={"python", "s3"},
          description="Performance understanding: nods, shakes, tilts, smiles, blinks, gaze-away, motion energy, "
          "expression intensity; detected actions; speaker captions and time-invariant listener captions.")
def performance_annotations(context: dg.AssetExecutionContext, object_store: ObjectStoreResource) -> dg.MaterializeResult:
    from lpm_models.data.curation.captions import caption_clip, load_taxonomy
    from lpm_models.data.curation.understanding import describe

    taxonomy = load_taxonomy()
    with tempfile.TemporaryDirectory(prefix="lpm-annotate-") as tmp:
        st = VideoStage(context, object_store, Path(tmp))
        clips = st.get_json("pairing.json")["clips"]
        tracks = st.load_tracks([c["track_id"] for c in clips])
        annotations, actions = {}, Counter()
        for track in tracks:
            with np.load(st.get_file(f"labels/{track.track_id}.npz")) as data:
                labels = data["labels"]
            desc = describe(track, labels)
            actions.update(e.action for e in desc.events)
            annotations[track.track_id] = {"descriptors": desc.to_dict(), "captions": caption_clip(desc),
                                           "taxonomy_version": taxonomy.version}
        uri = st.put_json("annotations.json", {"video_id": st.video_id, "clips": annotations})
    sample = next(iter(annotations.values()), {}).get("captions", {})
    return dg.MaterializeResult(metadata={
        **_funnel_metadata("annotations", len(annotations), sum(t.duration_s for t in tracks), Counter(), uri),
        "actions": dg.MetadataValue.json(dict(actions)), "taxonomy_version": str(taxonomy.version),
        "example_captions": dg.MetadataValue.md("\n\n".join(f"**{k}**: {v}" for k, v in sample.items()))})
