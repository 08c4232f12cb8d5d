"""Dagster entry point: `dagster dev -m orchestration.definitions`."""

import dagster as dg

from orchestration.assets.bench import lpm_bench
from orchestration.assets.corpus import synthetic_corpus
from orchestration.assets.curation import face_tracks, quality_clips, video_shots
from orchestration.assets.dataset import curated_dataset, curated_dataset_expectations
from orchestration.assets.distillation import online_lpm
from orchestration.assets.ingest import raw_video_sensor, raw_videos
from orchestration.assets.promotion import model_promotion
from orchestration.assets.references import identity_references
from orchestration.assets.serving import triton_deployment, triton_model_repository
from orchestration.assets.serving_checks import latency_slo, smoke_stream
from orchestration.assets.training import base_lpm, video_vae
from orchestration.assets.understanding import performance_annotations, speak_listen_pairs
from orchestration.jobs import (
    corpus_job, curate_video_job, dataset_job, deploy_and_promote_job, evaluate_models_job, train_models_job,
)
from orchestration.resources import default_resources

defs = dg.Definitions(
    assets=[synthetic_corpus, raw_videos, video_shots, face_tracks, quality_clips, speak_listen_pairs,
            performance_annotations, identity_references, curated_dataset, video_vae, base_lpm, online_lpm,
            triton_model_repository, triton_deployment, model_promotion,
            lpm_bench],
    asset_checks=[curated_dataset_expectations, smoke_stream, latency_slo],
    jobs=[corpus_job, curate_video_job, dataset_job, train_models_job, deploy_and_promote_job, evaluate_models_job],
    sensors=[raw_video_sensor],
    resources=default_resources(),
)
