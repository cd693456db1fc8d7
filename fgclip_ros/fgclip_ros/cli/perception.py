# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``fgclip-perception``: start the perception node with its parameter file (pip-world bringup)."""

import sys

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.ros.bringup import EXIT_CONFIGURE_FAILED, build_parser, run, split_ros_args


def _parser():
    return describe_io(
        build_parser(),
        inputs="--params-file: the node's parameter YAML; camera images and vision_msgs/Detection2DArray\n"
        "on its topics; queries on the queries topic and the Query service",
        outputs="fine_grained_detections, detections_labeled, ~/debug_image, /diagnostics; the Query\n"
        "service's answers; the node's log on stderr",
        done="stopped by SIGINT/SIGTERM",
        exit_codes={EXIT_CONFIGURE_FAILED: "the node did not start (model load or configure failed)"},
    )


def main(argv: list[str] | None = None) -> int:
    ours, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    return run_main("fgclip-perception", _parser(), lambda options: run(options, ros_args), ours)


if __name__ == "__main__":
    sys.exit(main())
