"""Human rating of LPM-Bench: studies, pairs, votes (order shown + Good/Same/Bad) and 1-5 scores.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON on SQLite, JSONB on PostgreSQL (as infra.catalog.models.JSONType)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    """Create rating_studies, rating_pairs, rating_votes and rating_scores."""
    op.create_table('rating_studies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=True),
    sa.Column('system_a', sa.String(length=255), nullable=False),
    sa.Column('system_b', sa.String(length=255), nullable=False),
    sa.Column('dimensions', JSON_TYPE, nullable=False),
    sa.Column('spec_sha256', sa.String(length=64), nullable=False),
    sa.Column('meta', JSON_TYPE, nullable=True),
    *_timestamps(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating_studies')),
    sa.UniqueConstraint('name', name=op.f('uq_rating_studies_name'))
    )
    op.create_table('rating_pairs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.String(length=255), nullable=False),
    sa.Column('video_a', sa.String(length=1024), nullable=False),
    sa.Column('video_b', sa.String(length=1024), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=True),
    *_timestamps(),
    sa.ForeignKeyConstraint(['study_id'], ['rating_studies.id'], name=op.f('fk_rating_pairs_study_id_rating_studies'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating_pairs')),
    sa.UniqueConstraint('study_id', 'case_id', name=op.f('uq_rating_pairs_study_id_case_id'))
    )
    op.create_index(op.f('ix_rating_pairs_study_id'), 'rating_pairs', ['study_id'], unique=False)
    op.create_table('rating_votes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pair_id', sa.Integer(), nullable=False),
    sa.Column('rater', sa.String(length=128), nullable=False),
    sa.Column('left_system', sa.String(length=1), nullable=False),
    sa.Column('preference', sa.String(length=1), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    *_timestamps(),
    sa.CheckConstraint("left_system IN ('a', 'b')", name=op.f('ck_rating_votes_left_system')),
    sa.CheckConstraint("preference IN ('G', 'S', 'B')", name=op.f('ck_rating_votes_preference')),
    sa.CheckConstraint('(preference IS NULL) = (submitted_at IS NULL)', name=op.f('ck_rating_votes_submitted')),
    sa.ForeignKeyConstraint(['pair_id'], ['rating_pairs.id'], name=op.f('fk_rating_votes_pair_id_rating_pairs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating_votes')),
    sa.UniqueConstraint('pair_id', 'rater', name=op.f('uq_rating_votes_pair_id_rater'))
    )
    op.create_index(op.f('ix_rating_votes_pair_id'), 'rating_votes', ['pair_id'], unique=False)
    op.create_index(op.f('ix_rating_votes_rater'), 'rating_votes', ['rater'], unique=False)
    op.create_table('rating_scores',
    sa.Column('vote_id', sa.Integer(), nullable=False),
    sa.Column('system', sa.String(length=1), nullable=False),
    sa.Column('dimension', sa.String(length=64), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.CheckConstraint("system IN ('a', 'b')", name=op.f('ck_rating_scores_system')),
    sa.CheckConstraint('score BETWEEN 1 AND 5', name=op.f('ck_rating_scores_score')),
    sa.ForeignKeyConstraint(['vote_id'], ['rating_votes.id'], name=op.f('fk_rating_scores_vote_id_rating_votes'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vote_id', 'system', 'dimension', name=op.f('pk_rating_scores'))
    )


def downgrade() -> None:
    """Drop the rating tables (dependents first)."""
    for table in ("rating_scores", "rating_votes", "rating_pairs", "rating_studies"):
        op.drop_table(table)
