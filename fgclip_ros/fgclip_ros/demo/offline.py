# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ROS-free parts of the demo (`fgclip-demo`): query sets, the per-object verdicts, reports.

The demo itself (`fgclip_ros.demo.run`) replays the sample bag into the running node and collects
what it publishes. Everything that needs only the bag's ground truth and the node's answers (as
`DetectionResult`s / `DetectionRecord`s) lives here, so it is testable without a ROS graph:

- `topic_queries`: what the demo publishes on `queries`: every true caption of the bag and, per
  caption, one hard negative per attribute family (the neighbouring vocabulary value, e.g.
  "a transparent ..." vs "a translucent ..."), so a correct answer needs the fine-grained attribute.
- `service_queries` / `rank_service_answer`: the Query service call: each object of a frame against
  its true caption and every one-attribute-changed caption (FG-OVD's hard negatives), ranked.
- `object_table`: the per-object table (true caption, best query, score, correct?) judged by the
  evaluator's own `bag_metrics.verdict`, so it counts exactly what `evaluate_published` reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fgclip_ros.bags.ground_truth import FrameTruth, ObjectTruth
from fgclip_ros.core.detection import DetectionResult
from fgclip_ros.evaluation import bag_metrics
from fgclip_ros.evaluation.bag_metrics import DetectionRecord, QueryJudge
from fgclip_ros.evaluation.bag_report import json_default
from fgclip_ros.evaluation.ranks import positive_rank
from fgclip_ros.ros.param_file import nested


# ----------------------------------------------------------------------------- queries
def _spec(truth: ObjectTruth):
    """The synthetic world's ObjectSpec of a ground-truth object; None without category + attributes."""
    from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES, ObjectSpec

    if not truth.category or any(f not in truth.attributes for f in ATTRIBUTE_FAMILIES):
        return None
    try:
        return ObjectSpec(truth.category, **{f: truth.attributes[f] for f in ATTRIBUTE_FAMILIES})
    except (TypeError, ValueError):
        return None


def neighbour_value(family: str, value: str) -> str:
    """The next value of the family in vocabulary order (the previous one for the last value).

    The orders put look-alikes next to each other (translucent/transparent, red/orange), which makes
    these the harder negatives.
    """
    from fgclip_ros.synth.vocab import FAMILY_VALUES

    values = FAMILY_VALUES[family]
    index = values.index(value)
    return values[index + 1] if index + 1 < len(values) else values[index - 1]


def topic_queries(truths: Iterable[ObjectTruth]) -> list[str]:
    """Every true caption, each followed by one hard negative per attribute family (no duplicates)."""
    from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES

    queries: dict[str, None] = {}
    for truth in truths:
        queries[truth.caption] = None
        spec = _spec(truth)
        if spec is None:
            continue
        for family in ATTRIBUTE_FAMILIES:
            negative = spec.with_attribute(family, neighbour_value(family, getattr(spec, family)))
            queries[negative.caption()] = None
    return list(queries)


def candidate_captions(truth: ObjectTruth) -> list[str]:
    """The true caption first, then its hard negatives (every other value of every family)."""
    from fgclip_ros.evaluation.bag import hard_negative_candidates
    from fgclip_ros.synth.vocab import VOCABULARY

    candidates = hard_negative_candidates(truth, VOCABULARY)
    return [truth.caption] if candidates is None else candidates.captions


def service_queries(frame: FrameTruth) -> list[str]:
    """The Query service call's queries for one frame: each object's candidate captions, no duplicates."""
    return list(dict.fromkeys(c for obj in frame.objects for c in candidate_captions(obj)))


@dataclass
class ServiceRow:
    """One detection of the Query service answer: its true caption ranked against its hard negatives."""

    id: str
    caption: str
    rank: int  # 1 = the true caption scored best
    candidates: int
    true_score: float
    hardest_negative: str
    hardest_negative_score: float


def rank_service_answer(
    queries: list[str], answer: list[DetectionResult], frame: FrameTruth | None
) -> list[ServiceRow]:
    """Rank each answered detection's true caption among its own candidates (from the answer's scores)."""
    if frame is None:
        return []
    index = {q: i for i, q in enumerate(queries)}
    truths = bag_metrics.match_truth(answer, frame)
    rows = []
    for detection, truth in zip(answer, truths, strict=True):
        if truth is None or not detection.valid or len(detection.scores) != len(queries):
            continue
        captions = candidate_captions(truth)
        if len(captions) < 2 or any(c not in index for c in captions):
            continue
        scores = np.asarray([detection.scores[index[c]] for c in captions], np.float64)
        hardest = 1 + int(np.argmax(scores[1:]))
        rows.append(
            ServiceRow(
                id=detection.id,
                caption=truth.caption,
                rank=positive_rank(scores[0], scores[1:]),
                candidates=len(captions),
                true_score=float(scores[0]),
                hardest_negative=captions[hardest],
                hardest_negative_score=float(scores[hardest]),
            )
        )
    return rows


# ----------------------------------------------------------------------------- per-object verdicts
def object_table(
    records: list[DetectionRecord], judge: QueryJudge, frame_of_stamp: dict[int, int] | None = None
) -> list[dict]:
    """The per-object rows of the report: what the node answered and whether the ground truth agrees.

    `correct` is `bag_metrics.verdict`, the numerator of `accuracy_metrics`' top-1 (None: not judged).
    `frame_of_stamp`: the bag's frame number of each image stamp (else the record's own frame count).
    """
    frame_of_stamp = frame_of_stamp or {}
    rows = []
    for record in records:
        detection = record.detection
        rows.append(
            {
                "frame": frame_of_stamp.get(record.stamp_ns, record.frame),
                "stamp_ns": record.stamp_ns,
                "id": detection.id,
                "caption": record.truth.caption if record.truth is not None else None,
                "status": detection.status,
                "best_query": detection.best_query if record.matched else "",
                "score": detection.score,
                "probability": detection.probability,
                "margin": detection.margin,
                "correct": bag_metrics.verdict(record, judge),
            }
        )
    return rows


# ----------------------------------------------------------------------------- node vs offline
def compare_with_offline(node_records: list[DetectionRecord], offline_records: list[DetectionRecord]) -> dict:
    """Per detection (stamp, id): does the offline pipeline pick the node's best query? Score differences."""
    offline = {(r.stamp_ns, r.detection.id): r.detection for r in offline_records}
    same, differ, missing, max_diff = 0, [], 0, 0.0
    for record in node_records:
        node = record.detection
        other = offline.get((record.stamp_ns, node.id))
        if other is None:
            missing += 1
            continue
        if (node.valid, node.best_query) == (other.valid, other.best_query):
            same += 1
        else:
            differ.append(
                {
                    "stamp_ns": record.stamp_ns,
                    "id": node.id,
                    "node": node.best_query,
                    "offline": other.best_query,
                }
            )
        if node.valid and other.valid:
            max_diff = max(max_diff, abs(node.score - other.score))
    return {
        "compared": same + len(differ),
        "same_best_query": same,
        "different": differ,
        "not_in_offline": missing,
        "max_abs_score_difference": max_diff,
    }


def offline_evaluation(
    bag_path: Path,
    model: str,
    params: dict,
    device: str,
    queries: list[str],
    node_records: list[DetectionRecord],
    judge: QueryJudge,
    out_dir: Path,
) -> dict:
    """`evaluate_bag` (the node's logic without ROS) on the same bag, model, queries and node parameters.

    Writes its report into `out_dir`; returns its accuracy on the frames the node answered, the
    per-detection comparison with the node, and the hard-negative ranking the node cannot give.
    """
    from fgclip_ros.core.device import resolve_device
    from fgclip_ros.evaluation.bag import EvalBagOptions, evaluate_bag
    from fgclip_ros.evaluation.bag_report import write_report
    from fgclip_ros.export.deploy import DEFAULT_INTRA_OP_THREADS, deployed_pipeline
    from fgclip_ros.synth.vocab import VOCABULARY

    pipeline = deployed_pipeline(
        model,
        backend=str(params.get("backend", "auto")),
        device=resolve_device(device),
        dtype=str(params.get("dtype", "fp32")),
        quantize=str(params.get("quantize", "auto")),
        intra_op_threads=int(params.get("intra_op_threads", DEFAULT_INTRA_OP_THREADS)),
        context_scale=float(params.get("context_scale", 1.0)),
    )
    if params.get("prompt_template"):
        pipeline.query_bank.set_template(str(params["prompt_template"]))
    options = EvalBagOptions(
        queries=list(queries),
        tolerance_s=float(nested(params, "sync.tolerance_s", 0.0)),
        min_score=float(params.get("min_score", 0.0)),
        max_detections=int(params.get("max_detections", 100)),
        progress=False,
        vocabulary=VOCABULARY,
    )
    evaluation = evaluate_bag(bag_path, pipeline, options)
    write_report(evaluation, out_dir)
    answered = {r.stamp_ns for r in node_records}
    same_frames = [r for r in evaluation.records if r.stamp_ns in answered]
    return {
        "provider": evaluation.report["model"]["provider"],
        "top1_accuracy_same_frames": bag_metrics.accuracy_metrics(same_frames, judge)["top1_accuracy"],
        "top1_accuracy_whole_bag": (evaluation.report["accuracy"] or {}).get("top1_accuracy"),
        "comparison": compare_with_offline(node_records, evaluation.records),
        "ranking": evaluation.report["ranking"],
        "timing": evaluation.report["timing"],
        "report": f"{out_dir.name}/report.json",
    }


def write_raw_bag(path: Path, topics: dict[str, tuple[str, list[tuple[int, bytes]]]]) -> Path:
    """An mcap bag of CDR messages as received: {topic: (msgtype, [(log time ns, bytes), ...])}."""
    from fgclip_ros.bags.writer import BagWriter

    with BagWriter(path, storage="mcap") as bag:
        for topic, (msgtype, items) in topics.items():
            bag.add_topic(topic, msgtype)
            for log_time_ns, data in sorted(items, key=lambda item: item[0]):
                bag.write_raw(topic, bytes(data), log_time_ns)
    return path


# ----------------------------------------------------------------------------- annotated frames
OK_RGB, WRONG_RGB = (40, 220, 40), (235, 50, 50)


def annotate_frame(
    image_rgb: np.ndarray, records: list[DetectionRecord], judge: QueryJudge, scale: int = 2
) -> np.ndarray:
    """The node's overlay (core.overlay) of one frame's records, `scale` times larger, plus a verdict per box.

    Under each judged box: "ok" (green) when the best query is true for the object, else
    "true: <caption>" (red).
    """
    import cv2

    from fgclip_ros.core.overlay import draw_overlay

    height, width = image_rgb.shape[:2]
    big = cv2.resize(image_rgb, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    canvas = draw_overlay(big, [r.detection for r in records], box_scale=scale)
    font_scale = max(0.35, min(1.0, canvas.shape[1] / 1280))
    for record in records:
        correct = bag_metrics.verdict(record, judge)
        box = np.asarray(record.detection.box_xyxy, np.float64) * scale
        if correct is None or not np.all(np.isfinite(box)):
            continue
        # Hershey fonts draw ASCII only.
        text = "ok" if correct else f"true: {record.truth.caption}".encode("ascii", "replace").decode()
        colour = OK_RGB if correct else WRONG_RGB
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # Inside the box's bottom edge: the overlay's own label sits above the box (below it at the top edge).
        x = int(np.clip(min(box[0] + 2, canvas.shape[1] - text_w - 3), 0, canvas.shape[1] - 1))
        y = int(np.clip(box[3] - baseline - 3, text_h + 2, canvas.shape[0] - baseline - 1))
        cv2.rectangle(canvas, (x, y - text_h - 2), (x + text_w + 2, y + baseline), colour, -1)
        cv2.putText(canvas, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_png(path: Path, image_rgb: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced over `items`, first and last included."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    positions = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in dict.fromkeys(positions.tolist())]


# ----------------------------------------------------------------------------- report files
def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_summary(report: dict) -> str:
    demo, evaluation = report["demo"], report["evaluation"]
    accuracy = evaluation.get("accuracy") or {}
    lines = [
        "# fgclip_ros demo",
        "",
        f"The perception node (`fgclip-perception`, model `{demo['model']}`, "
        f"{demo['provider'] or 'provider n/a'}) answered {demo['frames_answered']} of "
        f"{demo['frames_expected']} frames of the sample bag replayed at {demo['replay_rate']:g}x its "
        f"recorded rate ({demo['bag_frames']} frames at {demo['bag_rate_hz']:g} Hz), "
        f"with {len(report['queries']['topic'])} queries set on the `queries` topic "
        "(every true caption + one hard negative per attribute family).",
        "",
        f"**Top-1 accuracy of what the node published: {_pct(accuracy.get('top1_accuracy'))}** "
        f"({accuracy.get('correct', 0)} of {accuracy.get('answerable', 0)} objects; "
        f"{accuracy.get('no_match', 0)} without a match, {accuracy.get('rejected', 0)} boxes rejected). "
        "Scored by `evaluate_published` against the bag's ground truth.",
        "",
    ]
    service = report.get("service")
    if service:
        lines += [
            "## Query service (latest frame): true caption vs its hard negatives",
            "",
            f"Frame {service['frame']}, {len(service['queries'])} queries; mean rank "
            f"**{service['mean_rank']:.2f}** (1 = best), top-1 {_pct(service['top1'])}.",
            "",
            "| id | true caption | rank | hardest negative | score true / negative |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['id']} | {_cell(r['caption'])} | {r['rank']} / {r['candidates']} | "
            f"{_cell(r['hardest_negative'])} | {r['true_score']:.3f} / {r['hardest_negative_score']:.3f} |"
            for r in service["rows"]
        ]
        lines.append("")
    offline = report.get("offline")
    if offline:
        comparison = offline["comparison"]
        lines += [
            "## The node against the offline evaluation (`evaluate_bag`, same frames)",
            "",
            f"Same best query for {comparison['same_best_query']} of {comparison['compared']} detections "
            f"(largest score difference {comparison['max_abs_score_difference']:.2e}); top-1 accuracy "
            f"node {_pct(accuracy.get('top1_accuracy'))}, "
            f"offline {_pct(offline['top1_accuracy_same_frames'])}.",
        ]
        ranking = offline.get("ranking")
        if ranking:
            lines += [
                f"Offline hard-negative ranking over the whole bag: mean rank {ranking['mean_rank']:.2f} of "
                f"{ranking['mean_candidates']:.0f} captions "
                f"(chance {(ranking['mean_candidates'] + 1) / 2:.1f}), "
                f"top-1 {_pct(ranking['top1'])}; details in [offline/summary.md](offline/summary.md).",
            ]
        lines.append("")
    frames = report["files"].get("annotated", [])
    if frames:
        lines += ["## Annotated frames", ""]
        lines += [f"![{Path(p).stem}]({p})" for p in frames]
        lines.append("")
    lines += [
        "## What the node answered per object",
        "",
        "| frame | id | true caption | best query | score | correct |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["objects"]:
        verdict = "-" if row["correct"] is None else ("yes" if row["correct"] else "no")
        best = row["best_query"] or f"({row['status']})"
        lines.append(
            f"| {row['frame']} | {row['id']} | {_cell(row['caption'] or '-')} | {_cell(best)} | "
            f"{row['score']:.3f} | {verdict} |"
        )
    timings = demo["timings_s"]
    lines += [
        "",
        "## Run",
        "",
        f"`{demo['command']}`: {demo['wall_s']:.1f} s in all ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f"); ROS_DOMAIN_ID {demo['domain_id']}, localhost-only discovery.",
        "",
    ]
    return "\n".join(lines)


def write_report_files(out_dir: Path, report: dict, records: list[DetectionRecord]) -> dict[str, Path]:
    """report.json (everything), summary.md (its tables), detections.jsonl (one detection a line)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "report": out_dir / "report.json",
        "summary": out_dir / "summary.md",
        "detections": out_dir / "detections.jsonl",
    }
    files["report"].write_text(json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n")
    files["summary"].write_text(markdown_summary(report))
    with files["detections"].open("w") as stream:
        for record in records:
            stream.write(json.dumps(record.to_dict(), default=json_default) + "\n")
    return files


def rows_as_dicts(rows: list) -> list[dict]:
    return [asdict(r) for r in rows]
