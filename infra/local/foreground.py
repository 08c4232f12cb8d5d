"""Run one embedded service in the foreground (container entry point).

    python -m infra.local.foreground triton

Prepares the service exactly as ``lpm services up`` does (backend directory, library path,
config files) and then replaces this process with it, so a container runtime supervises the
server directly and its signals reach it. Settings come from the ``LPM_*`` environment; in a
container set ``LPM_HOST=0.0.0.0`` and publish the ports on the host's loopback.
"""

from __future__ import annotations

import argparse
import logging
import os

from infra.local.services import SERVICES, Stack
from infra.local.settings import StackSettings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Prepare the named service and exec it; returns only on argument errors."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.foreground",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=list(SERVICES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = StackSettings.from_env()
    service = Stack(settings).service(args.service)
    service.prepare()
    command = service.argv()
    env = service.env()
    # Client endpoints given explicitly (e.g. http://minio:9000 in compose) beat derived ones.
    for key in settings.client_env():
        if key in os.environ:
            env[key] = os.environ[key]
    log.info("exec %s for %s on %s", os.path.basename(command[0]), service.name, service.url())
    os.execve(command[0], command, env)
    return 1  # not reached: execve replaces the process


if __name__ == "__main__":
    raise SystemExit(main())
