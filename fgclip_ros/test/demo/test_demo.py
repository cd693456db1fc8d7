# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The demo (`fgclip-demo`) end to end, shortened: real node subprocess, real DDS graph, replayed sample bag.

The e2e runs use the graph tests' tiny known-answer model (graph_harness.build_known_answer_model)
and, when the project's embedded model `fgsynth` is installed, that one too. They check that the
outputs exist and that what the demo printed and wrote agrees with `evaluate_published` recomputed
here from the node messages it recorded (consistency, not model quality). Every run is bounded;
on a timeout the demo's whole process group is stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fgclip_ros.bags.ground_truth import FrameTruth, ObjectTruth
from fgclip_ros.core.detection import DetectionResult
from fgclip_ros.demo import offline as core_demo
from fgclip_ros.evaluation.bag_metrics import QueryJudge, accuracy_metrics, records_for_frame
from fgclip_ros.ros import private_graph
from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES, FAMILY_VALUES, VOCABULARY, ObjectSpec

DEMO_TIMEOUT_S = 400.0  # a busy 2-core machine: torch imports in two processes, model load, 4 frames
E2E_FRAMES = 4


# ----------------------------------------------------------------------------- helpers
def run_demo_cli(
    args: list[str], out: Path, timeout_s: float = DEMO_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """`python -m fgclip_ros.cli.demo ARGS --out OUT` in its own process group, stopped on timeout."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fgclip_ros.cli.demo", *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"fgclip-demo did not finish within {timeout_s:g} s\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _stop_group(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (to find a node left running)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def recorded_node_messages(out: Path) -> list:
    """The FineGrainedDetections the demo recorded from the node (its node_outputs bag)."""
    from fgclip_ros.bags.reader import BagReader

    with BagReader(out / "node_outputs") as bag:
        return [m.msg for m in bag.messages(["/fine_grained_detections"])]


def assert_demo_outputs_consistent(result: subprocess.CompletedProcess, out: Path, frames: int) -> dict:
    from fgclip_ros.bags.messages import stamp_ns
    from fgclip_ros.evaluation.bag import evaluate_published

    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    report = json.loads((out / "report.json").read_text())
    for name in (
        "summary.md",
        "detections.jsonl",
        "node.log",
        "sample_bag",
        "node_outputs",
        "offline/report.json",
    ):
        assert (out / name).exists(), name
    demo = report["demo"]
    assert demo["bag_frames"] == frames and demo["node_exit_status"] == 0
    assert 1 <= demo["frames_answered"] <= demo["frames_expected"] == frames

    # What the node published, as recorded, scored again here: the demo reports exactly this.
    published = recorded_node_messages(out)
    assert len(published) == demo["frames_answered"]
    recomputed, records = evaluate_published(out / "sample_bag", published, vocabulary=VOCABULARY)
    recomputed = json.loads(json.dumps(recomputed))
    assert report["evaluation"]["accuracy"] == recomputed["accuracy"]
    assert report["evaluation"]["labels"] == recomputed["labels"]
    accuracy = recomputed["accuracy"]
    assert accuracy["answerable"] == sum(len(m.detections) for m in published)

    # The per-object table: one row per published detection; its verdicts count to the accuracy.
    rows = report["objects"]
    assert [(r["stamp_ns"], r["id"]) for r in rows] == [
        (stamp_ns(m.header), d.id) for m in published for d in m.detections
    ]
    assert sum(bool(r["correct"]) for r in rows) == accuracy["correct"]
    best = {(stamp_ns(m.header), d.id): d.best_query for m in published for d in m.detections}
    assert all(best[(r["stamp_ns"], r["id"])] == r["best_query"] for r in rows if r["status"] == "matched")
    top1 = accuracy["top1_accuracy"]
    assert f"Top-1 accuracy of the node's answers: {100 * top1:.1f}%" in result.stdout
    assert (
        f"**Top-1 accuracy of what the node published: {100 * top1:.1f}%**"
        in (out / "summary.md").read_text()
    )
    assert len((out / "detections.jsonl").read_text().splitlines()) == len(records)

    # The node's queries are the ones the demo set on the topic; the service ranked the latest frame.
    assert all(list(m.queries) == report["queries"]["topic"] for m in published)
    service = report["service"]
    assert service["rows"] and service["stamp_ns"] == max(stamp_ns(m.header) for m in published)
    assert all(1 <= r["rank"] <= r["candidates"] for r in service["rows"])
    agreement = report["labeled_agreement"]
    assert agreement["agree"] == agreement["compared"] > 0

    # The node and the offline evaluator (same model, parameters, frames) give the same answers.
    comparison = report["offline"]["comparison"]
    assert comparison["compared"] == len(rows) and comparison["same_best_query"] == comparison["compared"]
    assert report["offline"]["top1_accuracy_same_frames"] == pytest.approx(top1)

    annotated = sorted((out / "frames").glob("annotated_*.png"))
    assert len(annotated) == min(2, demo["frames_answered"])
    for path in annotated:
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (480, 640, 3)  # the 320x240 frames, twice the size
    assert report["files"]["annotated"] == [str(p.relative_to(out)) for p in annotated]
    return report


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    pytest.importorskip("rclpy")
    pytest.importorskip("fgclip_msgs.msg")
    from graph_harness import build_known_answer_model

    return build_known_answer_model(tmp_path_factory.mktemp("demo-model"))


def test_demo_end_to_end_with_the_tiny_model(tiny_manifest, tmp_path):
    out = tmp_path / "demo"
    result = run_demo_cli(
        ["--model", str(tiny_manifest), "--frames", str(E2E_FRAMES), "--png-frames", "2"], out
    )
    report = assert_demo_outputs_consistent(result, out, E2E_FRAMES)
    # The demo runs the default backend (auto): the exported graph on ONNX Runtime on this CPU.
    assert report["demo"]["provider"].startswith("onnxruntime:")
    assert "What the node answered per object" in result.stdout
    assert not processes_mentioning(str(tiny_manifest)), "the node outlived the demo"


def _fgsynth_available() -> bool:
    try:
        from fgclip_ros.core.fetch import resolve_file
        from fgclip_ros.core.manifest import load_manifest

        manifest = load_manifest("fgsynth")
        for spec in (manifest.model_config, manifest.weights, manifest.reprojection):
            if spec is not None:
                resolve_file(spec, manifest.source_path.parent, "fgsynth file", allow_download=False)
        return True
    except Exception:  # noqa: BLE001 - any reason means: not installed yet
        return False


@pytest.mark.skipif(not _fgsynth_available(), reason="the embedded model fgsynth is not installed")
def test_demo_end_to_end_with_fgsynth(tmp_path):
    pytest.importorskip("rclpy")
    out = tmp_path / "demo"
    result = run_demo_cli(["--frames", str(E2E_FRAMES), "--png-frames", "2"], out)  # default model: fgsynth
    report = assert_demo_outputs_consistent(result, out, E2E_FRAMES)
    assert report["demo"]["model"] == "fgsynth"


# ----------------------------------------------------------------------------- failures
def test_unknown_model_is_a_usage_error_before_anything_starts(tmp_path):
    result = run_demo_cli(["--model", "no-such-model"], tmp_path / "demo", timeout_s=120)
    assert result.returncode == 2
    assert "no-such-model" in result.stderr and "--model" in result.stderr
    assert not (tmp_path / "demo" / "node.log").exists()


def test_a_node_that_cannot_load_its_model_fails_the_demo_with_its_reason(tiny_manifest, tmp_path):
    manifest = yaml.safe_load(tiny_manifest.read_text())
    manifest["model_config"] = {"path": str(tiny_manifest.parent / "tiny.json")}
    manifest["weights"] = {"path": str(tmp_path / "missing-weights.pt")}
    manifest["reprojection"]["file"] = {"path": str(tiny_manifest.parent / "heads.pt")}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(manifest))
    result = run_demo_cli(["--model", str(broken), "--frames", "2"], tmp_path / "demo", timeout_s=300)
    assert result.returncode == 1, result.stderr
    assert "the node exited during start-up" in result.stderr and "missing-weights.pt" in result.stderr
    assert "node.log" in result.stderr
    assert not processes_mentioning(str(broken))


def _start_demo_until_replaying(manifest: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A full-length demo, returned once the node is up and the bag is playing."""
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fgclip_ros.cli.demo",
                "--model",
                str(manifest),
                "--out",
                str(tmp_path / "demo"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        while "replaying" not in stderr_path.read_text():
            assert process.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, "the demo did not start replaying in time"
            time.sleep(0.2)
        assert processes_mentioning(str(manifest)), "no node process found while replaying"
    except BaseException:
        _stop_group(process)
        raise
    return process, stderr_path


def test_ctrl_c_stops_the_demo_and_its_node(tiny_manifest, tmp_path):
    process, stderr_path = _start_demo_until_replaying(tiny_manifest, tmp_path)
    try:
        process.send_signal(signal.SIGINT)  # the demo only, as the terminal's Ctrl-C minus the node
        # 130, or death by SIGINT (a shell shows 130 too): under `python -m`, CPython 3.11 exits that way
        # after a handled Ctrl-C that landed inside exec()'d code (rosbags and dataclasses use exec).
        assert process.wait(timeout=60) in (130, -signal.SIGINT)
    finally:
        _stop_group(process)
    assert "interrupted" in stderr_path.read_text()
    assert not processes_mentioning(str(tiny_manifest)), "the node outlived the demo"


def test_a_killed_demo_takes_its_node_down(tiny_manifest, tmp_path):
    process, _ = _start_demo_until_replaying(tiny_manifest, tmp_path)
    try:
        process.kill()  # the demo only; no cleanup can run in it
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while processes_mentioning(str(tiny_manifest)):  # the node gets SIGTERM from the kernel
            assert time.monotonic() < deadline, "the node outlived its killed demo"
            time.sleep(0.2)
    finally:
        _stop_group(process)


# ----------------------------------------------------------------------------- ROS-free parts
def _truth(spec: ObjectSpec, object_id: str) -> ObjectTruth:
    return ObjectTruth(object_id, spec.caption(), spec.category, spec.attributes(), (0.0, 0.0, 10.0, 10.0))


def test_topic_queries_pair_each_caption_with_one_neighbouring_negative_per_family():
    spec = ObjectSpec("bottle", "red", "glass", "plain", "transparent")
    queries = core_demo.topic_queries([_truth(spec, "a"), _truth(spec, "b")])  # duplicates collapse
    assert queries[0] == spec.caption() and len(queries) == 1 + len(ATTRIBUTE_FAMILIES)
    assert (
        spec.with_attribute("transparency", "translucent").caption() in queries
    )  # the neighbour of the last
    for query in queries[1:]:
        changed = [f for f in ATTRIBUTE_FAMILIES if f"{getattr(spec, f)} " not in f"{query} "]
        assert len(changed) == 1, query
    for family, values in FAMILY_VALUES.items():
        neighbours = [core_demo.neighbour_value(family, v) for v in values]
        assert all(n != v and n in values for n, v in zip(neighbours, values, strict=True))


def test_free_text_ground_truth_gets_its_caption_only():
    queries = core_demo.topic_queries([ObjectTruth("x", "a dented aluminium can")])
    assert queries == ["a dented aluminium can"]


def _detection(det_id, box, valid, reason, best_index, best_query, score, probability, margin, scores):
    return DetectionResult(
        valid=valid,
        rejected_reason=reason,
        best_index=best_index,
        best_query=best_query,
        score=score,
        probability=probability,
        margin=margin,
        scores=scores,
        id=det_id,
        box_xyxy=box,
    )


def test_object_table_counts_exactly_what_accuracy_metrics_counts():
    mug = ObjectSpec("mug", "red", "ceramic", "plain", "opaque")
    can = ObjectSpec("can", "blue", "metal", "striped", "opaque")
    truth = FrameTruth(5, [_truth(mug, "m"), _truth(can, "c"), _truth(mug, "r")])
    queries = core_demo.topic_queries(truth.objects)
    detections = [
        _detection("m", (0, 0, 10, 10), True, "", 0, mug.caption(), 0.9, 0.5, 0.1, np.zeros(0)),
        _detection("c", (0, 0, 10, 10), True, "", 1, queries[1], 0.8, 0.4, 0.1, np.zeros(0)),
        _detection("r", (0, 0, 10, 10), False, "zero size", -1, "", 0.0, 0.0, 0.0, np.zeros(0)),
        _detection("?", (50, 50, 60, 60), True, "", 0, mug.caption(), 0.9, 0.5, 0.1, np.zeros(0)),
    ]
    records = records_for_frame(0, 5, detections, truth)
    judge = QueryJudge(queries, truth.objects, VOCABULARY)
    rows = core_demo.object_table(records, judge, {5: 7})
    assert [r["correct"] for r in rows] == [True, False, False, None]
    assert [r["status"] for r in rows] == ["matched", "matched", "rejected", "matched"]
    assert rows[0]["frame"] == 7 and rows[3]["caption"] is None
    metrics = accuracy_metrics(records, judge)
    judged = [r["correct"] for r in rows if r["correct"] is not None]
    assert sum(judged) / len(judged) == metrics["top1_accuracy"] == pytest.approx(1 / 3)


def test_service_answer_ranks_each_true_caption_among_its_own_hard_negatives():
    spec = ObjectSpec("vase", "green", "wood", "dotted", "translucent")
    truth = FrameTruth(1, [_truth(spec, "v")])
    queries = core_demo.service_queries(truth)
    assert queries[0] == spec.caption() and len(queries) == 1 + sum(
        len(v) - 1 for v in FAMILY_VALUES.values()
    )
    scores = np.linspace(0.0, 1.0, len(queries)).astype(np.float32)  # the last negative scores best
    answer = [
        _detection("v", (0, 0, 10, 10), True, "", len(queries) - 1, queries[-1], 1.0, 0.1, 0.0, scores)
    ]
    (row,) = core_demo.rank_service_answer(queries, answer, truth)
    assert (row.rank, row.candidates, row.hardest_negative) == (len(queries), len(queries), queries[-1])


def test_domain_candidates_are_distinct_safe_ids_and_the_env_is_localhost_only():
    ids = private_graph.domain_candidates(os.getpid())
    assert len(set(ids)) == len(ids) and all(1 <= d <= private_graph.MAX_SAFE_DOMAIN_ID for d in ids)
    env = private_graph.isolated_env(ids[0], {"ROS_LOCALHOST_ONLY": "1", "PATH": "/bin"})
    assert env["ROS_DOMAIN_ID"] == str(ids[0]) and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_LOCALHOST_ONLY" not in env and env["PATH"] == "/bin"
    assert core_demo.spread(list(range(10)), 3) == [0, 4, 9] and core_demo.spread([1], 4) == [1]


def test_message_class_names_the_missing_package():
    pytest.importorskip("rclpy")
    from fgclip_ros.ros.bag_player import BagPlayError, message_class

    assert message_class("std_msgs/msg/String").__name__ == "String"
    with pytest.raises(BagPlayError, match=re.escape("no_such_msgs")):
        message_class("no_such_msgs/msg/Thing")
