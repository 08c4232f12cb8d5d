"""Dagster entry point: `dagster dev -m orchestration.definitions`."""

import dagster as dg

from orchestration.assets.corpus import synthetic_corpus
from orchestration.assets.curation import face_tracks, quality_clips, video_shots
from orchestration.assets.ingest import raw_video_partitions, raw_video_sensor, raw_videos
from orchestration.assets.understanding import performance_annotations, speak_listen_pairs
from orchestration.jobs import corpus_job, curate_video_job
from orchestration.resources import default_resources

defs = dg.Definitions(
    assets=[synthetic_corpus, raw_videos, video_shots, face_tracks, quality_clips, speak_listen_pairs,
            performance_annotations],
    jobs=[corpus_job, curate_video_job],
    sensors=[raw_video_sensor],
    resources=default_resources(),
)
