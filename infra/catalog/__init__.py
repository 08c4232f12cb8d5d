"""The platform catalog (SQLAlchemy 2 + Alembic): what was ingested, rejected, curated, trained,
benchmarked, deployed and promoted. SQLite on one machine, PostgreSQL in production."""

from infra.catalog.api import Catalog, Subject
from infra.catalog.db import make_engine, safe_url
from infra.catalog.schema import current_revision, downgrade, head_revision, migrate, schema_diff

__all__ = [
    "Catalog", "Subject", "current_revision", "downgrade", "head_revision", "make_engine", "migrate",
    "safe_url", "schema_diff",
]
