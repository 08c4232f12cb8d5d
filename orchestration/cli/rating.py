"""`lpm rate` — human rating of LPM-Bench videos: build a study, serve the rating page, report.

The votes live in the catalog (LPM_CATALOG_URL, default SQLite under LPM_HOME).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(
        "Pairwise Good/Same/Bad preference and 1-5 ratings of two systems' videos by people. "
        "Votes are stored in the catalog (LPM_CATALOG_URL, else SQLite at $LPM_HOME/catalog.db)."))
    p.add_argument("--url", help="catalog URL (overrides LPM_CATALOG_URL)")
    cmds = p.add_subparsers(dest="rate_command", metavar="ACTION", required=True)

    serve = cmds.add_parser("serve", help="serve the rating page of a study (migrates the catalog first)")
    serve.add_argument("--study", type=Path, required=True, help="study JSON file (see `lpm rate make-study`)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; the page has no authentication)")
    serve.set_defaults(func=_serve)

    report = cmds.add_parser("report", help="aggregate a study's votes: majority per pair, win rate, mean ratings")
    report.add_argument("--study", required=True, help="study id (the `id` in the study file)")
    report.add_argument("--pairs", action="store_true", help="also list every pair's G/S/B counts and verdict")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    report.set_defaults(func=_report)

    make = cmds.add_parser("make-study", help="build a study from two folders of per-case MP4s with the same names")
    make.add_argument("dir_a", type=Path, help="videos of system A (one <case>.mp4 per case)")
    make.add_argument("dir_b", type=Path, help="videos of system B (same file names)")
    make.add_argument("--id", required=True, help="study id (letters, digits, . _ -)")
    make.add_argument("--out", type=Path, required=True, help="where to write the study JSON")
    make.add_argument("--system-a", help="name of system A (default: the folder name)")
    make.add_argument("--system-b", help="name of system B (default: the folder name)")
    make.add_argument("--title", help="title shown to raters")
    make.add_argument("--dimensions", nargs="+", help="dimensions to rate (default: all)")
    make.set_defaults(func=_make_study)


def _url(args: argparse.Namespace) -> str:
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.url:
        return args.url
    from infra.local.settings import StackSettings

    return StackSettings.from_env().catalog_db_url


def _serve(args: argparse.Namespace) -> int:
    url = _url(args)
    from infra.catalog import Catalog, migrate, safe_url
    from quality.rating.server import make_server
    from quality.rating.study import load_study

    study = load_study(args.study)
    migrate(url)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: anyone who reaches it can vote under any name", args.host)
    with Catalog(url) as catalog:
        server = make_server(study, catalog, host=args.host, port=args.port)
        print(f"rating study {study.id}: {len(study.pairs)} pairs, votes -> {safe_url(url)}")
        print(f"open {server.url}/  (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
    return 0


def _report(args: argparse.Namespace) -> int:
    url = _url(args)
    from infra.catalog import Catalog
    from quality.rating.aggregate import aggregate, format_report
    from quality.rating.store import RatingStore
    from quality.rating.study import DIMENSIONS

    with Catalog(url) as catalog:
        store = RatingStore(catalog)
        info = store.study(args.study)
        votes = store.votes(args.study)
    if not votes:
        print(f"study {info.name}: no submitted votes yet")
        return 1
    report = aggregate(votes, info.dimensions, resamples=args.resamples, seed=args.seed)
    if args.json:
        doc = {"study": info.name, "system_a": info.system_a, "system_b": info.system_b, **report.to_json()}
        print(json.dumps(doc, indent=2))
        return 0
    print(format_report(report, system_a=info.system_a, system_b=info.system_b,
                        dimensions={d: DIMENSIONS.get(d, d) for d in info.dimensions}, show_pairs=args.pairs,
                        header=f"study {info.name}" + (f": {info.title}" if info.title else "")))
    return 0


def _make_study(args: argparse.Namespace) -> int:
    from quality.rating.study import DIMENSIONS, make_study, write_study

    study = make_study(args.dir_a, args.dir_b, args.id, system_a=args.system_a, system_b=args.system_b,
                       dimensions=tuple(args.dimensions or DIMENSIONS), title=args.title)
    path = write_study(study, args.out)
    print(f"wrote {path}: study {study.id}, {len(study.pairs)} pairs, A = {study.system_a}, B = {study.system_b}")
    print(f"serve it with: lpm rate serve --study {path}")
    return 0
