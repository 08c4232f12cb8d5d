"""Jobs over the lineage. Per-video work is one partitioned job; corpus-wide stages are their own jobs."""

import dagster as dg

from orchestration.assets.ingest import raw_video_partitions

PER_VIDEO_ASSETS = ["raw_videos", "video_shots", "face_tracks", "quality_clips", "speak_listen_pairs",
                    "performance_annotations"]

corpus_job = dg.define_asset_job("synthetic_corpus_job", selection=["synthetic_corpus"])

curate_video_job = dg.define_asset_job(
    "curate_video", selection=PER_VIDEO_ASSETS, partitions_def=raw_video_partitions,
    description="Ingest one raw video and run every per-video curation stage on it.",
)

dataset_job = dg.define_asset_job(
    "build_dataset", selection=["identity_references", "curated_dataset"],
    description="Identities and references across all curated videos, then a new curated dataset version "
    "(its Great Expectations checks are blocking).",
)

TRAINING_ASSETS = ["video_vae", "base_lpm", "online_lpm"]

train_models_job = dg.define_asset_job(
    "train_models", selection=TRAINING_ASSETS,
    description="Video VAE -> Base LPM (FSDP, out of process via Dagster Pipes) -> Online LPM (distilled) on the "
    "newest curated dataset; each registered in MLflow (lpm-vae, lpm-base, lpm-online; alias challenger). "
    "Run config defaults are short CPU budgets; see orchestration.assets.training.training_run_config.",
)

SERVING_ASSETS = ["triton_model_repository", "triton_deployment", "model_promotion"]

deploy_and_promote_job = dg.define_asset_job(
    "deploy_and_promote", selection=SERVING_ASSETS,
    description="lpm-online@challenger -> Triton model repository -> deployment (explicit load, live check) with "
    "blocking checks smoke_stream and latency_slo -> model_promotion: alias champion moves only when both pass and "
    "LPM-Bench did not regress against the champion; audited in the catalog.",
)

evaluate_models_job = dg.define_asset_job(
    "evaluate_models", selection=["lpm_bench"],
    description="LPM-Bench on the newest lpm-online@challenger (and its Base LPM once per base version) with "
    "ground-truth and still-image baselines; results in MLflow and the catalog (runs after train_models).",
)
