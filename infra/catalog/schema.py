"""Alembic, driven from code: apply, inspect and check the catalog's migrations.

The migration scripts live inside the package (``infra/catalog/migrations``) and are located from
this file, so migrating works from any working directory and from an installed wheel.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from infra.catalog.db import make_engine, safe_url, writer
from infra.catalog.models import Base

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x4C504D43  # "LPMC": serialises concurrent migrations on PostgreSQL
_PROCESS_LOCK = threading.Lock()  # alembic's `context` proxy is process-global: one command at a time


def alembic_config(connection: sa.Connection | None = None, url: str | None = None,
                   output: io.StringIO | None = None) -> Config:
    """An Alembic Config for the packaged migrations, bound to a live connection or a URL."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with the code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found under {MIGRATIONS_DIR / 'versions'}")
    return head


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None if never migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _locked_run(url: str, action: str, revision: str) -> str | None:
    engine = make_engine(url)
    try:
        with _PROCESS_LOCK, writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            before = MigrationContext.configure(conn).get_current_revision()
            getattr(command, action)(alembic_config(connection=conn), revision)
            after = MigrationContext.configure(conn).get_current_revision()
        if before != after:
            log.info("catalog %s: %s %s -> %s", safe_url(url), action, before or "<empty>", after or "<empty>")
        return after
    finally:
        engine.dispose()


def migrate(url: str, revision: str = "head") -> str | None:
    """Upgrade the catalog at ``url`` to ``revision`` (default head); returns the new revision.

    Safe to call from several processes at once: PostgreSQL takes an advisory lock, SQLite the
    write lock, for the whole upgrade, which runs in one transaction.
    """
    return _locked_run(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> str | None:
    """Downgrade the catalog at ``url`` to ``revision`` ("base" drops every catalog table)."""
    return _locked_run(url, "downgrade", revision)


def upgrade_sql(revision: str = "head", dialect: str = "postgresql") -> str:
    """The SQL an upgrade from empty to ``revision`` would run (offline mode, for DBAs)."""
    output = io.StringIO()
    config = alembic_config(url=f"{dialect}://", output=output)
    command.upgrade(config, revision, sql=True)
    return output.getvalue()


def schema_diff(url: str, metadata: sa.MetaData | None = None) -> list[Any]:
    """Differences between the models (or ``metadata``) and the database at ``url``; empty when
    they agree."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            return list(compare_metadata(context, Base.metadata if metadata is None else metadata))
    finally:
        engine.dispose()


def new_revision(message: str) -> Path:
    """Autogenerate a revision from the models' difference to head (uses a scratch SQLite DB).

    Review the generated file before committing it: autogenerate does not see CHECK constraints
    or renames.
    """
    with tempfile.TemporaryDirectory(prefix="lpm-catalog-rev-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        migrate(url)
        if not schema_diff(url):
            raise RuntimeError("the models match the newest migration; there is nothing to generate")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                script = command.revision(alembic_config(connection=conn), message=message, autogenerate=True)
        finally:
            engine.dispose()
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic did not produce a single revision script")
    return Path(script.path)
