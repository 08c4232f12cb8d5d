"""`lpm catalog` — migrate and inspect the catalog database (LPM_CATALOG_URL, default SQLite under LPM_HOME)."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime
from typing import Any

_CELL_WIDTH = 40


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(
        "Migrate and inspect the catalog. The database is LPM_CATALOG_URL "
        "(e.g. postgresql+psycopg2://USER@HOST:5432/DB), else SQLite at $LPM_HOME/catalog.db."))
    p.add_argument("--url", help="catalog URL (overrides LPM_CATALOG_URL)")
    cmds = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    migrate = cmds.add_parser("migrate", help="upgrade the schema to the newest revision (or --revision)")
    migrate.add_argument("--revision", default="head", help="target revision (default head)")
    migrate.add_argument("--sql", action="store_true",
                         help="print the upgrade's SQL for PostgreSQL instead of running it")
    migrate.set_defaults(func=_migrate)
    status = cmds.add_parser("status", help="schema revision, row counts, ingestion outcome")
    status.set_defaults(func=_status)
    show = cmds.add_parser("show", help="print the newest rows of a table")
    show.add_argument("table", help="table name (see `lpm catalog status`)")
    show.add_argument("-n", type=int, default=20, help="number of rows (default 20)")
    show.add_argument("--json", action="store_true", help="one JSON object per row")
    show.set_defaults(func=_show)
    revision = cmds.add_parser("revision", help="(developers) autogenerate a migration from changed models")
    revision.add_argument("-m", "--message", required=True, help="what the migration changes")
    revision.set_defaults(func=_revision)


def _url(args: argparse.Namespace) -> str:
    """The catalog URL to use; also quiets Alembic's per-step INFO logs unless -v."""
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.url:
        return args.url
    from infra.local.settings import StackSettings

    return StackSettings.from_env().catalog_db_url


def _migrate(args: argparse.Namespace) -> int:
    url = _url(args)
    from infra.catalog import current_revision, migrate, safe_url
    from infra.catalog.schema import upgrade_sql

    if args.sql:
        print(upgrade_sql(args.revision))
        return 0
    before = current_revision(url)
    after = migrate(url, args.revision)
    change = "already at" if before == after else f"{before or '<empty>'} ->"
    print(f"catalog {safe_url(url)}: {change} {after}")
    return 0


def _status(args: argparse.Namespace) -> int:
    url = _url(args)
    from infra.catalog import Catalog, current_revision, head_revision, safe_url

    current, head = current_revision(url), head_revision()
    state = "up to date" if current == head else "NOT up to date: run `lpm catalog migrate`"
    print(f"catalog   {safe_url(url)}")
    print(f"revision  {current or '<empty>'} (head {head}) {state}")
    if current is None:
        return 1
    with Catalog(url) as catalog:
        counts = catalog.counts()
        videos, reasons = catalog.source_video_counts(), catalog.rejection_counts()
    print("rows:")
    for table, n in counts.items():
        print(f"  {table:<22} {n:>8}")
    if videos:
        print("source videos: " + ", ".join(f"{status} {n}" for status, n in videos.items()))
    if reasons:
        print("rejections:    " + ", ".join(f"{reason} {n}" for reason, n in reasons.items()))
    return 0 if current == head else 1


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 3] + "..."


def _show(args: argparse.Namespace) -> int:
    url = _url(args)
    from infra.catalog import Catalog

    with Catalog(url) as catalog:
        columns, rows = catalog.rows(args.table, args.n)
    if args.json:
        for row in rows:
            print(json.dumps(dict(zip(columns, row)), default=str, sort_keys=False))
        return 0
    if not rows:
        print(f"{args.table}: no rows")
        return 0
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"({len(rows)} newest rows of {args.table})")
    return 0


def _revision(args: argparse.Namespace) -> int:
    _url(args)
    from infra.catalog.schema import new_revision

    path = new_revision(args.message)
    print(f"wrote {path.name} in infra/catalog/migrations/versions; review it (CHECK constraints and renames "
          "are not detected) and run the catalog tests")
    return 0
