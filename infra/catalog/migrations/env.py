"""Alembic environment of the catalog. Run through :mod:`infra.catalog.schema`, which passes either
a live connection (``config.attributes["connection"]``) or, in offline mode, a URL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from infra.catalog.db import make_engine
from infra.catalog.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs by table copy
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Emit SQL for the configured dialect instead of touching a database."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the caller's connection, or open one from the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no catalog URL: use `lpm catalog migrate` (reads LPM_CATALOG_URL)")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
