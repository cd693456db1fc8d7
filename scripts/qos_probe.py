#!/usr/bin/env python3
# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Do camera-sized images reach a best-effort reader? DDS alone, no node (prints one line per case).

A sender (reliable or best-effort writer, depth 10) exists first, then a reader with the node's
default input QoS (best effort, depth 5) joins, as a node activating after its camera does. Four
frames go out as soon as the writer sees the reader, GAP seconds apart, while the reader's
callback takes CALLBACK seconds (a node processing in its callback). Prints which frames arrived.

    PYTHONPATH=fgclip_ros .venv/bin/python scripts/qos_probe.py
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

CASES = [
    # width, height, writer reliability, gap between frames (s), reader callback time (s)
    (w, h, rel, gap, cb)
    for (w, h), rel, (gap, cb) in itertools.product(
        [(640, 480), (1280, 720)],
        ["reliable", "best_effort"],
        [(0.3, 0.0), (0.0, 0.0), (0.0, 0.1), (0.033, 0.1)],
    )
]


def one_case(width: int, height: int, reliability: str, gap_s: float, callback_s: float) -> str:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    writer_ctx, reader_ctx = rclpy.Context(), rclpy.Context()
    rclpy.init(context=writer_ctx)
    rclpy.init(context=reader_ctx)
    writer_node = rclpy.create_node("qos_probe_writer", context=writer_ctx)
    reader_node = rclpy.create_node("qos_probe_reader", context=reader_ctx)
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    writer = writer_node.create_publisher(Image, "/image", QoSProfile(depth=10, reliability=policy))
    time.sleep(1.0)
    received: list[int] = []

    def on_image(msg):
        received.append(msg.header.stamp.sec)
        time.sleep(callback_s)

    reader_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    reader_node.create_subscription(Image, "/image", on_image, reader_qos)
    executor = SingleThreadedExecutor(context=reader_ctx)
    executor.add_node(reader_node)
    threading.Thread(target=lambda: executor.spin(), daemon=True).start()
    while writer.get_subscription_count() < 1:
        time.sleep(0.01)
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    msg.data = bytes(width * height * 3)
    for k in range(4):
        msg.header.stamp.sec = k
        writer.publish(msg)
        time.sleep(gap_s)
    time.sleep(3.0)
    return (
        f"{width}x{height} writer {reliability:<11} gap {gap_s:5.3f} s callback {callback_s:3.1f} s: "
        f"received {sorted(set(received))} of [0, 1, 2, 3]"
    )


def main() -> int:
    if len(sys.argv) == 6:  # one case, in its own process (fresh participants)
        w, h, rel, gap, cb = sys.argv[1:]
        print(one_case(int(w), int(h), rel, float(gap), float(cb)), flush=True)
        os._exit(0)  # skip rclpy teardown of the spinning executor
    from fgclip_ros.ros.private_graph import domain_candidates, isolated_env

    env = isolated_env(domain_candidates(os.getpid())[0])
    for case in CASES:
        run = subprocess.run(
            [sys.executable, __file__, *map(str, case)], env=env, capture_output=True, text=True
        )
        print(next((line for line in run.stdout.splitlines() if "received" in line), run.stderr[-300:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
