# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-play-bag: replay a rosbag2 (sqlite3 or mcap) into the ROS graph, for the pip world.

The pip world has no `ros2 bag play`; this publishes the bag's messages at their recorded pace
(fgclip_ros.ros.bag_player.BagPlayer), e.g. the sample bag into a running fgclip-perception:

  fgclip-make-sample-bag --storage mcap --out /tmp/sample
  fgclip-play-bag /tmp/sample --wait-for /camera/image_raw

Arguments after --ros-args go to ROS (e.g. --ros-args --log-level debug); --remap here renames a
bag topic, it is not a ROS remapping rule.
"""

import argparse
import sys

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.core.errors import FgclipError

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-play-bag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bag", help="rosbag2 folder, or a .mcap / .db3 file")
    parser.add_argument("--topics", nargs="+", help="topics to play (default: all)")
    parser.add_argument("--rate", type=float, default=1.0, help="x the recorded pace (default: 1)")
    parser.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish FROM on TO")
    parser.add_argument(
        "--wait-for", nargs="+", default=[], metavar="TOPIC",
        help="wait until these bag topics have a subscriber before playing (what is sent earlier is lost)",
    )
    parser.add_argument("--wait-timeout", type=float, default=30.0, help="seconds (default: 30)")
    return describe_io(
        parser,
        inputs="BAG: a rosbag2 folder or a .mcap / .db3 file",
        outputs="the bag's messages, published on their topics (renamed by --remap) at the recorded pace;\n"
        "a line of what was sent on stdout",
        done="played",
        exit_codes={EXIT_INTERRUPTED: "interrupted (Ctrl-C)"},
    )


def _parse_remaps(pairs: list[str]) -> dict[str, str]:
    remap = {}
    for pair in pairs:
        source, sep, target = pair.partition(":=")
        if not sep or not source or not target:
            raise FgclipError(f"--remap {pair!r}: write FROM:=TO")
        remap[source] = target
    return remap


def main(argv: list[str] | None = None) -> int:
    from fgclip_ros.ros.bringup import split_ros_args

    ours, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    return run_main("fgclip-play-bag", build_parser(), lambda args: run(args, ros_args), ours)


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    """Play the bag; an FgclipError (a bad --remap, an unreadable bag) reaches run_main (exit 2)."""
    remap = _parse_remaps(args.remap)
    import rclpy

    from fgclip_ros.ros.bag_player import BagPlayer
    from fgclip_ros.ros.dds_profile import use_large_sample_profile

    # Only ROS arguments reach rcl: it would read this tool's own `--remap A:=B` as a (deprecated) rule.
    use_large_sample_profile()  # before the first participant: camera-sized images fit in shared memory
    rclpy.init(args=["fgclip-play-bag", "--ros-args", *ros_args] if ros_args else ["fgclip-play-bag"])
    node = rclpy.create_node("fgclip_bag_player")
    try:
        with BagPlayer(node, args.bag, topics=args.topics, rate=args.rate, remap=remap) as player:
            player.wait_for_subscribers(args.wait_for, timeout_s=args.wait_timeout)
            stats = player.play()
        sent = ", ".join(f"{topic} {count}" for topic, count in sorted(stats.published.items()))
        print(f"played {stats.bag_s:.1f} s of bag in {stats.wall_s:.1f} s: {sent}")
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
