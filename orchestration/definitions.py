"""Dagster entry point: `dagster dev -m orchestration.definitions`."""

import dagster as dg

from orchestration.assets.corpus import synthetic_corpus
from orchestration.assets.curation import face_tracks, quality_clips, video_shots
from orchestration.assets.dataset import curated_dataset, curated_dataset_expectations
from orchestration.assets.distillation import online_lpm
from orchestration.assets.ingest import raw_video_sensor, raw_videos
from orchestration.assets.references import identity_references
from orchestration.assets.training import base_lpm, video_vae
from orchestration.assets.understanding import performance_annotations, speak_listen_pairs
from orchestration.jobs import corpus_job, curate_video_job, dataset_job, train_models_job
from orchestration.resources import default_resources

defs = dg.Definitions(
    assets=[synthetic_corpus, raw_videos, video_shots, face_tracks, quality_clips, speak_listen_pairs,
            performance_annotations, identity_references, curated_dataset, video_vae, base_lpm, online_lpm],
    asset_checks=[curated_dataset_expectations],
    jobs=[corpus_job, curate_video_job, dataset_job, train_models_job],
    sensors=[raw_video_sensor],
    resources=default_resources(),
)
