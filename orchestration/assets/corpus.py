"""The synthetic conversation corpus asset: generates deterministic two-person conversations,
uploads the videos to the raw bucket and their ground truth apart from them, and logs an MLflow run."""

import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX
from orchestration.resources import MlflowResource, ObjectStoreResource

TRUTH_BUCKET = "lpm-data"
TRUTH_PREFIX = "corpus-truth/"


class SyntheticCorpusConfig(dg.Config):
    """Run config of the synthetic corpus (defaults: the demo corpus of the main job). ``avoid_held_out``:
    keep every person of the corpus at least ``AVOID_DISTANCE`` (dlib) from LPM-Bench's held-out identities,
    so its benchmark never refuses a model trained on it for leakage."""

    seed: int = 0
    conversations: int = 12
    duration_s: float = 24.0
    size: int = 256
    split_fraction: float = 0.5
    identities: int = 24
    workers: int = 2
    avoid_held_out: bool = True


def _corpus_id(config: SyntheticCorpusConfig) -> str:
    return f"synth-s{config.seed}-n{config.conversations}-d{int(config.duration_s)}-p{config.size}"


@dg.asset(
    group_name="ingestion",
    kinds={"python", "s3", "mlflow"},
    description="Deterministic synthetic two-person conversations (split-screen calls and single-camera "
    "shots) with ground truth kept apart; fills the raw bucket that the ingestion sensor watches.",
)
def synthetic_corpus(
    context: dg.AssetExecutionContext,
    config: SyntheticCorpusConfig,
    object_store: ObjectStoreResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    from infra.local.settings import StackSettings
    from lpm_models.data.synth.corpus import CorpusConfig, generate_corpus, load_bank
    from lpm_models.data.synth.identities import distance_to, write_contact_sheet
    from quality.bench.casebuild import held_out_embeddings

    corpus_id = _corpus_id(config)
    cfg = CorpusConfig(seed=config.seed, n_conversations=config.conversations, duration_s=config.duration_s,
                       size=config.size, split_fraction=config.split_fraction, n_identities=config.identities,
                       workers=config.workers)
    cache_dir = StackSettings.from_env().home / "cache" / "identities"
    with tempfile.TemporaryDirectory(prefix="lpm-corpus-") as tmp, \
            mlflow.start_run(context, run_name=corpus_id, tags={"lpm.stage": "corpus"}) as run:
        import mlflow as mlf

        avoid = held_out_embeddings(cache_dir.parent) if config.avoid_held_out else None
        bank = load_bank(cfg, cache_dir, avoid=avoid)
        held_out_distance = float(distance_to(bank.embeddings, avoid).min()) if avoid is not None else None
        started = time.perf_counter()
        manifest = generate_corpus(cfg, Path(tmp) / "corpus", bank=bank, progress=lambda done, total, rec:
                                   context.log.info("generated %d/%d conversations (%s)", done, total, rec.video_id))
        gen_s = time.perf_counter() - started
        uploaded = _upload(object_store, manifest, corpus_id)
        video_s = manifest.total_duration_s
        report = bank.distance_report()
        sheet = write_contact_sheet(bank, Path(tmp) / "identities.png")
        mlf.log_params(config.model_dump())
        if held_out_distance is not None:  # nearest LPM-Bench held-out person (metric identity_distance_held_out_min)
            report = {**report, "held_out_min": round(held_out_distance, 4)}
        mlf.log_metrics({"videos": len(manifest.videos), "video_seconds": video_s,
                         "generation_x_realtime": video_s / max(gen_s, 1e-9)})
        mlf.log_metrics({f"identity_distance_{k}": float(v) for k, v in report.items()
                         if isinstance(v, (int, float))})
        mlf.log_dict(manifest.to_dict(), "corpus_manifest.json")
        mlf.log_artifact(str(manifest.root / manifest.videos[0].raw), artifact_path="preview")
        mlf.log_artifact(str(sheet), artifact_path="preview")
        run_url = mlflow.run_url(run.info.run_id)
    return dg.MaterializeResult(metadata={
        "corpus_id": corpus_id,
        "videos": len(manifest.videos),
        "video_seconds": round(video_s, 1),
        "generation_x_realtime": round(video_s / max(gen_s, 1e-9), 1),
        "raw_prefix": f"s3://{RAW_BUCKET}/{RAW_PREFIX}",
        "truth_prefix": f"s3://{TRUTH_BUCKET}/{TRUTH_PREFIX}{corpus_id}/",
        "identity_distances": dg.MetadataValue.json(report),
        "objects": dg.MetadataValue.json(uploaded),
        "mlflow_run": dg.MetadataValue.url(run_url),
        "preview": dg.MetadataValue.md(_preview_md(manifest)),
    })


def _upload(store: ObjectStoreResource, manifest, corpus_id: str) -> list[str]:
    """Videos to the raw bucket, ground truth to the data bucket (never next to the videos)."""
    keys = []
    truth_prefix = f"{TRUTH_PREFIX}{corpus_id}/"
    for video in manifest.videos:
        key = f"{RAW_PREFIX}{video.video_id}.mp4"
        store.put_file(RAW_BUCKET, key, manifest.root / video.raw, content_type="video/mp4")
        truth = manifest.root / video.truth
        for extra in sorted(truth.parent.glob(f"{truth.stem}*")):
            store.put_file(TRUTH_BUCKET, truth_prefix + extra.name, extra)
        keys.append(key)
    store.put_bytes(TRUTH_BUCKET, f"{truth_prefix}manifest.json",
                    json.dumps(manifest.to_dict(), indent=1).encode(), content_type="application/json")
    return keys


def _preview_md(manifest) -> str:
    rows = ["| video | layout | identities | seconds |", "|---|---|---|---|"]
    for v in manifest.videos[:12]:
        rows.append(f"| {v.video_id} | {v.layout} | {', '.join(v.identity_ids)} | {v.duration_s:.1f} |")
    return "\n".join(rows)
