"""Engines for the catalog: SQLite (embedded default) or PostgreSQL (production).

SQLite is set up for several processes (Dagster steps, the CLI) sharing one file: WAL journal,
enforced foreign keys, a busy timeout, and real transactions — pysqlite's implicit BEGIN is
replaced by an explicit one, ``BEGIN IMMEDIATE`` for writers so two writers never deadlock on a
lock upgrade.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

log = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_S = 30.0
WRITE_OPTION = "lpm_catalog_write"


def parse_url(url: str | URL) -> URL:
    """Parse and validate a catalog URL (sqlite:///FILE or postgresql+psycopg2://...)."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"catalog URL {safe_url(parsed)!r} uses backend {parsed.get_backend_name()!r}; "
            "use sqlite:///PATH or postgresql+psycopg2://USER@HOST:PORT/DB (LPM_CATALOG_URL)"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ValueError("an in-memory SQLite catalog would vanish with each connection; give a file: sqlite:///PATH")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, for logs and CLI output."""
    return make_url(url).render_as_string(hide_password=True)


def _set_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL, retrying while another process holds the lock (this pragma ignores the
    busy timeout; once the file is in WAL mode it is a no-op)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        _set_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """A SQLAlchemy engine for the catalog at ``url`` (creates a SQLite file's parent folder)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)


def writer(engine: Engine) -> Engine:
    """The same engine whose transactions take the write lock up front (SQLite; no-op elsewhere)."""
    return engine.execution_options(**{WRITE_OPTION: True})
