"""Dagster entry point: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.corpus import synthetic_corpus
from orchestration.assets.ingest import ingest_raw_job, raw_video_sensor, raw_videos
from orchestration.resources import default_resources

corpus_job = dg.define_asset_job("synthetic_corpus_job", selection=[synthetic_corpus])

defs = dg.Definitions(
    assets=[synthetic_corpus, raw_videos],
    jobs=[corpus_job, ingest_raw_job],
    sensors=[raw_video_sensor],
    resources=default_resources(),
)
