# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Helpers for the graph tests: isolated DDS graph, node subprocess, test-side client, known-answer model.

The model is tiny and its answer known: two colour queries made separable by crafted re-projection heads.

Isolation: every process gets the test process's first `private_graph.domain_candidates` domain and
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, so parallel or repeated runs never see each other.
Every wait has a timeout; the node subprocess is always stopped (SIGINT, then SIGKILL).
Environment, waits, node subprocess and client node are the demo's own (fgclip_ros.ros.private_graph),
so these tests run the demo's graph plumbing too.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from fgclip_ros.ros import private_graph
from fgclip_ros.ros.private_graph import DemoClient, NodeRunner, domain_candidates, isolated_env, wait_until  # noqa: F401 - isolated_env re-exported

REPO_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # fgclip_ros/ (the ament package)
NODE = "/fgclip_perception"
RED_QUERY, BLUE_QUERY = "a red object", "a blue object"
RED_RGB, BLUE_RGB, GREY_RGB = (220, 30, 30), (30, 30, 220), (128, 128, 128)


# ----------------------------------------------------------------------------- isolation
def graph_domain_id() -> int:
    """The private graph's first domain for this process: the demo's own rule (private_graph)."""
    return domain_candidates(os.getpid())[0]


# ----------------------------------------------------------------------------- known-answer model
def solid_image(rgb, size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), rgb, np.uint8)


def build_known_answer_model(folder: Path) -> Path:
    """A tiny open_clip model + linear heads mapping red crops and RED_QUERY to one axis, blue to another.

    Writes model config JSON, weights, heads and a manifest into ``folder``; returns the manifest path.
    """
    import torch
    from conftest import TINY_ARCHITECTURE, TINY_CLIP_CONFIG, make_tiny_clip

    from fgclip_ros.core.pipeline import Pipeline
    from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    torch.save(make_tiny_clip(seed=0).state_dict(), folder / "tiny.pt")
    manifest = {
        "name": "graph-test-tiny",
        "description": "tiny random CLIP + crafted heads: red/blue queries are separable",
        "architecture": TINY_ARCHITECTURE,
        "model_config": {"path": "tiny.json"},
        "weights": {"path": "tiny.pt"},
        "input_size": TINY_CLIP_CONFIG["vision_cfg"]["image_size"],
        "embed_dim": TINY_CLIP_CONFIG["embed_dim"],
        "prompt_template": "{}",
    }
    identity_path = folder / "identity.yaml"
    identity_path.write_text(yaml.safe_dump(manifest))

    # Embeddings of solid red/blue crops and of the two queries through the real (identity-head) pipeline.
    pipeline = Pipeline.from_manifest(str(identity_path))
    images = []
    for rgb in (RED_RGB, BLUE_RGB):
        embedding, _ = pipeline.embed_crops(solid_image(rgb), np.array([[8, 8, 56, 56]], np.float64))
        images.append(embedding[0])
    pipeline.set_queries([RED_QUERY, BLUE_QUERY])
    texts = pipeline.query_bank.embeddings
    dim = TINY_CLIP_CONFIG["embed_dim"]
    targets = torch.eye(dim)[:, :2]  # red -> e0, blue -> e1

    def head_mapping(inputs: torch.Tensor) -> Head:  # inputs: (2, D) normalised embeddings
        head = Head("linear", dim)
        with torch.no_grad():
            head.layers[0].weight.copy_(targets @ torch.linalg.pinv(inputs.T.to(torch.float32)))
            head.layers[0].bias.zero_()
        return head

    heads = ReprojectionHeads(head_mapping(torch.stack(images)), head_mapping(texts))
    save_heads(heads, folder / "heads.pt")
    manifest["reprojection"] = {"kind": "linear", "sides": "both", "file": {"path": "heads.pt"}}
    path = folder / "graph-test-tiny.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def write_params(path: Path, manifest: Path, **overrides) -> Path:
    """The shipped config/perception.yaml with the test model and ``overrides`` (dots = nesting)."""
    data = yaml.safe_load((REPO_PACKAGE_DIR / "config" / "perception.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    params.update(
        {
            "model": str(manifest),
            "device": "cpu",
            "queries": [RED_QUERY, BLUE_QUERY],
            "autostart": True,
            "warn_period_s": 0.0,
            "diagnostics_period_s": 0.5,
        }
    )
    for key, value in overrides.items():
        node = params
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


# ----------------------------------------------------------------------------- the node process
class NodeProcess(NodeRunner):
    """The demo's node subprocess, run from the package folder so an uninstalled checkout imports too."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        super().__init__(args, env, log_path, cwd=REPO_PACKAGE_DIR)

    def log(self, tail: int = 4000) -> str:
        return self.log_text()[-tail:]

    def stop(self, sig=signal.SIGINT, timeout_s: float = 20.0) -> int:
        """Signal the process, wait, SIGKILL if needed; returns the exit code."""
        return super().stop(timeout_s, sig=sig)


# ----------------------------------------------------------------------------- the node in this process
@contextmanager
def in_process_node(client_name: str, ros_args: tuple[str, ...] = (), parameter_overrides=()):
    """(node, client): the perception node in this process, on this process's private graph.

    The node is built from ROS arguments as the executable builds it and spun by a MultiThreadedExecutor;
    the client is a test node on the same graph; both are shut down afterwards.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from fgclip_ros.ros.perception_node import PerceptionNode

    domain = graph_domain_id()
    with private_graph.private_graph_env(domain):
        context = rclpy.Context()
        args = ["fgclip-perception", *(["--ros-args", *ros_args] if ros_args else [])]
        rclpy.init(context=context, domain_id=domain, args=args)
        node = PerceptionNode(context=context, parameter_overrides=list(parameter_overrides))
        executor = MultiThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        client = GraphClient(domain, node_name=client_name)
        try:
            yield node, client
        finally:
            client.close()
            node.destroy_node()
            rclpy.try_shutdown(context=context)
            spinner.join(timeout=10)


def wait_started(node, timeout_s: float = 120.0) -> bool:
    """The outcome of the node's autostart (True: active), once it has ended."""
    started = node.autostart_result
    assert started is not None, "the node's autostart parameter is false"
    wait_until(started.done, timeout_s, what="the node's autostart")
    return started.result()


# ----------------------------------------------------------------------------- the test-side client
class GraphClient(DemoClient):
    """The demo's client node with the tests' defaults (node name, `NODE`) and helpers."""

    def __init__(self, domain_id: int, node_name: str = "fgclip_graph_test"):
        super().__init__(domain_id, node_name)

    # -------------------------------------------------------------- topics
    def publisher(self, msg_type, topic: str, depth: int = 10):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        return self.node.create_publisher(
            msg_type, topic, QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        )

    def subscribe(self, msg_type, topic: str, key: str | None = None, depth: int = 50):
        return self.record(msg_type, topic, key or topic, depth=depth)

    def clear(self, key: str) -> None:
        with self._lock:
            self.received[key] = []

    def wait_for_message(self, key: str, predicate=lambda msg: True, timeout_s: float = 20.0):
        def found():
            for msg in self.messages(key):
                if predicate(msg):
                    return msg
            return None

        return wait_until(found, timeout_s, what=f"a matching message on {key}")

    @staticmethod
    def wait_for_subscribers(publisher, count: int = 1, timeout_s: float = 30.0) -> None:
        wait_until(
            lambda: publisher.get_subscription_count() >= count,
            timeout_s,
            what=f"{count} subscriber(s) of {publisher.topic_name}",
        )

    # -------------------------------------------------------------- services
    def lifecycle_state(self, node: str = NODE, timeout_s: float = 10.0) -> str:
        return super().lifecycle_state(node, timeout_s)

    def change_state(self, transition_id: int, node: str = NODE, timeout_s: float = 120.0) -> bool:
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = transition_id
        return self.call(ChangeState, f"{node}/change_state", request, timeout_s).success

    def set_parameter(self, name: str, value, node: str = NODE, timeout_s: float = 60.0):
        """Set one parameter on the node; returns rcl_interfaces SetParametersResult."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        if isinstance(value, list):
            parameter = Parameter(name, Parameter.Type.STRING_ARRAY, value)
        else:
            parameter = Parameter(name, value=value)
        request = SetParameters.Request(parameters=[parameter.to_parameter_msg()])
        return self.call(SetParameters, f"{node}/set_parameters", request, timeout_s).results[0]

    def get_parameter(self, name: str, node: str = NODE, timeout_s: float = 30.0):
        return super().get_parameter(node, name, timeout_s)


# ----------------------------------------------------------------------------- messages
def make_header(stamp_ns: int, frame_id: str = "camera"):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return header


def make_image(image_rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    height, width = image_rgb.shape[:2]
    if encoding == "bgr8":
        pixels = np.ascontiguousarray(image_rgb[:, :, ::-1])
    else:
        pixels = np.ascontiguousarray(image_rgb)
    msg = Image(
        header=make_header(stamp_ns),
        height=height,
        width=width,
        encoding=encoding,
        step=width * 3,
        is_bigendian=0,
    )
    msg.data = pixels.tobytes()
    return msg


def make_detections(boxes_xyxy, stamp_ns: int, ids=None):
    from vision_msgs.msg import Detection2D, Detection2DArray

    msg = Detection2DArray(header=make_header(stamp_ns))
    for index, (x1, y1, x2, y2) in enumerate(boxes_xyxy):
        detection = Detection2D(header=msg.header, id=str(ids[index]) if ids else str(index))
        detection.bbox.center.position.x = (x1 + x2) / 2.0
        detection.bbox.center.position.y = (y1 + y2) / 2.0
        detection.bbox.size_x = float(x2 - x1)
        detection.bbox.size_y = float(y2 - y1)
        msg.detections.append(detection)
    return msg


def two_colour_scene(width: int = 96, height: int = 64) -> tuple[np.ndarray, list[tuple], list[str]]:
    """Grey image with a red patch (left) and a blue patch (right); boxes well inside each patch."""
    image = np.full((height, width, 3), GREY_RGB, np.uint8)
    image[8:56, 4:44] = RED_RGB
    image[8:56, 52:92] = BLUE_RGB
    return image, [(8, 12, 40, 52), (56, 12, 88, 52)], ["red-box", "blue-box"]
