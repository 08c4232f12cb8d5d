"""Catalog fixtures: the same tests run against SQLite and throwaway PostgreSQL databases.

PostgreSQL is reached through ``LPM_TEST_POSTGRES_URL`` (default: the local server as user
postgres). ``catalog_url`` gives each test a fresh, empty database ``lpm_test_<hex>``;
``catalog`` shares one migrated database per session, emptied before each test. Every
database is dropped at teardown.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from infra.catalog import Catalog, migrate
from infra.catalog.models import Base

DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _admin_connection() -> psycopg2.extensions.connection:
    url = make_url(os.environ.get("LPM_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL))
    try:
        conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                                password=url.password, dbname=url.database or "postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable ({exc}); start it or set LPM_TEST_POSTGRES_URL")
    conn.autocommit = True
    return conn


@contextmanager
def _postgres_database() -> Iterator[str]:
    admin = _admin_connection()
    name = f"lpm_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_url(os.environ.get("LPM_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)).set(
        drivername="postgresql+psycopg2", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped at teardown."""
    with _postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_postgres_url() -> Iterator[str]:
    """URL of one migrated PostgreSQL catalog shared by the session."""
    with _postgres_database() as url:
        migrate(url)
        yield url


def _empty_tables(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty (unmigrated) catalog database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated, empty catalog, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
        migrate(url)
    else:
        url = request.getfixturevalue("migrated_postgres_url")
        _empty_tables(url)
    with Catalog(url) as cat:
        yield cat
