# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's ROS-free logic: PerceptionEngine, query text parsing, counted warnings, stats, overlay."""

import threading

import numpy as np
import pytest
from graph_harness import BLUE_QUERY, RED_QUERY, build_known_answer_model, two_colour_scene

from fgclip_ros.core.detection import DetectionResult
from fgclip_ros.core.overlay import MATCHED_RGB, REJECTED_RGB, draw_overlay
from fgclip_ros.core.perception import REASON_OVER_LIMIT, PerceptionEngine
from fgclip_ros.core.query_text import QueryError, parse_queries_text, validate_queries
from fgclip_ros.core.rate_limit import CountedWarnings
from fgclip_ros.core.stats import RateLatencyStats


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from fgclip_ros.core.pipeline import Pipeline

    manifest = build_known_answer_model(tmp_path_factory.mktemp("engine-model"))
    engine = PerceptionEngine(Pipeline.from_manifest(str(manifest)), max_detections=3)
    engine.set_queries([RED_QUERY, BLUE_QUERY])
    return engine


def test_engine_scores_each_box_and_reports_rejected_ones(engine):
    image, boxes, _ = two_colour_scene()
    all_boxes = np.array([boxes[0], boxes[1], (np.nan, 0, 5, 5), boxes[0]], np.float64)
    output = engine.process(image, all_boxes, frame="f1")
    red, blue, nan_box, over = output.detections
    assert (red.best_query, blue.best_query) == (RED_QUERY, BLUE_QUERY)
    assert red.probability > 0.5 and red.margin > 0 and red.scores.shape == (2,)
    assert not nan_box.valid and nan_box.rejected_reason
    assert not over.valid and over.rejected_reason.startswith(REASON_OVER_LIMIT)
    assert output.queries == [RED_QUERY, BLUE_QUERY] and output.frame == "f1"


def test_each_result_carries_its_input_detection_id_and_box_also_when_rescored(engine):
    # One record from engine to message, report and overlay: the id and box come with the scores.
    image, boxes, _ = two_colour_scene()
    all_boxes = np.array([boxes[0], (np.nan, 0, 5, 5), boxes[1]], np.float64)
    output = engine.process(image, all_boxes, ids=["red-1", "nan-2", "blue-3"])
    assert [d.id for d in output.detections] == ["red-1", "nan-2", "blue-3"]
    assert [d.status for d in output.detections] == ["matched", "rejected", "matched"]
    np.testing.assert_array_equal(np.array([d.box_xyxy for d in output.detections]), all_boxes)
    rescored = engine.score_latest([BLUE_QUERY, RED_QUERY])
    assert [d.id for d in rescored.detections] == ["red-1", "nan-2", "blue-3"]
    with pytest.raises(ValueError, match="2 ids for 3 boxes"):
        engine.process(image, all_boxes, ids=["a", "b"])


def test_a_published_detection_reads_back_as_the_same_record(engine):
    # What the bag evaluator writes (rosbags FineGrainedDetections) is what the demo and the evaluator read.
    from fgclip_ros.bags.messages import make_fine_grained
    from fgclip_ros.bags.typestore import project_typestore
    from fgclip_ros.core.msg_fields import detection_from_message

    image, boxes, _ = two_colour_scene()
    all_boxes = np.array([boxes[0], (5, 5, 2, 2), boxes[1]], np.float64)
    output = engine.process(image, all_boxes, ids=["a", "b", "c"])
    msg = make_fine_grained(project_typestore(), 7, "camera", "model", output.queries, output.detections)
    for sent, got in zip(output.detections, (detection_from_message(d) for d in msg.detections), strict=True):
        assert (got.id, got.valid, got.status, got.rejected_reason, got.rejected_code, got.best_query) == (
            sent.id, sent.valid, sent.status, sent.rejected_reason, sent.rejected_code, sent.best_query
        )
        np.testing.assert_allclose(got.box_xyxy, sent.box_xyxy)
        np.testing.assert_allclose(got.scores, sent.scores)
        assert got.score == pytest.approx(sent.score) and got.margin == pytest.approx(sent.margin)


def test_engine_rescores_the_latest_frame_against_other_queries(engine):
    image, boxes, _ = two_colour_scene()
    engine.process(image, np.array(boxes, np.float64), frame="latest")
    swapped = engine.score_latest([BLUE_QUERY, RED_QUERY])
    assert swapped.frame == "latest"
    assert [d.best_index for d in swapped.detections] == [1, 0]
    # the node's own query set is untouched
    assert engine.queries == [RED_QUERY, BLUE_QUERY]
    unreachable = engine.score_latest(None, min_score=1.5)
    assert all(d.best_index == -1 for d in unreachable.detections)


def test_engine_with_no_queries_reports_no_match(engine):
    image, boxes, _ = two_colour_scene()
    try:
        engine.set_queries([])
        output = engine.process(image, np.array(boxes, np.float64))
        assert all(d.valid and d.best_index == -1 and d.scores.size == 0 for d in output.detections)
    finally:
        engine.set_queries([RED_QUERY, BLUE_QUERY])


def test_ranked_results_are_most_probable_first():
    detection = DetectionResult(
        valid=True,
        best_index=2,
        scores=np.array([0.1, 0.3, 0.5], np.float32),
        probs=np.array([0.2, 0.3, 0.5], np.float32),
    )
    assert [i for i, _ in detection.ranked(min_score=0.2)] == [2, 1]
    assert [i for i, _ in detection.ranked(min_score=0.0, top_k=1)] == [2]
    assert DetectionResult(valid=False).ranked(0.0) == []


# ----------------------------------------------------------------------------- query text
def test_parse_queries_text_json_and_lines():
    assert parse_queries_text('["a red mug", " b "]') == ["a red mug", "b"]
    assert parse_queries_text("a red mug\n\n  a blue bowl \n") == ["a red mug", "a blue bowl"]
    assert parse_queries_text("") == []
    with pytest.raises(QueryError) as info:
        parse_queries_text("[broken")
    assert info.value.reason == "bad_json"
    with pytest.raises(QueryError):
        parse_queries_text("[1, 2]")


@pytest.mark.parametrize(
    "queries,reason",
    [
        (["ok", ""], "empty_query"),
        (["x" * 1001], "query_too_long"),
        (["a"] * 5, "too_many_queries"),
        (["a\x00b"], "bad_character"),
        ("not a list", "bad_type"),
        ([3], "bad_type"),
    ],
)
def test_validate_queries_rejects_with_a_reason(queries, reason):
    with pytest.raises(QueryError) as info:
        validate_queries(queries, max_queries=4, max_chars=1000)
    assert info.value.reason == reason


def test_validate_queries_keeps_order_and_unicode():
    assert validate_queries([" 赤い物体 ", "b", "b"]) == ["赤い物体", "b", "b"]
    with pytest.raises(QueryError):
        validate_queries([], allow_empty=False)


# ----------------------------------------------------------------------------- warnings and stats
def test_counted_warnings_count_everything_and_log_once_per_period():
    now = [0.0]
    logged = []
    warnings = CountedWarnings(logged.append, period_s=5.0, clock=lambda: now[0])
    assert warnings.warn("bad_step", "first")
    for _ in range(3):
        assert not warnings.warn("bad_step", "again")
    assert warnings.warn("other", "different reason")
    now[0] = 6.0
    assert warnings.warn("bad_step", "later")
    assert warnings.counts() == {"bad_step": 5, "other": 1}
    assert logged[0] == "first" and "3 similar suppressed" in logged[-1]


def test_rate_and_latency_percentiles_over_the_window():
    stats = RateLatencyStats(window_s=10.0, clock=lambda: 0.0)
    latencies = [0.010 + 0.001 * i for i in range(11)]
    for i, latency in enumerate(latencies):
        stats.record(latency, now=0.1 * i)  # 10 Hz
    snapshot = stats.snapshot(now=1.0)
    assert snapshot.rate_hz == pytest.approx(10.0)
    assert snapshot.latency_p50_ms == pytest.approx(np.percentile(latencies, 50) * 1000)
    assert snapshot.latency_p99_ms == pytest.approx(np.percentile(latencies, 99) * 1000)
    later = stats.snapshot(now=100.0)  # everything left the window
    assert later.window_frames == 0 and later.rate_hz == 0.0 and later.frames_total == 11


# ----------------------------------------------------------------------------- overlay
def test_overlay_draws_boxes_in_their_state_colour():
    image = np.zeros((60, 80, 3), np.uint8)
    detections = [
        DetectionResult(
            valid=True,
            best_index=0,
            best_query="ein rotes Objekt ✓",
            probability=0.9,
            box_xyxy=(10, 20, 40, 50),
        ),
        DetectionResult(valid=False, rejected_reason="fully outside the image", box_xyxy=(50, 20, 70, 50)),
        DetectionResult(valid=False, rejected_reason="non-finite coordinates", box_xyxy=(np.nan, 0, 1, 1)),
    ]
    overlay = draw_overlay(image, detections)
    assert overlay.shape == image.shape and not np.shares_memory(overlay, image)
    assert (overlay[30:45, 10] == MATCHED_RGB).all(axis=1).any()
    assert (overlay[30:45, 50] == REJECTED_RGB).all(axis=1).any()
    assert not image.any()  # the input frame is left untouched


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_close_releases_the_model_from_gpu_memory(tmp_path):
    import gc

    import torch

    from fgclip_ros.core.pipeline import Pipeline

    manifest = build_known_answer_model(tmp_path / "model")
    pipeline = Pipeline.from_manifest(str(manifest), device="cuda")
    weight_bytes = sum(p.numel() * p.element_size() for p in pipeline.encoder.model.parameters())
    engine = PerceptionEngine(pipeline)
    del pipeline
    engine.set_queries([RED_QUERY, BLUE_QUERY])
    image, boxes, _ = two_colour_scene()
    assert [d.best_query for d in engine.process(image, np.array(boxes, np.float64)).detections] == [
        RED_QUERY,
        BLUE_QUERY,
    ]
    torch.cuda.synchronize()
    loaded = torch.cuda.memory_allocated()
    engine.close()
    gc.collect()
    assert loaded - torch.cuda.memory_allocated() >= weight_bytes


def test_frames_are_processed_while_a_query_set_is_being_encoded(engine):
    # A 4,096-query set takes seconds to encode; frames must not wait for it (they use the old set).
    image, boxes, _ = two_colour_scene()
    encoder = engine.pipeline.encoder
    original = encoder.encode_texts
    entered, release = threading.Event(), threading.Event()

    def slow_encode(prompts):
        entered.set()
        release.wait(30)
        return original(prompts)

    encoder.encode_texts = slow_encode
    setter = threading.Thread(target=engine.set_queries, args=([BLUE_QUERY, RED_QUERY, "a green object"],))
    try:
        setter.start()
        assert entered.wait(30)
        outputs = []
        boxes = np.array(boxes, np.float64)
        frame = threading.Thread(target=lambda: outputs.append(engine.process(image, boxes)))
        frame.start()
        frame.join(timeout=20)
        assert outputs, "a frame waited for the query encoding"
        assert outputs[0].queries == [RED_QUERY, BLUE_QUERY]
    finally:
        release.set()
        setter.join(timeout=30)
        encoder.encode_texts = original
    assert engine.queries == [BLUE_QUERY, RED_QUERY, "a green object"]
    engine.set_queries([RED_QUERY, BLUE_QUERY])
