"""`lpm` — the platform's command line.

Each subcommand lives in its own module under ``orchestration.cli`` and exposes
``register(subparsers)``; modules are imported only when their command runs, so
``lpm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("orchestration.cli.services", "start, stop and inspect the embedded services"),
    "corpus": ("orchestration.cli.corpus", "generate the synthetic conversation corpus"),
    "catalog": ("orchestration.cli.catalog", "migrate and inspect the catalog database"),
    "ingest": ("orchestration.cli.ingest", "probe raw videos and record them in the catalog"),
    "curation": ("orchestration.cli.curation", "benchmark curation: throughput and accuracy vs ground truth"),
    "run": ("orchestration.cli.run", "materialize the lineage (the main job)"),
    "model": ("orchestration.cli.model", "model presets; champion promotions audit trail and rollback"),
    "stream": ("orchestration.cli.stream", "stream audio to the served Online LPM, write the video"),
    "serve": ("orchestration.cli.serve", "serving benchmark and latency probe"),
    "bench": ("orchestration.cli.bench", "LPM-Bench: evaluate models on held-out cases, compare runs"),
    "rate": ("orchestration.cli.rating", "human rating of LPM-Bench videos: study, rating page, report"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpm", description="LPM platform command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if name == wanted:
            importlib.import_module(module).register(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # libraries' INFO chatter (Great Expectations logs ~200 lines per validation)
        for noisy in ("great_expectations", "urllib3", "botocore", "alembic.runtime"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        logging.getLogger("lpm").error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
