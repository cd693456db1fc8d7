# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The perception node in a real DDS graph, one node process (pip-world bringup) for the module.

A test node publishes frames and queries and checks outputs, service answers, diagnostics and lifecycle.

The model is tiny and its answer known: crafted heads make red crops match "a red object" and blue
crops "a blue object" (graph_harness.build_known_answer_model). The graph is isolated per run
(own ROS_DOMAIN_ID, localhost discovery); every wait is bounded; the node process is always stopped.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
pytest.importorskip("fgclip_msgs.msg")
pytest.importorskip("vision_msgs.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from graph_harness import (  # noqa: E402
    BLUE_QUERY,
    NODE,
    RED_QUERY,
    GraphClient,
    NodeProcess,
    build_known_answer_model,
    graph_domain_id,
    isolated_env,
    make_detections,
    make_header,
    make_image,
    two_colour_scene,
    wait_until,
    write_params,
)
from lifecycle_msgs.msg import Transition  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from fgclip_msgs.msg import FineGrainedDetection, FineGrainedDetections  # noqa: E402
from fgclip_msgs.srv import Query  # noqa: E402
from fgclip_ros.core.image_codec import decode_raw  # noqa: E402
from fgclip_ros.core.overlay import MATCHED_RGB  # noqa: E402
from fgclip_ros.ros.private_graph import private_graph_env  # noqa: E402

STARTUP_TIMEOUT_S = 180.0  # torch + open_clip import and model load on a busy 2-core machine
FRAME_TIMEOUT_S = 10.0
# The node is started as a user would start it on a camera: input remapped with --image-topic,
# a QoS override for the detections subscription only, in the parameter file (docs/node.md).
IMAGE_TOPIC = "/camera/image_raw"
DETECTIONS_QOS_OVERRIDES = {"qos_overrides./detections.subscription.reliability": "reliable"}


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Graph:
    """The node process, the test client, its publishers/subscriptions and frame helpers."""

    def __init__(self, node: NodeProcess, client: GraphClient, folder, manifest, domain_id: int):
        self.node, self.client, self.folder, self.manifest = node, client, folder, manifest
        self.domain_id = domain_id
        self.image_pub = client.publisher(Image, IMAGE_TOPIC)
        self.detections_pub = client.publisher(Detection2DArray, "/detections")
        self.queries_pub = client.publisher(String, "/queries")
        client.subscribe(FineGrainedDetections, "/fine_grained_detections", "fine")
        client.subscribe(Detection2DArray, "/detections_labeled", "labeled")
        client.subscribe(DiagnosticArray, "/diagnostics", "diagnostics")
        self.compressed_pub = None  # created once the node takes CompressedImage (lifecycle test)
        self.compressed_client = None  # a second participant publishing it, when a test needs one
        self._stamp = 1_700_000_000 * 1_000_000_000

    def next_stamp(self) -> int:
        self._stamp += 10_000_000
        return self._stamp

    def failure(self, text: str) -> str:
        return f"{text}\n--- node log (tail) ---\n{self.node.log()}"

    def publish_frame(self, image_msg, detections_msg) -> None:
        (self.compressed_pub if isinstance(image_msg, CompressedImage) else self.image_pub).publish(image_msg)
        self.detections_pub.publish(detections_msg)

    def roundtrip(self, image, boxes, ids, encoding="rgb8", attempts=4, make_image_msg=None):
        """Publish a frame (new stamp per attempt: input QoS is best effort) until its output arrives."""
        for _ in range(attempts):
            stamp = self.next_stamp()
            image_msg = make_image_msg(image, stamp) if make_image_msg else make_image(image, stamp, encoding)
            self.publish_frame(image_msg, make_detections(boxes, stamp, ids))
            try:
                fine = self.client.wait_for_message(
                    "fine", lambda m, s=stamp: stamp_ns(m.header) == s, FRAME_TIMEOUT_S
                )
            except TimeoutError:
                assert self.node.alive(), self.failure("the node process died")
                continue
            return stamp, fine
        raise AssertionError(self.failure(f"no output for {attempts} frames"))

    def good_frame(self):
        image, boxes, ids = two_colour_scene()
        return self.roundtrip(image, boxes, ids)

    def query(self, queries=(), min_score=math.nan, wait=False, timeout_s=0.0, call_timeout_s=60.0):
        request = Query.Request(
            queries=list(queries), min_score=min_score, wait_for_next_frame=wait, timeout_s=timeout_s
        )
        return self.client.call(Query, "/fgclip_perception/query", request, call_timeout_s)

    def diagnostics_values(self, predicate=lambda values: True, timeout_s: float = 20.0) -> dict:
        def latest():
            for msg in reversed(self.client.messages("diagnostics")):
                for status in msg.status:
                    if "fgclip_perception" in status.name:
                        values = {kv.key: kv.value for kv in status.values}
                        values["_hardware_id"] = status.hardware_id
                        return values if predicate(values) else None
            return None

        return wait_until(latest, timeout_s, what="a matching /diagnostics status")

    def restore_queries(self) -> None:
        result = self.client.set_parameter("queries", [RED_QUERY, BLUE_QUERY])
        assert result.successful, result.reason


def start_node(folder, name: str, domain: int, **overrides):
    """(manifest, node process): the known-answer model, started as a user starts the node on a camera."""
    manifest = build_known_answer_model(folder / "model")
    params = write_params(folder / f"{name}.yaml", manifest, **overrides)
    args = ["--params-file", str(params), "--image-topic", IMAGE_TOPIC]
    return manifest, NodeProcess(args, isolated_env(domain), folder / f"{name}.log")


def wait_active(graph: Graph) -> None:
    def active():
        if not graph.node.alive():
            raise AssertionError(graph.failure("the node process exited during start-up"))
        try:
            return graph.client.lifecycle_state(timeout_s=2.0) == "active"
        except TimeoutError:
            return False

    wait_until(active, STARTUP_TIMEOUT_S, interval_s=0.5, what="the node to become active")
    for publisher in (graph.image_pub, graph.detections_pub, graph.queries_pub):
        GraphClient.wait_for_subscribers(publisher)


@contextmanager
def running_graph(folder, **overrides):
    """The Graph of an active node process (parameter file `overrides`); everything stopped afterwards."""
    domain = graph_domain_id()
    with private_graph_env(domain):  # the test process joins the same isolated graph as the node
        manifest, node = start_node(folder, "node", domain, **overrides)
        graph = None
        try:
            graph = Graph(node, GraphClient(domain), folder, manifest, domain)
            wait_active(graph)
            yield graph
        finally:
            if graph is not None:
                for client in (graph.client, graph.compressed_client):
                    if client is not None:
                        client.close()
            node.stop()


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    with running_graph(tmp_path_factory.mktemp("graph"), **DETECTIONS_QOS_OVERRIDES) as graph:
        yield graph


# ----------------------------------------------------------------------------- outputs
def test_labelled_outputs_carry_the_known_answer(graph):
    stamp, fine = graph.good_frame()
    assert fine.model == "graph-test-tiny"
    assert list(fine.queries) == [RED_QUERY, BLUE_QUERY]
    red, blue = fine.detections
    assert (red.id, blue.id) == ("red-box", "blue-box")
    assert red.valid and blue.valid
    assert (red.best_index, red.best_query) == (0, RED_QUERY)
    assert (blue.best_index, blue.best_query) == (1, BLUE_QUERY)
    assert len(red.scores) == 2 and red.scores[0] > red.scores[1]
    assert red.probability > 0.5 and red.margin > 0
    assert red.bbox.size_x == pytest.approx(32.0) and red.bbox.center.position.x == pytest.approx(24.0)

    labeled = graph.client.wait_for_message("labeled", lambda m: stamp_ns(m.header) == stamp, FRAME_TIMEOUT_S)
    red_out, blue_out = labeled.detections
    assert red_out.id == "red-box" and red_out.bbox.size_y == pytest.approx(40.0)
    assert red_out.results[0].hypothesis.class_id == RED_QUERY
    assert red_out.results[0].hypothesis.score == pytest.approx(red.probability, abs=1e-6)
    assert blue_out.results[0].hypothesis.class_id == BLUE_QUERY
    probabilities = [r.hypothesis.score for r in red_out.results]
    assert probabilities == sorted(probabilities, reverse=True)


def test_debug_overlay_is_drawn_for_subscribers(graph):
    debug_topic = f"{NODE}/debug_image"  # private: ~/debug_image
    graph.client.subscribe(Image, debug_topic, "debug")
    subscription = [s for s in graph.client.node.subscriptions if s.topic_name == debug_topic][0]
    wait_until(lambda: subscription.get_publisher_count() >= 1, 30.0, what="the debug_image publisher")
    image, boxes, ids = two_colour_scene()
    stamp, _ = graph.roundtrip(image, boxes, ids)
    debug = graph.client.wait_for_message("debug", lambda m: stamp_ns(m.header) == stamp, FRAME_TIMEOUT_S)
    overlay = decode_raw(debug.height, debug.width, debug.encoding, debug.step, debug.data)
    assert overlay.shape == image.shape
    # The red box's left edge (x = 8) is drawn in the "matched" colour.
    column = overlay[20:45, 8]
    assert (column == np.array(MATCHED_RGB, np.uint8)).all(axis=1).any()
    graph.client.node.destroy_subscription(subscription)


def test_bgr8_images_give_the_same_answer(graph):
    image, boxes, ids = two_colour_scene()
    _, fine = graph.roundtrip(image, boxes, ids, encoding="bgr8")
    assert [d.best_query for d in fine.detections] == [RED_QUERY, BLUE_QUERY]


# ----------------------------------------------------------------------------- ROS conventions
def _endpoints(graph, topic: str, publishers: bool) -> list:
    info = (
        graph.client.node.get_publishers_info_by_topic
        if publishers
        else (graph.client.node.get_subscriptions_info_by_topic)
    )
    return [e for e in info(topic) if e.node_name == NODE.lstrip("/")]


def test_topics_and_qos_follow_ros_2_conventions(graph):
    from rclpy.qos import ReliabilityPolicy

    # --image-topic remapped the input; the debug image is private; outputs keep relative names.
    wait_until(lambda: _endpoints(graph, IMAGE_TOPIC, False), 10.0, what=f"the node on {IMAGE_TOPIC}")
    assert not _endpoints(graph, "/image", False)
    assert _endpoints(graph, f"{NODE}/debug_image", True) and not _endpoints(graph, "/debug_image", True)
    assert _endpoints(graph, "/fine_grained_detections", True)

    # Standard QoS overrides, per topic: image keeps the sensor-data default (best effort), the
    # detections subscription took the parameter file's override (reliable), outputs are reliable.
    image = _endpoints(graph, IMAGE_TOPIC, False)[0].qos_profile
    detections = _endpoints(graph, "/detections", False)[0].qos_profile
    output = _endpoints(graph, "/fine_grained_detections", True)[0].qos_profile
    assert image.reliability == ReliabilityPolicy.BEST_EFFORT
    assert detections.reliability == ReliabilityPolicy.RELIABLE
    assert output.reliability == ReliabilityPolicy.RELIABLE
    get = graph.client.get_parameter
    assert get(f"qos_overrides.{IMAGE_TOPIC}.subscription.reliability") == "best_effort"
    assert get(f"qos_overrides.{IMAGE_TOPIC}.subscription.depth") == 5
    assert get("qos_overrides./detections.subscription.reliability") == "reliable"
    assert get("qos_overrides./fine_grained_detections.publisher.reliability") == "reliable"
    assert get("qos.input.reliability") is None  # the old parameters are gone: one mechanism


# ----------------------------------------------------------------------------- Query service
def test_query_service_answers_from_the_latest_frame(graph):
    stamp, _ = graph.good_frame()
    answer = graph.query()
    assert answer.success, answer.message
    assert stamp_ns(answer.header) >= stamp
    assert [d.best_query for d in answer.detections] == [RED_QUERY, BLUE_QUERY]

    swapped = graph.query([BLUE_QUERY, RED_QUERY])
    assert swapped.success, swapped.message
    assert list(swapped.queries) == [BLUE_QUERY, RED_QUERY]
    assert [d.best_index for d in swapped.detections] == [1, 0]
    assert [d.best_query for d in swapped.detections] == [RED_QUERY, BLUE_QUERY]

    # A threshold no cosine score reaches: no best query, the scores are still reported.
    strict = graph.query(min_score=1.5)
    assert strict.success
    assert all(d.best_index == -1 and d.best_query == "" and len(d.scores) == 2 for d in strict.detections)


def test_query_min_score_nan_is_the_node_threshold_and_zero_is_zero(graph):
    graph.good_frame()
    # The red box against the blue query alone: a score x near 0. A node threshold on the other side
    # of x than 0 makes "the node's min_score" (NaN) and a request threshold of 0.0 disagree.
    probe = graph.query([BLUE_QUERY], min_score=-1.0)
    assert probe.success, probe.message
    x = float(probe.detections[0].scores[0])
    node_threshold = (x + 1.0) / 2.0 if x >= 0.0 else -1.0
    try:
        assert graph.client.set_parameter("min_score", node_threshold).successful
        node_default = graph.query([BLUE_QUERY], min_score=math.nan)
        zero = graph.query([BLUE_QUERY], min_score=0.0)  # a threshold like any other, not "the node's"
        assert node_default.success and zero.success, node_default.message + zero.message
        assert (node_default.detections[0].best_index == 0) == (x >= node_threshold)
        assert (zero.detections[0].best_index == 0) == (x >= 0.0)
        infinite = graph.query(min_score=math.inf)
        assert not infinite.success and "min_score" in infinite.message
    finally:
        assert graph.client.set_parameter("min_score", 0.0).successful


def test_query_service_waits_for_the_next_frame_without_blocking_the_node(graph):
    timed_out = graph.query(wait=True, timeout_s=0.3)
    assert not timed_out.success and "timeout" in timed_out.message

    results = {}

    def ask():
        results["answer"] = graph.query(wait=True, timeout_s=30.0, call_timeout_s=60.0)

    before = graph.next_stamp()
    caller = threading.Thread(target=ask, daemon=True)
    caller.start()
    # Frames keep coming while the call waits (it may reach the node after the first of them).
    sent = []
    for _ in range(10):
        sent.append(graph.good_frame()[0])
        caller.join(timeout=2.0)
        if not caller.is_alive():
            break
    assert not caller.is_alive(), graph.failure("the waiting Query call never returned")
    answer = results["answer"]
    assert answer.success, answer.message
    assert before < stamp_ns(answer.header) <= sent[-1]
    assert [d.best_query for d in answer.detections] == [RED_QUERY, BLUE_QUERY]


# ----------------------------------------------------------------------------- queries: parameter and topic
def test_queries_parameter_changes_at_runtime(graph):
    try:
        result = graph.client.set_parameter("queries", [BLUE_QUERY, RED_QUERY])
        assert result.successful, result.reason
        _, fine = graph.good_frame()
        assert list(fine.queries) == [BLUE_QUERY, RED_QUERY]
        assert [d.best_index for d in fine.detections] == [1, 0]

        rejected = graph.client.set_parameter("queries", ["fine", ""])
        assert not rejected.successful and "empty" in rejected.reason
        huge = graph.client.set_parameter("queries", ["x" * 5000])
        assert not huge.successful and "characters" in huge.reason
        assert graph.client.get_parameter("queries") == [BLUE_QUERY, RED_QUERY]

        assert not graph.client.set_parameter("min_score", 3.0).successful  # outside [-1, 1]
    finally:
        graph.restore_queries()


def test_queries_topic_json_lines_and_unicode(graph):
    try:
        graph.queries_pub.publish(String(data=json.dumps([BLUE_QUERY, RED_QUERY, "a green object"])))
        wait_until(
            lambda: graph.client.get_parameter("queries") == [BLUE_QUERY, RED_QUERY, "a green object"],
            30.0,
            interval_s=0.2,
            what="the JSON query set",
        )
        _, fine = graph.good_frame()
        assert len(fine.queries) == 3 and len(fine.detections[0].scores) == 3

        graph.queries_pub.publish(String(data=f"{RED_QUERY}\n\n  {BLUE_QUERY}  \n"))
        wait_until(
            lambda: graph.client.get_parameter("queries") == [RED_QUERY, BLUE_QUERY],
            30.0,
            interval_s=0.2,
            what="the line-separated query set",
        )

        unicode_queries = ["ein rotes Objekt ✓", "赤い物体", BLUE_QUERY]
        graph.queries_pub.publish(String(data=json.dumps(unicode_queries, ensure_ascii=False)))
        wait_until(
            lambda: graph.client.get_parameter("queries") == unicode_queries,
            30.0,
            interval_s=0.2,
            what="the unicode query set",
        )
        _, fine = graph.good_frame()
        assert list(fine.queries) == unicode_queries
        assert fine.detections[1].best_query == BLUE_QUERY
    finally:
        graph.restore_queries()


def test_bad_query_messages_are_counted_and_ignored(graph):
    graph.queries_pub.publish(String(data=""))
    graph.queries_pub.publish(String(data="[not json"))
    graph.queries_pub.publish(String(data="y" * 100_000))
    values = graph.diagnostics_values(
        lambda v: (
            int(v.get("dropped.queries_no_queries", 0)) >= 1
            and int(v.get("dropped.queries_bad_json", 0)) >= 1
            and int(v.get("dropped.queries_query_too_long", 0)) >= 1
        )
    )
    assert int(values["malformed_total"]) >= 3
    assert graph.client.get_parameter("queries") == [RED_QUERY, BLUE_QUERY]
    _, fine = graph.good_frame()
    assert [d.best_query for d in fine.detections] == [RED_QUERY, BLUE_QUERY]


def test_a_thousand_queries(graph):
    queries = [RED_QUERY, BLUE_QUERY] + [f"object number {i}" for i in range(998)]
    try:
        graph.queries_pub.publish(String(data=json.dumps(queries)))
        wait_until(
            lambda: len(graph.client.get_parameter("queries")) == 1000,
            60.0,
            interval_s=0.5,
            what="the 1,000-query set",
        )
        _, fine = graph.good_frame()
        assert len(fine.queries) == 1000
        assert all(len(d.scores) == 1000 for d in fine.detections)
        answer = graph.query()
        assert answer.success and len(answer.queries) == 1000
    finally:
        graph.restore_queries()
    _, fine = graph.good_frame()
    assert [d.best_query for d in fine.detections] == [RED_QUERY, BLUE_QUERY]


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs_are_dropped_counted_and_good_frames_still_answered(graph):
    image, boxes, ids = two_colour_scene()
    # 1. an image whose data is shorter than step * height
    stamp = graph.next_stamp()
    short = make_image(image, stamp)
    short.data = bytes(short.data)[:-10]
    graph.publish_frame(short, make_detections(boxes, stamp, ids))
    # One at a time: the node processes the newest pair, an older unprocessed one counts as stale.
    graph.diagnostics_values(lambda v: int(v.get("dropped.image_bad_data_length", 0)) >= 1)
    # 2. an encoding the node does not support
    stamp = graph.next_stamp()
    yuv = make_image(image, stamp)
    yuv.encoding = "yuv422"
    graph.publish_frame(yuv, make_detections(boxes, stamp, ids))
    # 3. detections whose image never comes
    graph.detections_pub.publish(make_detections(boxes, graph.next_stamp(), ids))

    # 4. NaN / negative-size / out-of-image boxes next to a good one, in one frame
    bad_boxes = [
        boxes[0],
        (float("nan"), 10.0, 20.0, 30.0),
        (30.0, 30.0, 10.0, 10.0),
        (500.0, 500.0, 540.0, 560.0),
    ]
    _, fine = graph.roundtrip(image, bad_boxes, ["good", "nan", "negative", "outside"])
    good, nan_box, negative, outside = fine.detections
    assert good.valid and good.best_query == RED_QUERY
    for rejected in (nan_box, negative, outside):
        assert not rejected.valid and rejected.rejected_reason and rejected.best_index == -1
        assert len(rejected.scores) == 0
    codes = [d.rejected_code for d in fine.detections]
    assert codes == [
        FineGrainedDetection.REJECTED_NONE,
        FineGrainedDetection.REJECTED_NON_FINITE,
        FineGrainedDetection.REJECTED_NON_POSITIVE_SIZE,
        FineGrainedDetection.REJECTED_OUTSIDE_IMAGE,
    ]

    values = graph.diagnostics_values(
        lambda v: (
            int(v.get("dropped.image_bad_data_length", 0)) >= 1
            and int(v.get("dropped.image_unsupported_encoding", 0)) >= 1
            and int(v.get("detections_unmatched", 0)) >= 1
            and int(v.get("boxes_rejected", 0)) >= 3
        )
    )
    assert int(values["malformed_total"]) >= 2
    assert graph.node.alive()
    _, fine = graph.good_frame()
    assert [d.best_query for d in fine.detections] == [RED_QUERY, BLUE_QUERY]


def test_diagnostics_report_rate_latency_and_backend(graph):
    graph.good_frame()
    graph.good_frame()
    values = graph.diagnostics_values(lambda v: int(v.get("frames_processed", 0)) >= 2)
    for key in (
        "rate_hz",
        "latency_p50_ms",
        "latency_p99_ms",
        "image_unmatched",
        "detections_unmatched",
        "image_overflow",
        "detections_overflow",
        "queries",
    ):
        assert key in values, key
    # The default backend on the CPU: ONNX Runtime on the graphs exported at configure.
    assert values["backend"] == "auto" and values["device"] == "cpu"
    assert values["provider"].startswith("onnxruntime:CPUExecutionProvider")
    assert values["_hardware_id"] == values["provider"]
    assert float(values["latency_p50_ms"]) > 0 and float(values["latency_p99_ms"]) >= float(
        values["latency_p50_ms"]
    )


# ----------------------------------------------------------------------------- fgclip-query
def run_cli(graph, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fgclip_ros.cli.query", *args],
        env=isolated_env(graph.domain_id),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fgclip_query_prints_json_and_a_table(graph):
    graph.good_frame()
    as_json = run_cli(graph, "--json", "--query", RED_QUERY, "--query", BLUE_QUERY)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["success"] and answer["queries"] == [RED_QUERY, BLUE_QUERY]
    assert [d["best_query"] for d in answer["detections"]] == [RED_QUERY, BLUE_QUERY]
    assert [d["id"] for d in answer["detections"]] == ["red-box", "blue-box"]

    table = run_cli(graph, BLUE_QUERY, RED_QUERY)
    assert table.returncode == 0, table.stderr
    assert "red-box" in table.stdout and RED_QUERY in table.stdout

    refused = run_cli(graph, "--wait", "--timeout", "0.2")
    assert refused.returncode == 1 and "timeout" in refused.stderr


# ----------------------------------------------------------------------------- lifecycle
def test_lifecycle_transitions(graph):
    client = graph.client
    assert client.change_state(Transition.TRANSITION_DEACTIVATE)
    assert client.lifecycle_state() == "inactive"
    refused = graph.query()
    assert not refused.success and "not active" in refused.message

    assert client.change_state(Transition.TRANSITION_ACTIVATE)
    assert client.lifecycle_state() == "active"
    GraphClient.wait_for_subscribers(graph.image_pub)
    graph.good_frame()

    assert client.change_state(Transition.TRANSITION_DEACTIVATE)
    assert client.change_state(Transition.TRANSITION_CLEANUP)
    assert client.lifecycle_state() == "unconfigured"

    # A model that does not exist is refused when set; one whose weights are missing fails configure:
    # the node stays unconfigured and says why.
    refused = client.set_parameter("model", str(graph.folder / "no-such-model.yaml"))
    assert not refused.successful and "no-such-model.yaml" in refused.reason
    manifest = yaml.safe_load(graph.manifest.read_text())
    manifest["weights"] = {"path": str(graph.folder / "missing-weights.pt")}
    broken = graph.folder / "broken-model.yaml"
    broken.write_text(yaml.safe_dump(manifest))
    assert client.set_parameter("model", str(broken)).successful
    assert not client.change_state(Transition.TRANSITION_CONFIGURE)
    assert client.lifecycle_state() == "unconfigured"
    wait_until(
        lambda: "configure failed" in graph.node.log(20000) and "missing-weights.pt" in graph.node.log(20000),
        10.0,
        what="the configure failure reason in the node log",
    )

    # Back to the good model, now taking compressed images.
    assert client.set_parameter("model", str(graph.manifest)).successful
    assert client.set_parameter("image_transport", "compressed").successful
    assert client.change_state(Transition.TRANSITION_CONFIGURE)
    assert client.change_state(Transition.TRANSITION_ACTIVATE)
    assert client.lifecycle_state() == "active"
    # image_transport naming: the node now takes CompressedImage on <image topic>/compressed (the
    # remapped base name plus the transport's suffix). PNG frames from a second participant.
    compressed_client = GraphClient(graph.domain_id, "fgclip_graph_test_compressed")
    try:
        graph.compressed_pub = compressed_client.publisher(CompressedImage, f"{IMAGE_TOPIC}/compressed")
        GraphClient.wait_for_subscribers(graph.compressed_pub)

        def png(image, stamp):
            ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            return CompressedImage(header=make_header(stamp), format="png", data=data.tobytes())

        image, boxes, ids = two_colour_scene()
        _, fine = graph.roundtrip(image, boxes, ids, make_image_msg=png)
        assert [d.best_query for d in fine.detections] == [RED_QUERY, BLUE_QUERY]
    finally:
        compressed_client.close()


def test_sigterm_shuts_the_node_down_cleanly(graph):
    code = graph.node.stop(signal.SIGTERM, timeout_s=30.0)
    log = graph.node.log(20000)
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("problem", ["missing model", "malformed image_size"])
def test_bringup_exits_with_the_reason_when_configure_fails(tmp_path, problem):
    missing = tmp_path / "missing-model.yaml"
    if problem == "missing model":
        params, reason = write_params(tmp_path / "params.yaml", missing), str(missing)
    else:
        params = write_params(tmp_path / "params.yaml", missing, image_size=[1280, 0])
        reason = "image_size must be [width, height]"  # checked before the model is loaded
    run = subprocess.run(
        [sys.executable, "-m", "fgclip_ros.cli.perception", "--params-file", str(params)],
        env=isolated_env(graph_domain_id()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "configure failed" in output and reason in output
    assert problem == "missing model" or str(missing) not in output


def test_a_failed_first_use_export_fails_configure_with_one_line_naming_the_model(tmp_path):
    manifest = build_known_answer_model(tmp_path / "model")
    params = write_params(tmp_path / "params.yaml", manifest)  # backend auto: ONNX Runtime on the CPU
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    env = isolated_env(graph_domain_id())
    env["FGCLIP_ROS_CACHE"] = str(not_a_folder)  # the export cannot be written
    run = subprocess.run(
        [sys.executable, "-m", "fgclip_ros.cli.perception", "--params-file", str(params)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    failure = next(line for line in output.splitlines() if "configure failed" in line)
    assert "model graph-test-tiny:" in failure and "fgclip-export --model graph-test-tiny" in failure
    assert "torch:cpu" not in output  # no silent fallback to the PyTorch backend


def test_bringup_refuses_a_missing_parameter_file(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "fgclip_ros.cli.perception", "--params-file", str(tmp_path / "nope.yaml")],
        env=isolated_env(graph_domain_id()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "nope.yaml" in run.stderr
