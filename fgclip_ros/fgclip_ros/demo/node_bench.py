# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node end to end: frames published at a fixed rate into the real node, in a private graph, timed.

For each backend the pip-world bringup (`fgclip-perception`, THE parameter file plus the model,
backend and 64 synthetic queries) runs as a subprocess (``ros.private_graph.NodeRunner``); a
client node (``DemoClient``) publishes image + detections pairs at ``rate_hz`` with the wall
clock as header stamp and records the node's ``fine_grained_detections``. Per frame size and box
count it reports:

- output rate: results received per second of publishing (at most ``rate_hz``; lower when the
  node drops frames it cannot keep up with: its input QoS is best effort with a short queue);
- stamp-to-output latency p50/p99: receive time minus the header stamp (same host, same clock);
- engine time p50: the node's own per-frame processing time (its /diagnostics ``latency_p50_ms``
  over a window that covers only this configuration);
- ROS overhead: latency p50 minus engine time p50 (conversion, DDS in and out, executor, queueing).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from fgclip_ros.core.msg_fields import stamp_ns
from fgclip_ros.ros.param_file import NODE_NAME

NODE = f"/{NODE_NAME}"
# The node's rate/latency window: shorter than each configuration's publishing time, so the
# status read at its end holds that configuration's frames only.
STATS_WINDOW_S = 4.0
DIAGNOSTICS_PERIOD_S = 0.5


@dataclass
class NodeBenchConfig:
    model: str = "fgsynth"
    backends: tuple[str, ...] = ("torch", "auto")
    sizes: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))
    boxes: tuple[int, ...] = (1, 4, 16)
    queries: int = 64
    rate_hz: float = 30.0
    seconds: float = 6.0  # publishing time per configuration (>= STATS_WINDOW_S + warm-up)
    warmup_s: float = 1.0  # the first results of a configuration are not counted
    params_file: Path | None = None
    extra_params: dict = field(default_factory=dict)
    startup_timeout_s: float = 300.0


@dataclass
class NodeBenchRow:
    backend: str
    provider: str
    width: int
    height: int
    boxes: int
    rate_hz: float
    published: int
    received: int
    output_hz: float
    latency_p50_ms: float
    latency_p99_ms: float
    engine_p50_ms: float
    ros_overhead_ms: float
    node_counters: dict = field(default_factory=dict)  # the node's input counters during this configuration


def _say(text: str) -> None:
    print(f"[fgclip-bench-node] {text}", file=sys.stderr, flush=True)


def _params_file(config: NodeBenchConfig, backend: str, folder: Path) -> Path:
    from fgclip_ros.benchmark.bench import synthetic_queries
    from fgclip_ros.ros.bringup import default_params_file

    source = Path(config.params_file) if config.params_file else default_params_file()
    data = yaml.safe_load(source.read_text())
    params = data["/**"]["ros__parameters"]
    params.update({
        "model": config.model,
        "backend": backend,
        "device": "cpu",
        "queries": synthetic_queries(config.queries),
        "autostart": True,
        "stats_window_s": STATS_WINDOW_S,
        "diagnostics_period_s": DIAGNOSTICS_PERIOD_S,
        **config.extra_params,
    })
    path = folder / f"params-{backend}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _messages(width: int, height: int, count: int, seed: int = 0):
    """(Image, Detection2DArray) with the synthetic frame and `count` boxes; stamps are set per publish."""
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2D, Detection2DArray

    from fgclip_ros.benchmark.bench import synthetic_boxes, synthetic_frame
    from fgclip_ros.ros.conversions import rgb_to_image

    image = rgb_to_image(synthetic_frame(width, height, seed), Header(frame_id="camera"))
    detections = Detection2DArray(header=Header(frame_id="camera"))
    for x1, y1, x2, y2 in synthetic_boxes(count, width, height, seed):
        detection = Detection2D()
        detection.bbox.center.position.x = float(x1 + x2) / 2.0
        detection.bbox.center.position.y = float(y1 + y2) / 2.0
        detection.bbox.size_x, detection.bbox.size_y = float(x2 - x1), float(y2 - y1)
        detections.detections.append(detection)
    return image, detections


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


class _Bench:
    def __init__(self, config: NodeBenchConfig, folder: Path, domain_id: int, client):
        self.config, self.folder, self.domain_id, self.client = config, folder, domain_id, client
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from fgclip_ros.ros.private_graph import wait_until

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = client.node.create_publisher(Image, "/image", qos)
        self.detections_pub = client.node.create_publisher(Detection2DArray, "/detections", qos)
        self.arrivals: dict[int, int] = {}  # stamp ns -> receive time ns
        self.diagnostics: list[dict] = []
        from fgclip_msgs.msg import FineGrainedDetections

        client.node.create_subscription(FineGrainedDetections, "/fine_grained_detections", self._on_output,
                                        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        client.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._wait_until = wait_until

    def _on_output(self, msg) -> None:
        received = time.time_ns()
        self.arrivals[stamp_ns(msg.header)] = received

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if NODE_NAME in status.name:
                values = {kv.key: kv.value for kv in status.values}
                values["hardware_id"] = status.hardware_id
                values["_received"] = time.monotonic()
                self.diagnostics.append(values)

    def run_backend(self, backend: str) -> list[NodeBenchRow]:
        from fgclip_ros.ros.private_graph import NodeRunner, isolated_env

        params = _params_file(self.config, backend, self.folder)
        log = self.folder / f"node-{backend}.log"
        node = NodeRunner(["--params-file", str(params)], isolated_env(self.domain_id), log)
        try:
            started = time.monotonic()
            self._wait_active(node)
            _say(f"backend {backend}: node active after {time.monotonic() - started:.1f} s (log {log})")
            self._wait_until(lambda: self.image_pub.get_subscription_count() >= 1
                             and self.detections_pub.get_subscription_count() >= 1, 30.0, "the node's inputs")
            rows = []
            for width, height in self.config.sizes:
                for count in self.config.boxes:
                    rows.append(self.run_one(backend, width, height, count))
                    row = rows[-1]
                    _say(f"{backend} {width}x{height} {count} boxes: {row.output_hz:.1f} Hz out of "
                         f"{row.rate_hz:g}, latency p50 {row.latency_p50_ms:.1f} ms "
                         f"p99 {row.latency_p99_ms:.1f} ms, engine p50 {row.engine_p50_ms:.1f} ms, "
                         f"ROS overhead {row.ros_overhead_ms:.1f} ms")
            return rows
        finally:
            node.stop()

    def _wait_active(self, node) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            if not node.alive():
                raise RuntimeError(f"the node exited during start-up: {node.failure_reason()}")
            try:
                if self.client.lifecycle_state(NODE, timeout_s=2.0) == "active":
                    return
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node was not active after {self.config.startup_timeout_s:g} s")
            time.sleep(0.5)

    def run_one(self, backend: str, width: int, height: int, count: int) -> NodeBenchRow:
        image, detections = _messages(width, height, count)
        before = self._counters(self._status_after(time.monotonic() - 1.0))
        period_ns = int(1e9 / self.config.rate_hz)
        self.arrivals.clear()
        stamps: list[int] = []
        start = time.time_ns()
        end = start + int(self.config.seconds * 1e9)
        next_ns = start
        while next_ns < end:
            now = time.time_ns()
            if now < next_ns:
                time.sleep((next_ns - now) / 1e9)
            stamp = time.time_ns()
            for msg in (image, detections):
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            self.image_pub.publish(image)
            self.detections_pub.publish(detections)
            stamps.append(stamp)
            next_ns += period_ns
        published_until = time.monotonic()
        time.sleep(0.5)  # the last results in flight
        status = self._status_after(published_until)
        counted = [s for s in stamps if s >= start + int(self.config.warmup_s * 1e9)]
        latencies = [(self.arrivals[s] - s) / 1e6 for s in counted if s in self.arrivals]
        span_s = (counted[-1] - counted[0]) / 1e9 + 1.0 / self.config.rate_hz if counted else math.nan
        engine = float(status.get("latency_p50_ms", "nan"))
        latency_p50 = _percentile(latencies, 50)
        after = self._counters(status)
        counters = {key: after[key] - before.get(key, 0) for key in after}
        return NodeBenchRow(backend, status.get("hardware_id", ""), width, height, count, self.config.rate_hz,
                            len(counted), len(latencies), len(latencies) / span_s, latency_p50,
                            _percentile(latencies, 99), engine, latency_p50 - engine, counters)

    @staticmethod
    def _counters(status: dict) -> dict:
        keys = ("frames_processed", "image_unmatched", "detections_unmatched", "image_overflow",
                "detections_overflow")
        return {key: int(float(status[key])) for key in keys if key in status}

    def _status_after(self, moment: float) -> dict:
        """The first /diagnostics status after `moment` (its window ends with this configuration)."""
        try:
            return self._wait_until(
                lambda: next((d for d in self.diagnostics if d["_received"] > moment), None),
                4 * DIAGNOSTICS_PERIOD_S + 2.0, "/diagnostics")
        except TimeoutError:
            return {}


def run_node_bench(config: NodeBenchConfig) -> list[NodeBenchRow]:
    import os

    from fgclip_ros.ros.private_graph import DemoClient, domain_candidates, private_graph_env

    domain = domain_candidates(os.getpid())[0]
    with tempfile.TemporaryDirectory(prefix="fgclip_bench_node_") as folder, private_graph_env(domain):
        client = DemoClient(domain, node_name="fgclip_bench_node")
        try:
            bench = _Bench(config, Path(folder), domain, client)
            rows = []
            for backend in config.backends:
                rows += bench.run_backend(backend)
            return rows
        finally:
            client.close()


def format_rows(rows: list[NodeBenchRow]) -> str:
    lines = ["| backend (provider) | frame | boxes | output Hz (of R) | latency p50 / p99 ms | "
             "engine p50 ms | ROS overhead p50 ms |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.backend} ({row.provider}) | {row.width}x{row.height} | {row.boxes} | "
                     f"{row.output_hz:.1f} ({row.rate_hz:g}) | "
                     f"{row.latency_p50_ms:.1f} / {row.latency_p99_ms:.1f} | "
                     f"{row.engine_p50_ms:.1f} | {row.ros_overhead_ms:.1f} |")
    return "\n".join(lines)


def rows_json(rows: list[NodeBenchRow], config: NodeBenchConfig) -> str:
    document = {"config": {**asdict(config), "params_file": str(config.params_file or "")},
                "rows": [asdict(row) for row in rows]}
    return json.dumps(document, indent=2, default=str)
