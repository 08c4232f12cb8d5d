"""LPM-Bench results: bench_runs per system (baselines have no model version), per-case bench_results.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSON on SQLite, JSONB on PostgreSQL (as infra.catalog.models.JSONType)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """bench_runs.system, nullable bench_runs.model_version_id; create bench_results."""
    with op.batch_alter_table('bench_runs') as batch:
        batch.add_column(sa.Column('system', sa.String(length=64), nullable=True))
        batch.alter_column('model_version_id', existing_type=sa.Integer(), nullable=True)
    op.create_table('bench_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bench_run_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.String(length=255), nullable=False),
    sa.Column('subset', sa.String(length=64), nullable=False),
    sa.Column('overall', sa.Float(), nullable=True),
    sa.Column('scores', JSON_TYPE, nullable=False),
    sa.Column('metrics', JSON_TYPE, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['bench_run_id'], ['bench_runs.id'], name=op.f('fk_bench_results_bench_run_id_bench_runs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bench_results')),
    sa.UniqueConstraint('bench_run_id', 'case_id', name=op.f('uq_bench_results_bench_run_id_case_id'))
    )
    op.create_index(op.f('ix_bench_results_bench_run_id'), 'bench_results', ['bench_run_id'], unique=False)


def downgrade() -> None:
    """Drop bench_results; bench_runs back to one row per model version (baseline rows deleted)."""
    op.drop_table('bench_results')
    op.execute("DELETE FROM bench_runs WHERE model_version_id IS NULL")
    with op.batch_alter_table('bench_runs') as batch:
        batch.alter_column('model_version_id', existing_type=sa.Integer(), nullable=False)
        batch.drop_column('system')
