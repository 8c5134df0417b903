"""`python -m workers`: Dramatiq's command line, its main process logging JSON too.

Dramatiq's main process logs through `logging.basicConfig` (plain text) while
the worker processes switch to JSON lines when they import `workers.broker`.
With `--skip-logging` Dramatiq leaves logging alone, and this sets up the JSON
lines first, so every line a worker writes is JSON.
"""

from __future__ import annotations

import sys

from dramatiq import cli

from application.logs import configure_logging
from application.settings import Settings


def main(argv: list[str]) -> int:
    args = cli.make_argument_parser().parse_args([*argv, "--skip-logging"])
    # Dramatiq writes its worker processes' lines to stderr: its own go there too.
    configure_logging(Settings.from_env().log_level, stream=sys.stderr)
    # On SIGHUP Dramatiq reloads by executing sys.argv again: make that us.
    sys.argv = [sys.executable, "-m", "workers", *argv]
    return int(cli.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
