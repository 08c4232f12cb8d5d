"""`lpm services` — start, stop and inspect the embedded services of this machine.

    lpm services up [--only NAME ...] [--timeout S]
    lpm services down [--only NAME ...]
    lpm services status            # exit 0 only if every listed service is healthy
    eval "$(lpm services env)"     # point this shell's clients at the stack
    lpm services logs NAME [-n N]
    lpm services bench [--only NAME ...] [--sequential]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from urllib.parse import urlsplit

from infra.local.services import SERVICES, ServiceStatus, Stack
from infra.local.settings import StackSettings

DESCRIPTION = """\
Run the platform's services on this machine, bound to 127.0.0.1, with state, logs and PID
files under $LPM_HOME (default ./.lpm): object store (S3 API), MLflow, Triton, Dagster.
Ports and credentials come from LPM_* variables (see `lpm services env`).
"""
SECRET_KEYS = ("LPM_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `lpm services ...` to the command line."""
    parser = sub.add_parser(name, help=help_text, description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    names = list(SERVICES)

    up = cmds.add_parser("up", help="start services (no-op for running ones) and wait until healthy")
    up.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                    help=f"services to start (dependencies included): {', '.join(names)}")
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for health")
    up.set_defaults(func=_up)

    down = cmds.add_parser("down", help="stop services by PID (process group)")
    down.add_argument("--only", nargs="+", choices=names, metavar="NAME")
    down.set_defaults(func=_down)

    status = cmds.add_parser("status", help="table of services; exit 3 if one is not healthy")
    status.add_argument("--only", nargs="+", choices=names, metavar="NAME")
    status.set_defaults(func=_status)

    env = cmds.add_parser(
        "env",
        help="print `export` lines for clients",
        description="Print `export` lines that point clients at this stack. Secrets are "
        "printed only when the output is not a terminal (as in `eval \"$(lpm services env)\"`) "
        "or with --show-secrets; keep that output out of logs and shared files.",
    )
    env.add_argument("--show-secrets", action="store_true", help="print secrets on a terminal too")
    env.set_defaults(func=_env)

    logs = cmds.add_parser("logs", help="print the tail of a service log")
    logs.add_argument("service", choices=names)
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.set_defaults(func=_logs)

    bench = cmds.add_parser("bench", help="cold-start time per service in a fresh temp state dir")
    bench.add_argument("--only", nargs="+", choices=names, metavar="NAME")
    bench.add_argument("--sequential", action="store_true",
                       help="start one service at a time (each measured alone)")
    bench.add_argument("--timeout", type=float, default=300.0)
    bench.set_defaults(func=_bench)


def _up(args: argparse.Namespace) -> int:
    stack = Stack(StackSettings.from_env())
    statuses = stack.up(args.only, timeout=args.timeout)
    for st in statuses:
        how = "already running" if st.already_running else f"started in {st.startup_s:.1f} s"
        print(f"{st.name:<12} {how:<20} pid {st.pid:<8} {st.url}")
    print(f"state: {stack.settings.home}   clients: eval \"$(lpm services env)\"")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = Stack(StackSettings.from_env()).down(args.only)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    statuses = Stack(StackSettings.from_env()).status(args.only)
    _print_table(statuses)
    return 0 if all(st.healthy for st in statuses) else 3


def _print_table(statuses: list[ServiceStatus]) -> None:
    rows = [("NAME", "PID", "URL", "HEALTHY", "DETAIL")]
    for st in statuses:
        rows.append((st.name, str(st.pid or "-"), st.url, "yes" if st.healthy else "no", st.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])


def _env(args: argparse.Namespace) -> int:
    show = args.show_secrets or not sys.stdout.isatty()
    for line in env_lines(StackSettings.from_env(), show_secrets=show):
        print(line)
    return 0


def env_lines(settings: StackSettings, show_secrets: bool) -> list[str]:
    """``export`` lines for the client environment; secrets become comments unless shown."""
    lines = []
    for key, value in settings.client_env().items():
        if _is_secret(key, value) and not show_secrets:
            lines.append(f"# export {key}=<hidden on a terminal: eval \"$(lpm services env)\">")
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return lines


def _is_secret(key: str, value: str) -> bool:
    """Secret keys, and URLs that carry a password (e.g. a PostgreSQL catalog URL)."""
    if key in SECRET_KEYS:
        return True
    try:
        return "://" in value and bool(urlsplit(value).password)
    except ValueError:
        return False


def _logs(args: argparse.Namespace) -> int:
    stack = Stack(StackSettings.from_env())
    text = stack.logs(args.service, args.lines)
    if not text:
        print(f"no log yet at {stack.service(args.service).log_path}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from infra.local.bench import cold_start_bench

    result = cold_start_bench(args.only, sequential=args.sequential, timeout=args.timeout)
    mode = "sequential" if args.sequential else "parallel"
    print(f"cold start ({mode}, fresh state dir, {result.cpu_count} CPU cores)")
    for name, seconds in result.per_service.items():
        print(f"  {name:<12} {seconds:6.1f} s to healthy")
    print(f"  {'total':<12} {result.total_s:6.1f} s (wall, until all healthy)")
    print(f"  {'down':<12} {result.stop_s:6.1f} s")
    return 0
