# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``fgclip-query``: ask the running perception node which detections match some queries.

    fgclip-query --query "a transparent glass bottle" --query "a red ceramic mug" --wait --timeout 5
    fgclip-query --json                     # the node's current queries, latest frame, as JSON

Without --query the node answers with its current query set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from fgclip_ros.cli._common import EXIT_USER_ERROR, describe_io, run_main

EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE = 0, 1, EXIT_USER_ERROR


def build_parser() -> argparse.ArgumentParser:
    from fgclip_ros.ros.query_client import DEFAULT_SERVICE

    parser = argparse.ArgumentParser(
        prog="fgclip-query",
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after --ros-args go to ROS.",
    )
    parser.add_argument(
        "--query", action="append", default=[], metavar="TEXT",
        help="a query, repeatable (none: the node's current query set)",
    )
    # The old spelling, queries as positional arguments, still accepted, not shown.
    parser.add_argument("old_queries", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument(
        "--min-score", type=float, default=math.nan, help="match threshold (default: the node's min_score)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="answer from the next processed frame, not the latest"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="with --wait: seconds to wait for a frame (0: the node's default)",
    )
    parser.add_argument(
        "--service", default=DEFAULT_SERVICE, help=f"service name (default {DEFAULT_SERVICE})"
    )
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the service")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--all", action="store_true", help="also list detections without a match / rejected")
    return describe_io(
        parser,
        inputs="the --query texts; the running node's Query service (--service)",
        outputs="the node's answer on stdout: a table, or JSON with --json",
        done="answered",
        exit_codes={
            EXIT_REFUSED: "the node answered with success=false (its reason on stderr)",
            EXIT_UNAVAILABLE: "no answer (no service, a timeout); or a user error",
        },
    )


def print_table(answer: dict, show_all: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    stamp = answer["stamp"]
    table = Table(
        title=f"frame {stamp['sec']}.{stamp['nanosec']:09d} {answer['frame_id']}".rstrip(),
        caption=f"{len(answer['queries'])} queries",
    )
    for column, justify in (
        ("#", "right"),
        ("id", "left"),
        ("box (cx, cy, w, h)", "left"),
        ("best query", "left"),
        ("score", "right"),
        ("prob", "right"),
        ("margin", "right"),
    ):
        table.add_column(column, justify=justify)
    shown = 0
    for index, det in enumerate(answer["detections"]):
        matched = det["valid"] and det["best_index"] >= 0
        if not matched and not show_all:
            continue
        box = det["bbox"]
        box_text = f"{box['center_x']:.0f}, {box['center_y']:.0f}, {box['size_x']:.0f}, {box['size_y']:.0f}"
        if not det["valid"]:
            best = f"[red]rejected: {det['rejected_reason']}[/red]"
            numbers = ("", "", "")
        else:
            best = det["best_query"] if matched else "[dim]no match[/dim]"
            numbers = (f"{det['score']:.3f}", f"{det['probability']:.3f}", f"{det['margin']:.3f}")
        table.add_row(str(index), det["id"], box_text, best, *numbers)
        shown += 1
    console = Console()
    console.print(table)
    hidden = len(answer["detections"]) - shown
    if hidden:
        total = len(answer["detections"])
        console.print(f"({hidden} of {total} detections not shown: no match or rejected; --all lists them)")


def main(argv: list[str] | None = None) -> int:
    from fgclip_ros.ros.bringup import split_ros_args

    ours, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    return run_main("fgclip-query", build_parser(), lambda options: run(options, ros_args), ours)


def run(options: argparse.Namespace, ros_args: list[str]) -> int:
    """Ask the node; no answer is EXIT_UNAVAILABLE, a refusal EXIT_REFUSED."""
    import rclpy

    from fgclip_ros.ros.query_client import QueryUnavailable, call_query, response_to_dict

    rclpy.init(args=["fgclip-query", "--ros-args", *ros_args] if ros_args else ["fgclip-query"])
    node = rclpy.create_node("fgclip_query")
    try:
        response = call_query(
            node,
            options.query + options.old_queries,
            options.min_score,
            options.wait,
            options.timeout,
            options.service,
            options.connect_timeout,
        )
    except QueryUnavailable as exc:
        print(f"fgclip-query: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return EXIT_UNAVAILABLE
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    answer = response_to_dict(response)
    if options.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    elif answer["success"]:
        print_table(answer, options.all)
    if not answer["success"]:
        print(f"fgclip-query: the node refused: {answer['message']}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
