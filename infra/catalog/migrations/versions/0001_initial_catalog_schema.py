"""Initial catalog schema: sources, rejections, curation, datasets, models, bench, serving.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON on SQLite, JSONB on PostgreSQL (as infra.catalog.models.JSONType)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the catalog tables, constraints and indexes."""
    op.create_table('dataset_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('manifest_uri', sa.String(length=1024), nullable=False),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=True),
    sa.Column('n_clips', sa.Integer(), nullable=False),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_versions')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_dataset_versions_name_version'))
    )
    op.create_table('identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=512), nullable=True),
    sa.Column('licence', sa.String(length=128), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identities')),
    sa.UniqueConstraint('name', name=op.f('uq_identities_name'))
    )
    op.create_table('rejections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=False),
    sa.Column('subject_kind', sa.String(length=32), nullable=False),
    sa.Column('subject_key', sa.String(length=1024), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejections')),
    sa.UniqueConstraint('stage', 'subject_kind', 'subject_key', 'reason', name=op.f('uq_rejections_stage_subject_kind_subject_key_reason'))
    )
    op.create_index(op.f('ix_rejections_reason'), 'rejections', ['reason'], unique=False)
    op.create_index(op.f('ix_rejections_stage'), 'rejections', ['stage'], unique=False)
    op.create_table('source_videos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('object_key', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('container', sa.String(length=32), nullable=True),
    sa.Column('video_codec', sa.String(length=32), nullable=True),
    sa.Column('audio_codec', sa.String(length=32), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('fps', sa.Float(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('n_frames', sa.Integer(), nullable=True),
    sa.Column('audio_rate', sa.Integer(), nullable=True),
    sa.Column('audio_channels', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("status IN ('ingested', 'rejected')", name=op.f('ck_source_videos_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_videos')),
    sa.UniqueConstraint('object_key', name=op.f('uq_source_videos_object_key'))
    )
    op.create_index(op.f('ix_source_videos_sha256'), 'source_videos', ['sha256'], unique=False)
    op.create_index(op.f('ix_source_videos_status'), 'source_videos', ['status'], unique=False)
    op.create_table('clips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_video_id', sa.Integer(), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=True),
    sa.Column('clip_key', sa.String(length=1024), nullable=False),
    sa.Column('start_s', sa.Float(), nullable=False),
    sa.Column('end_s', sa.Float(), nullable=False),
    sa.Column('n_frames', sa.Integer(), nullable=True),
    sa.Column('fps', sa.Float(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("status IN ('accepted', 'rejected')", name=op.f('ck_clips_status')),
    sa.CheckConstraint('end_s > start_s', name=op.f('ck_clips_span')),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_clips_identity_id_identities'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_video_id'], ['source_videos.id'], name=op.f('fk_clips_source_video_id_source_videos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clips')),
    sa.UniqueConstraint('clip_key', name=op.f('uq_clips_clip_key'))
    )
    op.create_index(op.f('ix_clips_identity_id'), 'clips', ['identity_id'], unique=False)
    op.create_index(op.f('ix_clips_source_video_id'), 'clips', ['source_video_id'], unique=False)
    op.create_index(op.f('ix_clips_status'), 'clips', ['status'], unique=False)
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('preset', sa.String(length=64), nullable=True),
    sa.Column('dataset_version_id', sa.Integer(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=True),
    sa.Column('artifact_uri', sa.String(length=1024), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("kind IN ('vae', 'base', 'online')", name=op.f('ck_model_versions_kind')),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_model_versions_dataset_version_id_dataset_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['parent_id'], ['model_versions.id'], name=op.f('fk_model_versions_parent_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_model_versions_name_version'))
    )
    op.create_index(op.f('ix_model_versions_dataset_version_id'), 'model_versions', ['dataset_version_id'], unique=False)
    op.create_table('bench_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('suite', sa.String(length=64), nullable=False),
    sa.Column('suite_version', sa.String(length=32), nullable=True),
    sa.Column('subset', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('n_cases', sa.Integer(), nullable=True),
    sa.Column('overall', sa.Float(), nullable=True),
    sa.Column('scores', JSON_TYPE, nullable=True),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name=op.f('ck_bench_runs_status')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_bench_runs_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bench_runs'))
    )
    op.create_index(op.f('ix_bench_runs_model_version_id'), 'bench_runs', ['model_version_id'], unique=False)
    op.create_table('dataset_clips',
    sa.Column('dataset_version_id', sa.Integer(), nullable=False),
    sa.Column('clip_id', sa.Integer(), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("split IN ('train', 'val', 'test')", name=op.f('ck_dataset_clips_split')),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], name=op.f('fk_dataset_clips_clip_id_clips'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_dataset_clips_dataset_version_id_dataset_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_version_id', 'clip_id', name=op.f('pk_dataset_clips'))
    )
    op.create_index(op.f('ix_dataset_clips_clip_id'), 'dataset_clips', ['clip_id'], unique=False)
    op.create_table('deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=256), nullable=False),
    sa.Column('triton_model', sa.String(length=128), nullable=False),
    sa.Column('repository_uri', sa.String(length=1024), nullable=True),
    sa.Column('provenance_sha256', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('checks', JSON_TYPE, nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'live', 'failed', 'retired')", name=op.f('ck_deployments_status')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_deployments_model_version_id_model_versions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments'))
    )
    op.create_index(op.f('ix_deployments_model_version_id'), 'deployments', ['model_version_id'], unique=False)
    op.create_index(op.f('ix_deployments_status'), 'deployments', ['status'], unique=False)
    op.create_table('identity_references',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=False),
    sa.Column('clip_id', sa.Integer(), nullable=True),
    sa.Column('source_clip_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('frame_index', sa.Integer(), nullable=True),
    sa.Column('object_key', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("kind <> 'appearance' OR clip_id IS NULL OR source_clip_id IS NULL OR source_clip_id <> clip_id", name=op.f('ck_identity_references_appearance_outside_clip')),
    sa.CheckConstraint("kind IN ('appearance', 'pose', 'expression')", name=op.f('ck_identity_references_kind')),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], name=op.f('fk_identity_references_clip_id_clips'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_identity_references_identity_id_identities'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_clip_id'], ['clips.id'], name=op.f('fk_identity_references_source_clip_id_clips'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_references')),
    sa.UniqueConstraint('object_key', name=op.f('uq_identity_references_object_key'))
    )
    op.create_index(op.f('ix_identity_references_clip_id'), 'identity_references', ['clip_id'], unique=False)
    op.create_index(op.f('ix_identity_references_identity_id'), 'identity_references', ['identity_id'], unique=False)
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clip_id', sa.Integer(), nullable=False),
    sa.Column('start_frame', sa.Integer(), nullable=False),
    sa.Column('end_frame', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=16), nullable=False),
    sa.Column('caption', sa.Text(), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("label IN ('speak', 'listen', 'idle')", name=op.f('ck_segments_label')),
    sa.CheckConstraint('end_frame > start_frame', name=op.f('ck_segments_span')),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], name=op.f('fk_segments_clip_id_clips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
    sa.UniqueConstraint('clip_id', 'start_frame', name=op.f('uq_segments_clip_id_start_frame'))
    )
    op.create_table('promotions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('registered_model', sa.String(length=128), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('previous_model_version_id', sa.Integer(), nullable=True),
    sa.Column('bench_run_id', sa.Integer(), nullable=True),
    sa.Column('deployment_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=True),
    sa.Column('dagster_run_id', sa.String(length=64), nullable=True),
    sa.Column('meta', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.CheckConstraint("action IN ('promote', 'rollback', 'refuse')", name=op.f('ck_promotions_action')),
    sa.ForeignKeyConstraint(['bench_run_id'], ['bench_runs.id'], name=op.f('fk_promotions_bench_run_id_bench_runs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_promotions_deployment_id_deployments'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_promotions_model_version_id_model_versions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['previous_model_version_id'], ['model_versions.id'], name=op.f('fk_promotions_previous_model_version_id_model_versions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotions'))
    )
    op.create_index(op.f('ix_promotions_model_version_id'), 'promotions', ['model_version_id'], unique=False)


def downgrade() -> None:
    """Drop every catalog table (dependents first)."""
    for table in (
        "promotions",
        "segments",
        "identity_references",
        "deployments",
        "dataset_clips",
        "bench_runs",
        "model_versions",
        "clips",
        "source_videos",
        "rejections",
        "identities",
        "dataset_versions",
    ):
        op.drop_table(table)
