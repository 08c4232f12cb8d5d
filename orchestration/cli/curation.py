"""`lpm curation` — benchmark the curation pipeline against the synthetic corpus' ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description="Curation tools (the stages themselves run as Dagster assets).")
    cmds = p.add_subparsers(dest="curation_command", metavar="ACTION", required=True)
    bench = cmds.add_parser(
        "bench", help="per-stage throughput next to decode-only, and accuracy against ground truth",
        description="Generate (or reuse) a benchmark corpus, run every curation stage over it one video at a "
        "time, and print seconds of video per wall/CPU second per stage next to decode-only, the whole "
        "pipeline, speak/listen frame accuracy, action precision/recall and identity purity.")
    bench.add_argument("--conversations", type=int, default=6, help="benchmark videos (default 6)")
    bench.add_argument("--duration", type=float, default=16.0, help="seconds per video (default 16)")
    bench.add_argument("--identities", type=int, default=6, help="identity bank size (default 6)")
    bench.add_argument("--seed", type=int, default=11, help="corpus seed (default 11)")
    bench.add_argument("--workers", type=int, default=2,
                       help="videos the pipeline curates in parallel, as the main job does (default 2)")
    bench.add_argument("--dir", type=Path, default=None, help="corpus cache (default $LPM_HOME/cache/bench)")
    bench.add_argument("--overrides", default="{}",
                       help='curation config overrides as JSON, e.g. \'{"tracks": {"mesh_every": 2}}\' '
                       "(same format as the Dagster run config)")
    bench.add_argument("--json", type=Path, default=None, help="also write the full report to this file")
    bench.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from infra.local.settings import StackSettings
    from lpm_models.data.curation.benchmark import format_report, run_benchmark, verdicts
    from lpm_models.data.curation.config import CurationConfig

    cfg = CurationConfig.from_dict(json.loads(args.overrides))
    base = args.dir or StackSettings.from_env().home / "cache" / "bench"
    report = run_benchmark(base, args.conversations, args.duration, args.seed, args.identities, args.workers, cfg)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    failed = [name for name, (_, _, ok) in verdicts(report).items() if not ok]
    return 1 if args.check and failed else 0
