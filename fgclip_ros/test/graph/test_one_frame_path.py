# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node, fgclip-eval-bag and fgclip-bench's pipeline rows score frames with one function.

``PerceptionEngine.process`` (which runs ``Pipeline.process``: fused on CUDA, crops + encoder +
matcher elsewhere) is wrapped to record who calls it; each tool is then run through its public
interface: the node in-process on a private ROS graph fed by a publisher, the bag evaluator on a
sample bag, the benchmark through its CLI. All three reach the same function, and it reaches
``Pipeline.process`` every time, so what the benchmark times is what the node runs.
"""

import inspect
import json
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("fgclip_msgs.msg")

from conftest import TINY_ARCHITECTURE, TINY_CLIP_CONFIG  # noqa: E402
from graph_harness import (  # noqa: E402
    BLUE_QUERY,
    RED_QUERY,
    GraphClient,
    build_known_answer_model,
    in_process_node,
    make_detections,
    make_image,
    two_colour_scene,
    wait_started,
)

from fgclip_ros.core.perception import PerceptionEngine  # noqa: E402
from fgclip_ros.core.pipeline import Pipeline  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[2] / "fgclip_ros"


@pytest.fixture
def callers(monkeypatch):
    """Module (package-relative) of each PerceptionEngine.process caller; Pipeline.process calls."""
    seen = {"engine": [], "pipeline": 0}
    engine_process, pipeline_process = PerceptionEngine.process, Pipeline.process

    def engine_spy(self, *args, **kwargs):
        caller = Path(inspect.stack()[1].filename).resolve()
        inside = caller.is_relative_to(PACKAGE)
        seen["engine"].append(str(caller.relative_to(PACKAGE)) if inside else caller.name)
        return engine_process(self, *args, **kwargs)

    def pipeline_spy(self, *args, **kwargs):
        seen["pipeline"] += 1
        return pipeline_process(self, *args, **kwargs)

    monkeypatch.setattr(PerceptionEngine, "process", engine_spy)
    monkeypatch.setattr(Pipeline, "process", pipeline_spy)
    return seen


def _run_node_on_one_frame(manifest: Path) -> None:
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from fgclip_msgs.msg import FineGrainedDetections

    overrides = [
        Parameter("model", value=str(manifest)),
        Parameter("device", value="cpu"),
        Parameter("queries", value=[RED_QUERY, BLUE_QUERY]),
    ]
    with in_process_node("fgclip_one_path_test", parameter_overrides=overrides) as (node, client):
        assert wait_started(node), node.last_error  # the node's `autostart` parameter (default true)
        images = client.publisher(Image, "/image")
        detections = client.publisher(Detection2DArray, "/detections")
        client.subscribe(FineGrainedDetections, "/fine_grained_detections", "fine")
        GraphClient.wait_for_subscribers(images)
        GraphClient.wait_for_subscribers(detections)
        image, boxes, ids = two_colour_scene()
        for attempt in range(4):  # input QoS is best effort: a new stamp per attempt
            stamp = 1_700_000_000 * 1_000_000_000 + attempt
            images.publish(make_image(image, stamp))
            detections.publish(make_detections(boxes, stamp, ids))
            try:
                fine = client.wait_for_message("fine", timeout_s=10.0)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the node published nothing for 4 frames")
        assert [d.best_query for d in fine.detections] == [RED_QUERY, BLUE_QUERY]


def test_node_eval_bag_and_bench_score_frames_with_one_function(callers, tmp_path):
    from fgclip_ros.bags.sample import SampleBagConfig, write_sample_bag
    from fgclip_ros.cli.bench import main as bench_main
    from fgclip_ros.evaluation.bag import EvalBagOptions, evaluate_bag

    manifest = build_known_answer_model(tmp_path / "model")

    _run_node_on_one_frame(manifest)
    node_calls = len(callers["engine"])
    assert node_calls >= 1 and set(callers["engine"]) == {"ros/perception_node.py"}

    bag = tmp_path / "bag"
    write_sample_bag(bag, SampleBagConfig(frames=3, width=96, height=64))
    evaluation = evaluate_bag(bag, Pipeline.from_manifest(str(manifest)), EvalBagOptions(
        queries=[RED_QUERY], progress=False, warmup=False))  # fmt: skip
    frames = evaluation.report["counts"]["frames_processed"]
    assert frames == 3
    assert callers["engine"][node_calls:] == ["evaluation/bag.py"] * frames

    config = tmp_path / f"{TINY_ARCHITECTURE}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    before = len(callers["engine"])
    assert bench_main([
        "--arch", TINY_ARCHITECTURE, "--model-config", str(config), "--random-weights", "--device", "cpu",
        "--backend", "torch", "onnx", "--boxes", "2", "--no-bulk", "--no-naive", "--queries", "2",
        "--threads", "1", "--budget-s", "0", "--min-iters", "1", "--max-iters", "1",
        "--onnx-dir", str(tmp_path / "onnx"), "--json", str(tmp_path / "bench.json"),
        "--no-progress", "--quiet",
    ]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert {row["variant"] for row in rows if row["section"] == "pipeline"}
    assert set(callers["engine"][before:]) == {"benchmark/bench.py"}

    # Every engine call ran the pipeline's one per-frame function.
    assert callers["pipeline"] == len(callers["engine"])
