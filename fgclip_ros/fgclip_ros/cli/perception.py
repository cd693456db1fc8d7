# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``fgclip-perception``: start the perception node with its parameter file (pip-world bringup)."""

import sys

from fgclip_ros.cli._common import run_main
from fgclip_ros.ros.bringup import build_parser, run, split_ros_args


def main(argv: list[str] | None = None) -> int:
    ours, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    return run_main("fgclip-perception", build_parser(), lambda options: run(options, ros_args), ours)


if __name__ == "__main__":
    sys.exit(main())
