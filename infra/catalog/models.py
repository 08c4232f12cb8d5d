"""Catalog schema: raw sources and their rejections, curated clips, identities, datasets, models,
benchmarks, deployments, promotions and human ratings — the rows that let a served model be
walked back to the raw videos it was trained on.

Every schema change goes through an Alembic revision in ``infra/catalog/migrations/versions``;
``tests/infra/test_catalog.py`` fails when these models and the migrations disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSON on SQLite, JSONB (indexable, compact) on PostgreSQL.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SOURCE_STATUSES = ("ingested", "rejected")
CLIP_STATUSES = ("accepted", "rejected")
SEGMENT_LABELS = ("speak", "listen", "idle")
REFERENCE_KINDS = ("appearance", "pose", "expression")
SPLITS = ("train", "val", "test")
MODEL_KINDS = ("vae", "base", "online")
RUN_STATUSES = ("running", "succeeded", "failed")
DEPLOYMENT_STATUSES = ("pending", "live", "failed", "retired")
PROMOTION_ACTIONS = ("promote", "rollback", "refuse")
RATING_PREFERENCES = ("G", "S", "B")  # Good / Same / Bad: system A judged against system B
RATING_SYSTEMS = ("a", "b")


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=name)


def _fk(target: str, ondelete: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete=ondelete)


class Base(DeclarativeBase):
    """Declarative base; constraint names follow :data:`NAMING_CONVENTION`."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONType, str: sa.String(255)}


class Timestamps:
    """created_at / updated_at set by the database (UTC)."""

    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), onupdate=sa.func.now()
    )


class SourceVideo(Timestamps, Base):
    """One raw conversation video in the object store, as probed at ingestion."""

    __tablename__ = "source_videos"
    __table_args__ = (_one_of("status", SOURCE_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_key: Mapped[str] = mapped_column(sa.String(1024), unique=True)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    container: Mapped[str | None] = mapped_column(sa.String(32))
    video_codec: Mapped[str | None] = mapped_column(sa.String(32))
    audio_codec: Mapped[str | None] = mapped_column(sa.String(32))
    duration_s: Mapped[float | None]
    fps: Mapped[float | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    n_frames: Mapped[int | None]
    audio_rate: Mapped[int | None]
    audio_channels: Mapped[int | None]
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class Rejection(Timestamps, Base):
    """Why a subject (a source video, a clip, ...) was dropped at a curation stage."""

    __tablename__ = "rejections"
    __table_args__ = (sa.UniqueConstraint("stage", "subject_kind", "subject_key", "reason"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject_kind: Mapped[str] = mapped_column(sa.String(32))
    subject_key: Mapped[str] = mapped_column(sa.String(1024))
    subject_id: Mapped[int | None]
    reason: Mapped[str] = mapped_column(sa.String(64), index=True)
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))


class Identity(Timestamps, Base):
    """A character identity (a real or synthetic person, anime/3D/art character)."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(32), default="real")
    source: Mapped[str | None] = mapped_column(sa.String(512))
    licence: Mapped[str | None] = mapped_column(sa.String(128))
    meta: Mapped[dict[str, Any] | None]


class Clip(Timestamps, Base):
    """A single-shot, quality-filtered span of a source video, stored as its own object."""

    __tablename__ = "clips"
    __table_args__ = (_one_of("status", CLIP_STATUSES, "status"), sa.CheckConstraint("end_s > start_s", name="span"))

    id: Mapped[int] = mapped_column(primary_key=True)
    source_video_id: Mapped[int] = mapped_column(_fk("source_videos.id", "CASCADE"), index=True)
    identity_id: Mapped[int | None] = mapped_column(_fk("identities.id", "SET NULL"), index=True)
    clip_key: Mapped[str] = mapped_column(sa.String(1024), unique=True)
    start_s: Mapped[float]
    end_s: Mapped[float]
    n_frames: Mapped[int | None]
    fps: Mapped[float | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="accepted", index=True)
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class Segment(Timestamps, Base):
    """A run of frames of a clip with one speak / listen / idle label (and its caption)."""

    __tablename__ = "segments"
    __table_args__ = (
        sa.UniqueConstraint("clip_id", "start_frame"),
        _one_of("label", SEGMENT_LABELS, "label"),
        sa.CheckConstraint("end_frame > start_frame", name="span"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clip_id: Mapped[int] = mapped_column(_fk("clips.id", "CASCADE"))
    start_frame: Mapped[int]
    end_frame: Mapped[int]
    label: Mapped[str] = mapped_column(sa.String(16))
    caption: Mapped[str | None] = mapped_column(sa.Text)
    meta: Mapped[dict[str, Any] | None]


class IdentityReference(Timestamps, Base):
    """A reference image of an identity for one training clip (appearance / pose / expression).

    The global appearance reference must come from another clip than the one it conditions.
    """

    __tablename__ = "identity_references"
    __table_args__ = (
        _one_of("kind", REFERENCE_KINDS, "kind"),
        sa.CheckConstraint(
            "kind <> 'appearance' OR clip_id IS NULL OR source_clip_id IS NULL OR source_clip_id <> clip_id",
            name="appearance_outside_clip",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int] = mapped_column(_fk("identities.id", "CASCADE"), index=True)
    clip_id: Mapped[int | None] = mapped_column(_fk("clips.id", "CASCADE"), index=True)
    source_clip_id: Mapped[int | None] = mapped_column(_fk("clips.id", "SET NULL"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    frame_index: Mapped[int | None]
    object_key: Mapped[str] = mapped_column(sa.String(1024), unique=True)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class DatasetVersion(Timestamps, Base):
    """A curated dataset version: shards + manifest in the object store, logged to MLflow."""

    __tablename__ = "dataset_versions"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[str] = mapped_column(sa.String(64))
    manifest_uri: Mapped[str] = mapped_column(sa.String(1024))
    manifest_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    n_clips: Mapped[int] = mapped_column(default=0)
    mlflow_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class DatasetClip(Base):
    """Membership of a clip in a dataset version, with its split."""

    __tablename__ = "dataset_clips"
    __table_args__ = (_one_of("split", SPLITS, "split"),)

    dataset_version_id: Mapped[int] = mapped_column(_fk("dataset_versions.id", "CASCADE"), primary_key=True)
    clip_id: Mapped[int] = mapped_column(_fk("clips.id", "RESTRICT"), primary_key=True, index=True)
    split: Mapped[str] = mapped_column(sa.String(16), default="train")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class ModelVersion(Timestamps, Base):
    """A registered model version (MLflow name + version) and what it was trained from."""

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("name", "version"), _one_of("kind", MODEL_KINDS, "kind"))

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(16))
    preset: Mapped[str | None] = mapped_column(sa.String(64))
    dataset_version_id: Mapped[int | None] = mapped_column(_fk("dataset_versions.id", "SET NULL"), index=True)
    parent_id: Mapped[int | None] = mapped_column(_fk("model_versions.id", "SET NULL"))
    mlflow_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    artifact_uri: Mapped[str | None] = mapped_column(sa.String(1024))
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class BenchRun(Timestamps, Base):
    """One LPM-Bench evaluation of one system on a case set (scores per dimension in ``scores``).

    ``system``: ground_truth | still | base | online | triton; baselines have no model version.
    """

    __tablename__ = "bench_runs"
    __table_args__ = (_one_of("status", RUN_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int | None] = mapped_column(_fk("model_versions.id", "CASCADE"), index=True)
    system: Mapped[str | None] = mapped_column(sa.String(64))
    suite: Mapped[str] = mapped_column(sa.String(64), default="lpm-bench")
    suite_version: Mapped[str | None] = mapped_column(sa.String(32))
    subset: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    n_cases: Mapped[int | None]
    overall: Mapped[float | None]
    scores: Mapped[dict[str, Any] | None]
    mlflow_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class BenchResult(Base):
    """One case of a bench run: its subset, dimension scores (``scores``) and raw metrics (``metrics``)."""

    __tablename__ = "bench_results"
    __table_args__ = (sa.UniqueConstraint("bench_run_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bench_run_id: Mapped[int] = mapped_column(_fk("bench_runs.id", "CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(sa.String(255))
    subset: Mapped[str] = mapped_column(sa.String(64))
    overall: Mapped[float | None]
    scores: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class Deployment(Timestamps, Base):
    """A model version loaded on a Triton endpoint, with the results of its blocking checks."""

    __tablename__ = "deployments"
    __table_args__ = (_one_of("status", DEPLOYMENT_STATUSES, "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(_fk("model_versions.id", "RESTRICT"), index=True)
    target: Mapped[str] = mapped_column(sa.String(256))
    triton_model: Mapped[str] = mapped_column(sa.String(128))
    repository_uri: Mapped[str | None] = mapped_column(sa.String(1024))
    provenance_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending", index=True)
    checks: Mapped[dict[str, Any] | None]
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class Promotion(Base):
    """Audit log of alias moves in the model registry (append-only: no updated_at)."""

    __tablename__ = "promotions"
    __table_args__ = (_one_of("action", PROMOTION_ACTIONS, "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    registered_model: Mapped[str] = mapped_column(sa.String(128))
    alias: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(16))
    model_version_id: Mapped[int] = mapped_column(_fk("model_versions.id", "RESTRICT"), index=True)
    previous_model_version_id: Mapped[int | None] = mapped_column(_fk("model_versions.id", "SET NULL"))
    bench_run_id: Mapped[int | None] = mapped_column(_fk("bench_runs.id", "SET NULL"))
    deployment_id: Mapped[int | None] = mapped_column(_fk("deployments.id", "SET NULL"))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str | None] = mapped_column(sa.String(128))
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class RatingStudy(Timestamps, Base):
    """A human rating study of LPM-Bench: pairs of videos of two systems, judged on ``dimensions``."""

    __tablename__ = "rating_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    title: Mapped[str | None] = mapped_column(sa.String(255))
    system_a: Mapped[str] = mapped_column(sa.String(255))
    system_b: Mapped[str] = mapped_column(sa.String(255))
    dimensions: Mapped[list[str]] = mapped_column(JSONType)
    spec_sha256: Mapped[str] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None]


class RatingPair(Timestamps, Base):
    """One case of a study: the video of system A and the video of system B."""

    __tablename__ = "rating_pairs"
    __table_args__ = (sa.UniqueConstraint("study_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(_fk("rating_studies.id", "CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(sa.String(255))
    video_a: Mapped[str] = mapped_column(sa.String(1024))
    video_b: Mapped[str] = mapped_column(sa.String(1024))
    prompt: Mapped[str | None] = mapped_column(sa.Text)


class RatingVote(Timestamps, Base):
    """One rater on one pair: which system was shown on the left (recorded when first shown) and,
    once submitted, the Good / Same / Bad preference for system A over system B."""

    __tablename__ = "rating_votes"
    __table_args__ = (
        sa.UniqueConstraint("pair_id", "rater"),
        _one_of("left_system", RATING_SYSTEMS, "left_system"),
        _one_of("preference", RATING_PREFERENCES, "preference"),
        sa.CheckConstraint("(preference IS NULL) = (submitted_at IS NULL)", name="submitted"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(_fk("rating_pairs.id", "CASCADE"), index=True)
    rater: Mapped[str] = mapped_column(sa.String(128), index=True)
    left_system: Mapped[str] = mapped_column(sa.String(1))
    preference: Mapped[str | None] = mapped_column(sa.String(1))
    submitted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class RatingScore(Base):
    """A 1-5 rating of one system's video on one dimension, part of a vote."""

    __tablename__ = "rating_scores"
    __table_args__ = (
        _one_of("system", RATING_SYSTEMS, "system"),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name="score"),
    )

    vote_id: Mapped[int] = mapped_column(_fk("rating_votes.id", "CASCADE"), primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(1), primary_key=True)
    dimension: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    score: Mapped[int]
