"""`lpm serve` — serving benchmark and latency probe against the running Triton."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def _stack_env() -> None:
    """Fill LPM_TRITON_* / LPM_S3_* from the local stack settings when the shell has not set them."""
    from infra.local.settings import StackSettings

    for key, value in StackSettings.from_env().client_env().items():
        if not os.environ.get(key):
            os.environ[key] = value


def register(sub: Any, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description="Measure the served Online LPM.")
    cmds = p.add_subparsers(dest="serve_command", metavar="ACTION", required=True)
    from serving.bench import add_arguments

    bench = cmds.add_parser("bench", help="RTF (1 and N streams), TTFF, Triton overhead, errors; --check gates",
                            description="Deploy an untrained model (or use --model), measure it, print figures; "
                                        "with --check exit 1 when a target is missed.")
    add_arguments(bench)
    bench.set_defaults(func=_bench)

    pr = cmds.add_parser("probe", help="K concurrent real-time streams against a served model",
                         description="Open K sessions paced at real time and print latency statistics.")
    pr.add_argument("--model", default="lpm-online", help="Triton model name (default %(default)s)")
    pr.add_argument("--version", default="", help="model version (default: the server's choice)")
    pr.add_argument("--url", help="Triton gRPC host:port (default: $LPM_TRITON_GRPC_URL or the local stack)")
    pr.add_argument("--streams", type=int, default=2, help="concurrent streams (default %(default)s)")
    pr.add_argument("--seconds", type=float, default=5.0, help="audio per stream (default %(default)s)")
    pr.set_defaults(func=_probe)


def _bench(args: argparse.Namespace) -> int:
    from serving.bench import run

    _stack_env()
    text, code = run(args)
    print(text)
    return code


def _probe(args: argparse.Namespace) -> int:
    from serving.probe import probe

    _stack_env()
    summary = probe(args.url or os.environ["LPM_TRITON_GRPC_URL"], args.model, args.version, streams=args.streams, seconds=args.seconds).summary()
    print(json.dumps(summary, indent=1))
    return 1 if summary["errors"] else 0
