# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-eval-bag on tiny sample bags with the tiny model: metrics against a direct computation."""

import json

import numpy as np
import pytest
from conftest import make_tiny_encoder, write_tiny_manifest
from test_bags import write_foreign_mcap

from fgclip_ros.bags import messages
from fgclip_ros.bags.ground_truth import GROUND_TRUTH_TOPIC, FrameTruth, ObjectTruth
from fgclip_ros.bags.reader import BagReader
from fgclip_ros.bags.sample import DETECTIONS_TOPIC, IMAGE_TOPIC, SampleBagConfig, write_sample_bag
from fgclip_ros.cli.eval_bag import main
from fgclip_ros.core.pipeline import Pipeline
from fgclip_ros.evaluation.bag import (
    OUTPUT_DETECTIONS_TOPIC,
    OUTPUT_LABELED_TOPIC,
    EvalBagOptions,
    evaluate_bag,
    evaluate_published,
)
from fgclip_ros.evaluation.bag_metrics import QueryJudge
from fgclip_ros.evaluation.bag_report import write_report
from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES, FAMILY_VALUES, VOCABULARY, ObjectSpec

SMALL = {"frames": 6, "width": 128, "height": 96}


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(make_tiny_encoder(seed=0), name="tiny")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Mcap sample where the detector skipped some frames (unpaired images)."""
    path = tmp_path_factory.mktemp("bags") / "sample"
    write_sample_bag(path, SampleBagConfig(**SMALL, drop_detections=0.4, seed=1))
    return path


def _read_bag(path):
    """Images, detections and ground truth by header stamp, read directly."""
    with BagReader(path) as bag:
        msgs = list(bag.messages([IMAGE_TOPIC, DETECTIONS_TOPIC, GROUND_TRUTH_TOPIC]))
    images = {
        messages.stamp_ns(m.msg.header): messages.image_to_rgb(m.msg, m.msgtype)
        for m in msgs
        if m.topic == IMAGE_TOPIC
    }
    dets = {
        messages.stamp_ns(m.msg.header): messages.detections_from_msg(m.msg)
        for m in msgs
        if m.topic == DETECTIONS_TOPIC
    }
    truths = {
        t.stamp_ns: t
        for t in (FrameTruth.from_json(m.msg.data) for m in msgs if m.topic == GROUND_TRUTH_TOPIC)
    }
    return images, dets, truths


def _candidates(truth: ObjectTruth) -> list[str]:
    """The true caption, then every variant with one attribute changed."""
    spec = ObjectSpec(truth.category, **truth.attributes)
    return [spec.caption()] + [
        spec.with_attribute(f, v).caption()
        for f in ATTRIBUTE_FAMILIES
        for v in FAMILY_VALUES[f]
        if v != getattr(spec, f)
    ]


def _direct_ranks(pipeline, frames) -> list[int]:
    """Rank of each object's true caption among its candidates, from the pipeline's own embeddings.

    frames: (image, boxes, truths) per frame, one truth per box.
    """
    texts = list(dict.fromkeys(c for _, _, truths in frames for t in truths for c in _candidates(t)))
    pipeline.set_queries(texts)
    text = pipeline.query_bank.embeddings
    ranks = []
    for image, boxes, truths in frames:
        crops, _ = pipeline.embed_crops(image, boxes)
        for crop, truth in zip(crops, truths, strict=True):
            scores = (text[[texts.index(c) for c in _candidates(truth)]] @ crop).numpy()
            ranks.append(int((scores >= scores[0]).sum()))
    return ranks


def test_metrics_match_a_direct_computation_from_the_frame_outputs(sample, pipeline, tmp_path):
    evaluation = evaluate_bag(
        sample,
        pipeline,
        EvalBagOptions(
            queries_from_ground_truth=True,
            progress=False,
            write_bag=tmp_path / "out_bag",
            vocabulary=VOCABULARY,
        ),
    )
    report = evaluation.report
    images, dets, truths = _read_bag(sample)
    paired = sorted(set(images) & set(dets))
    assert 0 < len(paired) < len(images)  # the sample really has unpaired images
    counts = report["counts"]
    assert counts["paired"] == counts["frames_processed"] == len(paired)
    assert counts["unpaired_images"] == len(images) - len(paired) and counts["unpaired_detections"] == 0
    assert [stamp for stamp, _ in evaluation.outputs] == paired

    captions = list(dict.fromkeys(o.caption for t in sorted(truths) for o in truths[t].objects))
    assert report["model"]["queries"] == captions
    best, true = [], []
    for stamp, output in evaluation.outputs:
        by_id = {o.id: o.caption for o in truths[stamp].objects}
        true += [by_id[i] for i in dets[stamp].ids]
        best += [d.best_query for d in output.detections]
    best, true = np.array(best), np.array(true)
    accuracy = report["accuracy"]
    assert accuracy["answerable"] == len(true)
    assert accuracy["top1_accuracy"] == pytest.approx(np.mean(best == true))
    for row in accuracy["per_query"]:
        q = row["query"]
        tp, fp, fn = (
            np.sum((best == q) & (true == q)),
            np.sum((best == q) & (true != q)),
            np.sum((best != q) & (true == q)),
        )
        assert (row["tp"], row["fp"], row["fn"]) == (tp, fp, fn)
        assert row["precision"] == (pytest.approx(tp / (tp + fp)) if tp + fp else None)
        assert row["recall"] == (pytest.approx(tp / (tp + fn)) if tp + fn else None)

    # ranks against hard negatives, recomputed from the pipeline's own embeddings
    frames = []
    for stamp, _ in evaluation.outputs:
        objects = {o.id: o for o in truths[stamp].objects}
        frames.append((images[stamp], dets[stamp].boxes, [objects[i] for i in dets[stamp].ids]))
    ranks = _direct_ranks(pipeline, frames)
    assert [r.rank for r in evaluation.records] == ranks
    ranking = report["ranking"]
    assert ranking["mean_rank"] == pytest.approx(np.mean(ranks))
    assert sum(ranking["histogram"].values()) == len(ranks)
    assert set(ranking["confusion"]) == set(ATTRIBUTE_FAMILIES)
    n_colors = len(FAMILY_VALUES["color"])
    assert ranking["per_family"]["color"]["chance_mean_rank"] == pytest.approx((n_colors + 1) / 2)

    # latency: one entry per processed frame
    assert report["timing"]["frames"] == len(paired) and report["timing"]["process_ms"]["p50"] > 0

    # the written bag holds what was evaluated: its labels give the same accuracy
    with BagReader(tmp_path / "out_bag") as out:
        assert set(out.topics) == {IMAGE_TOPIC, OUTPUT_DETECTIONS_TOPIC, OUTPUT_LABELED_TOPIC}
        published = [m.msg for m in out.messages([OUTPUT_DETECTIONS_TOPIC])]
        labeled = [m.msg for m in out.messages([OUTPUT_LABELED_TOPIC])]
    assert [messages.stamp_ns(m.header) for m in published] == paired
    published_best = np.array([d.best_query for m in published for d in m.detections])
    assert np.mean(published_best == true) == pytest.approx(accuracy["top1_accuracy"])
    # ... and scoring published messages (what the demo does with the node's output) gives the same report
    from_published, _ = evaluate_published(sample, published, vocabulary=VOCABULARY)
    assert from_published["accuracy"] == accuracy and from_published["labels"] == report["labels"]
    first = labeled[0].detections[0]
    assert first.results[0].hypothesis.class_id == published[0].detections[0].best_query

    files = write_report(evaluation, tmp_path / "report")
    assert json.loads(files["report"].read_text())["counts"]["paired"] == len(paired)
    assert len(files["detections"].read_text().splitlines()) == len(true)
    for name in ("latency", "rank_histogram", "confusion"):
        assert files[name].stat().st_size > 1000
    summary = files["summary"].read_text()
    assert "Top-1" in summary and "hard negatives" in summary and "confusion.png" in summary


def test_query_judge_accepts_partial_vocabulary_queries():
    mug = ObjectTruth(
        "a",
        "an opaque red plain plastic mug",
        "mug",
        {"color": "red", "material": "plastic", "pattern": "plain", "transparency": "opaque"},
    )
    judge = QueryJudge(
        ["red mug", "a mug", "blue mug", "An opaque red plain plastic mug", "my coffee"], [mug], VOCABULARY
    )
    assert [q for q in judge.queries if judge.is_true(q, mug)] == [
        "red mug",
        "a mug",
        "An opaque red plain plastic mug",
    ]
    assert judge.unevaluable == ["my coffee"]
    # Without a vocabulary only the exact caption can be judged.
    exact = QueryJudge(judge.queries, [mug])
    assert exact.evaluable == ["An opaque red plain plastic mug"]


def test_compressed_images_are_detected_and_decoded(tmp_path, pipeline):
    path = tmp_path / "jpeg"
    write_sample_bag(
        path, SampleBagConfig(frames=2, width=96, height=64, image_format="jpeg", storage="sqlite3")
    )
    report = evaluate_bag(
        path,
        pipeline,
        EvalBagOptions(queries=["a red mug", "a blue can"], progress=False, hard_negatives=False),
    ).report
    assert report["bag"]["image_type"] == messages.COMPRESSED_IMAGE
    assert report["counts"]["frames_processed"] == 2 and report["ranking"] is None


# --- the command line --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    return write_tiny_manifest(tmp_path_factory.mktemp("model"))


def _cli(bag, manifest, out, *extra):
    return main(
        [
            str(bag),
            "--model",
            str(manifest),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
            "-q",
            *extra,
        ]
    )


def test_cli_on_a_bag_without_ground_truth_written_by_another_tool(tmp_path, tiny_manifest, capsys):
    bag = tmp_path / "foreign.mcap"
    write_foreign_mcap(bag)
    queries = tmp_path / "queries.txt"
    queries.write_text("# what to look for\na red mug\n\na blue bottle\n")
    assert (
        _cli(
            bag,
            tiny_manifest,
            tmp_path / "r",
            "--queries-file",
            str(queries),
            "--write-bag",
            str(tmp_path / "labels"),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "no ground truth" in out and "latency per frame" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["accuracy"] is None and report["ranking"] is None
    assert report["model"]["queries"] == ["a red mug", "a blue bottle"]
    assert report["counts"]["frames_processed"] == 3 and report["counts"]["detections"] == 3
    assert sum(row["best_count"] for row in report["labels"]) == 3
    assert "No ground truth" in (tmp_path / "r" / "summary.md").read_text()
    with BagReader(tmp_path / "labels") as written:
        assert written.topics[OUTPUT_DETECTIONS_TOPIC].count == 3


def test_cli_with_ground_truth_prints_headline_numbers(sample, tiny_manifest, tmp_path, capsys):
    assert (
        _cli(sample, tiny_manifest, tmp_path / "r", "--queries-from-ground-truth", "--max-frames", "2") == 0
    )
    out = capsys.readouterr().out
    assert "top-1 accuracy" in out and "mean rank" in out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["counts"]["frames_processed"] == 2


@pytest.mark.parametrize("case", ["missing_topic", "wrong_type", "truncated", "no_queries", "no_bag"])
def test_cli_bad_input_exits_2_naming_what_is_missing(case, sample, tiny_manifest, tmp_path, capsys):
    import shutil

    bag, extra, expected = sample, ["--queries-from-ground-truth"], None
    if case == "missing_topic":
        extra += ["--image-topic", "/front/image"]
        expected = "/front/image is not in bag"
    elif case == "wrong_type":
        extra += ["--image-topic", DETECTIONS_TOPIC]
        expected = "expected sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"
    elif case == "truncated":
        bag = tmp_path / "cut"
        shutil.copytree(sample, bag)
        data = next(bag.glob("*.mcap"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
        expected = "truncated or corrupt"
    elif case == "no_queries":
        extra = []
        expected = "no queries"
    else:
        bag = tmp_path / "nothing_here"
        expected = "does not exist"
    assert _cli(bag, tiny_manifest, tmp_path / "r", *extra) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("fgclip-eval-bag: error:") and expected in err and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "r").exists()


def test_attribute_accuracy_is_the_share_of_family_rank_one(sample, pipeline):
    options = EvalBagOptions(queries=["a mug"], progress=False, vocabulary=VOCABULARY)
    records = evaluate_bag(sample, pipeline, options).records
    ranked = [r for r in records if r.rank is not None]
    assert ranked
    for record in ranked:
        for family, rank in record.family_ranks.items():
            assert (rank == 1) == (record.family_predicted[family] == record.truth.attributes[family])
        assert record.rank >= max(record.family_ranks.values())


def test_without_a_vocabulary_there_are_no_hard_negatives(sample, pipeline):
    # The evaluator knows no world of its own: the ranking needs the vocabulary the caller passes.
    report = evaluate_bag(sample, pipeline, EvalBagOptions(queries=["a mug"], progress=False)).report
    assert report["ranking"] is None and report["accuracy"]["evaluable_queries"] == []
