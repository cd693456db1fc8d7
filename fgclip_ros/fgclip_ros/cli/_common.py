# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""What every console script shares: exit codes and the user-error boundary."""

import argparse
import logging
import sys
from collections.abc import Callable

from fgclip_ros.core.errors import FgclipError

EXIT_USER_ERROR = 2  # bad arguments, a missing or corrupt file: one line on stderr


def show_info_logs() -> None:
    """Our INFO lines (progress, model, provider) on stderr; other libraries stay at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fgclip_ros").setLevel(logging.INFO)


def run_main(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: list[str] | None, quiet_flag: str | None = None) -> int:
    """Parse `argv`, run, and turn an FgclipError into `prog: error: ...` and EXIT_USER_ERROR.

    `quiet_flag`: the name of a boolean argument that, when false, switches on `show_info_logs`.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (exit 2)
        return int(exc.code or 0)
    if quiet_flag is not None and not getattr(args, quiet_flag):
        show_info_logs()
    try:
        return run(args)
    except FgclipError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
