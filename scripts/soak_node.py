#!/usr/bin/env python3
# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Soak / overload benchmark of the perception node in a private graph (prints figures; not a test).

Starts the pip-world bringup (`fgclip-perception`) with the shipped parameter file and --model,
publishes synthetic camera frames (image + 3 detections, header stamp = wall clock at publish)
at --rate Hz for --minutes, and prints: frames sent, outputs received and their rate, the
stamp-to-output latency p50/p99 (the node's own processing p50/p99 from /diagnostics next to it),
the node's RSS at the start and end of the steady state and its growth, and every drop counter of
/diagnostics by kind. Example (what docs/node.md records):

    PYTHONPATH=fgclip_ros .venv/bin/python scripts/soak_node.py --minutes 10 --rate 30 --model fgsynth
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

WARMUP_S = 10.0  # RSS growth is measured from here (model loaded, first frames done)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second sent")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--model", default="fgsynth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--reliability",
        choices=("best_effort", "reliable"),
        default=None,
        help="input QoS of the node (default: the parameter file's)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        help="image/detections subscription depth (QoS override; default: sensor data, 5)",
    )
    parser.add_argument("--every-frame", action="store_true", help="processing.every_frame: true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def node_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def frame(width: int, height: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    boxes = []
    for k, colour in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
        x1, y1 = width * (0.1 + 0.3 * k), height * 0.3
        x2, y2 = x1 + width * 0.2, y1 + height * 0.4
        image[int(y1) : int(y2), int(x1) : int(x2)] = colour
        boxes.append((x1, y1, x2, y2))
    return image, boxes


def main(argv=None) -> int:
    options = parse_args(argv)

    from fgclip_ros.ros.bringup import default_params_file
    from fgclip_ros.ros.private_graph import (
        DemoClient,
        NodeRunner,
        domain_candidates,
        isolated_env,
        private_graph_env,
    )

    folder = Path(tempfile.mkdtemp(prefix="fgclip-soak-"))
    data = yaml.safe_load(default_params_file().read_text())
    params = data["/**"]["ros__parameters"]
    params.update(model=options.model, device=options.device, autostart=True, warn_period_s=5.0)
    params["queries"] = ["a red object", "a blue object", "a green object"]
    params.setdefault("processing", {})["every_frame"] = bool(options.every_frame)
    overrides = {"reliability": options.reliability, "depth": options.depth}
    overrides = {policy: value for policy, value in overrides.items() if value}
    for topic in ("/image", "/detections") if overrides else ():  # ROS 2's standard QoS overrides
        params.setdefault("qos_overrides", {})[topic] = {"subscription": dict(overrides)}
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    domain = domain_candidates(os.getpid())[0]

    with private_graph_env(domain):
        node = NodeRunner(["--params-file", str(params_file)], isolated_env(domain), folder / "node.log")
        client = DemoClient(domain, "fgclip_soak")
        try:
            return run(options, node, client)
        finally:
            client.close()
            code = node.stop()
            print(f"node exit code {code}; log: {node.log_path}", file=sys.stderr)


def run(options, node, client) -> int:
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.srv import GetState
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2D, Detection2DArray

    from fgclip_msgs.msg import FineGrainedDetections
    from fgclip_ros.ros.private_graph import wait_until

    def active():
        if not node.alive():
            raise SystemExit(f"the node exited during start-up: {node.failure_reason()}")
        try:
            request = GetState.Request()
            return (
                client.call(GetState, "/fgclip_perception/get_state", request, 2.0).current_state.label
                == "active"
            )
        except TimeoutError:
            return False

    wait_until(active, 300.0, "the node to become active", interval_s=0.5)
    latencies: list[float] = []
    diagnostics: dict = {}
    lock = threading.Lock()

    def on_output(msg):
        received = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with lock:
            latencies.append((received - stamp) / 1e6)

    def on_diagnostics(msg):
        for status in msg.status:
            if "fgclip_perception" in status.name:
                with lock:
                    diagnostics.clear()
                    diagnostics.update({kv.key: kv.value for kv in status.values})

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    client.node.create_subscription(FineGrainedDetections, "/fine_grained_detections", on_output, reliable)
    client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
    camera_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)  # what camera drivers default to
    image_pub = client.node.create_publisher(Image, "/image", camera_qos)
    detections_pub = client.node.create_publisher(Detection2DArray, "/detections", camera_qos)
    wait_until(
        lambda: image_pub.get_subscription_count() and detections_pub.get_subscription_count(),
        60.0,
        "the node's subscriptions",
    )
    time.sleep(1.0)

    pixels, boxes = frame(options.width, options.height)
    payload = pixels.tobytes()
    period = 1.0 / options.rate
    duration = options.minutes * 60.0
    started = time.monotonic()
    next_send = started
    sent = 0
    rss: list[tuple[float, float]] = []
    next_rss = started
    last_progress = started
    while time.monotonic() - started < duration:
        now = time.monotonic()
        if now >= next_rss:
            rss.append((now - started, node_rss_mb(node.process.pid)))
            next_rss += 5.0
        if now - last_progress >= 30.0:
            with lock:
                outputs = len(latencies)
            print(
                f"[soak] {now - started:5.0f} s: sent {sent}, outputs {outputs}, RSS {rss[-1][1]:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            last_progress = now
        if now < next_send:
            time.sleep(min(next_send - now, 0.01))
            continue
        next_send += period
        stamp = time.time_ns()
        image = Image(height=options.height, width=options.width, encoding="rgb8", step=options.width * 3)
        image.header.frame_id = "camera"
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        image.data = payload
        detections = Detection2DArray(header=image.header)
        for index, (x1, y1, x2, y2) in enumerate(boxes):
            detection = Detection2D(header=image.header, id=str(index))
            detection.bbox.center.position.x, detection.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
            detection.bbox.size_x, detection.bbox.size_y = x2 - x1, y2 - y1
            detections.detections.append(detection)
        image_pub.publish(image)
        detections_pub.publish(detections)
        sent += 1
    elapsed = time.monotonic() - started
    time.sleep(3.0)  # last outputs and one more /diagnostics
    if not node.alive():
        raise SystemExit(f"the node died during the soak: {node.failure_reason()}")
    with lock:
        lat = np.array(latencies)
        diag = dict(diagnostics)
    steady = [mb for t, mb in rss if t >= WARMUP_S] or [mb for _, mb in rss]
    figures = {
        "minutes": options.minutes,
        "rate_hz_sent": options.rate,
        "size": f"{options.width}x{options.height}",
        "model": options.model,
        "every_frame": options.every_frame,
        "input_qos": f"{options.reliability or 'best_effort'}, depth {options.depth or 5}",
        "frames_sent": sent,
        "outputs": int(lat.size),
        "output_rate_hz": round(lat.size / elapsed, 2),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        "processing_p50_ms": diag.get("latency_p50_ms"),
        "processing_p99_ms": diag.get("latency_p99_ms"),
        "rss_start_mb": round(steady[0], 1),
        "rss_end_mb": round(steady[-1], 1),
        "rss_growth_pct": round(100.0 * (steady[-1] - steady[0]) / steady[0], 2),
        "node_received": {k: diag.get(f"{k}_received") for k in ("image", "detections")},
        "paired": diag.get("paired"),
        "frames_processed": diag.get("frames_processed"),
        "drops": {
            key: value
            for key, value in sorted(diag.items())
            if key.startswith(("dropped.", "dds_lost.")) or key.endswith(("_unmatched", "_overflow"))
        },
    }
    for key, value in figures.items():
        print(f"{key:>20}: {value}")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
