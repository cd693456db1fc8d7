# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Metrics of labelled detections against per-frame ground truth (from a bag or from the node).

Inputs are `DetectionRecord`s, one per input detection, built by `records_for_frame` from the
engine's `DetectionResult`s (computed offline, or read back from the node's published
FineGrainedDetections) and the frame's ground truth. Everything here is plain NumPy on those
records, so the offline evaluator and the demo (which scores what the node published) compute
identical numbers the same way.

When is a query "true" for an object (QueryJudge)?
- the query equals the object's caption (case and whitespace ignored), or
- a `Vocabulary` is given, the ground truth carries category + attributes and every word of the
  query except articles is a value of that vocabulary that the object has ("red mug" is true for
  every red mug; "mug" for every mug). Other free text cannot be judged and is listed as unevaluable.
"""

import functools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from fgclip_ros.bags.ground_truth import FrameTruth, ObjectTruth
from fgclip_ros.core.detection import MATCHED, NO_MATCH, REJECTED, DetectionResult
from fgclip_ros.evaluation.ranks import chance_mean_rank, mean_rank, median_rank
from fgclip_ros.evaluation.vocabulary import ARTICLES, Vocabulary

IOU_MATCH = 0.5


@functools.lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    return " ".join(text.lower().split())


def parse_vocab_query(query: str, terms: dict[str, str]) -> dict[str, str] | None:
    """{"color": "red", "category": "mug"} for "a red mug"; None when a word is not a vocabulary value."""
    parsed: dict[str, str] = {}
    words = [w for w in normalize_text(query).split() if w not in ARTICLES]
    for word in words:
        family = terms.get(word)
        if family is None or parsed.get(family, word) != word:
            return None
        parsed[family] = word
    return parsed or None


class QueryJudge:
    """Decides whether a query correctly describes a ground-truth object (rules in the module docstring)."""

    def __init__(self, queries: list[str], truths: list[ObjectTruth], vocabulary: Vocabulary | None = None):
        self.queries = list(queries)
        captions = {normalize_text(o.caption) for o in truths}
        with_attributes = vocabulary is not None and any(o.category and o.attributes for o in truths)
        terms = vocabulary.terms() if with_attributes else {}
        self._parsed = {q: parse_vocab_query(q, terms) if with_attributes else None for q in self.queries}
        self.evaluable = [
            q for q in self.queries if normalize_text(q) in captions or self._parsed[q] is not None
        ]
        self.unevaluable = [q for q in self.queries if q not in self.evaluable]

    def is_true(self, query: str, truth: ObjectTruth) -> bool:
        if normalize_text(query) == normalize_text(truth.caption):
            return True
        parsed = self._parsed.get(query)
        if parsed is None or truth.category is None:
            return False
        fields = {"category": truth.category, **truth.attributes}
        return all(fields.get(family) == value for family, value in parsed.items())


@dataclass
class DetectionRecord:
    """One input detection of one frame: the engine's result, its ground truth (if matched), its ranks."""

    frame: int
    stamp_ns: int
    detection: DetectionResult
    truth: ObjectTruth | None = None
    rank: int | None = None  # true caption among itself + all hard negatives (1 = best)
    rank_candidates: int | None = None
    family_ranks: dict[str, int] = field(default_factory=dict)  # within the family's negatives only
    family_candidates: dict[str, int] = field(default_factory=dict)
    family_predicted: dict[str, str] = field(default_factory=dict)  # best-scoring value of the family

    @property
    def matched(self) -> bool:
        return self.detection.status == MATCHED

    def to_dict(self) -> dict:
        """The reports' JSONL row: the detection's published fields (no per-query scores) + evaluation."""
        d = self.detection
        return {
            "frame": self.frame,
            "stamp_ns": self.stamp_ns,
            "id": d.id,
            "box_xyxy": [float(v) for v in d.box_xyxy],
            **d.summary(),
            "truth": self.truth.to_dict() if self.truth else None,
            "rank": self.rank,
            "rank_candidates": self.rank_candidates,
            "family_ranks": dict(self.family_ranks),
            "family_candidates": dict(self.family_candidates),
            "family_predicted": dict(self.family_predicted),
        }


def verdict(record: DetectionRecord, judge: QueryJudge) -> bool | None:
    """Is the best query true for the object? None when not judged.

    Not judged: no ground truth, or no evaluable query describes the object. Rejected boxes and
    boxes without a match are wrong (misses).
    """
    truth = record.truth
    if truth is None or not any(judge.is_true(q, truth) for q in judge.evaluable):
        return None
    best = record.detection.best_query
    return record.matched and best in judge.evaluable and judge.is_true(best, truth)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_truth(detections: list[DetectionResult], truth: FrameTruth | None) -> list[ObjectTruth | None]:
    """Ground-truth object of each detection: same id, else (ids empty/unknown) greedy IoU >= 0.5."""
    if truth is None:
        return [None] * len(detections)
    by_id = {o.id: o for o in truth.objects if o.id}
    matched: list[ObjectTruth | None] = [by_id.get(d.id) if d.id else None for d in detections]
    used = {id(o) for o in matched if o is not None}
    free = [o for o in truth.objects if id(o) not in used and o.box_xyxy is not None]
    pairs = sorted(
        (
            (_iou(d.box_xyxy, o.box_xyxy), i, k)
            for i, d in enumerate(detections)
            if matched[i] is None
            for k, o in enumerate(free)
        ),
        reverse=True,
    )
    taken = set()
    for iou, i, k in pairs:
        if iou < IOU_MATCH:
            break
        if matched[i] is None and k not in taken:
            matched[i] = free[k]
            taken.add(k)
    return matched


def records_for_frame(
    frame: int, stamp_ns: int, detections: list[DetectionResult], truth: FrameTruth | None
) -> list[DetectionRecord]:
    return [
        DetectionRecord(frame=frame, stamp_ns=stamp_ns, detection=d, truth=t)
        for d, t in zip(detections, match_truth(detections, truth), strict=True)
    ]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def labels_table(records: list[DetectionRecord], queries: list[str]) -> list[dict]:
    """Per query: how often it was the best match, mean score/probability; + no-match and rejected rows."""
    detections = [r.detection for r in records]
    rows = []
    for query in queries:
        hits = [d for d in detections if d.status == MATCHED and d.best_query == query]
        rows.append(
            {
                "query": query,
                "best_count": len(hits),
                "mean_score": float(np.mean([d.score for d in hits])) if hits else None,
                "mean_probability": float(np.mean([d.probability for d in hits])) if hits else None,
            }
        )
    no_match = [d for d in detections if d.status == NO_MATCH]
    rows.append(
        {
            "query": "(no query reached min_score)",
            "best_count": len(no_match),
            "mean_score": float(np.mean([d.score for d in no_match])) if no_match else None,
            "mean_probability": None,
        }
    )
    rows.append(
        {
            "query": "(box rejected)",
            "best_count": sum(d.status == REJECTED for d in detections),
            "mean_score": None,
            "mean_probability": None,
        }
    )
    return rows


def accuracy_metrics(records: list[DetectionRecord], judge: QueryJudge) -> dict:
    """Per-query precision/recall/accuracy (one-vs-rest) of the best match, and overall top-1 accuracy.

    Over every detection with ground truth (rejected boxes included: they are misses).
    top-1 accuracy counts the detections for which at least one evaluable query is true (`verdict`).
    """
    evaluated = [r for r in records if r.truth is not None]
    per_query = []
    for query in judge.evaluable:
        actual = np.array([judge.is_true(query, r.truth) for r in evaluated], bool)
        predicted = np.array([r.matched and r.detection.best_query == query for r in evaluated], bool)
        tp, fp = int((actual & predicted).sum()), int((~actual & predicted).sum())
        fn, tn = int((actual & ~predicted).sum()), int((~actual & ~predicted).sum())
        per_query.append(
            {
                "query": query,
                "support": tp + fn,
                "predicted": tp + fp,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, tp + fn),
                "accuracy": _ratio(tp + tn, len(evaluated)),
            }
        )
    verdicts = [(r, verdict(r, judge)) for r in evaluated]
    answerable = [r for r, v in verdicts if v is not None]
    return {
        "detections_with_ground_truth": len(evaluated),
        "answerable": len(answerable),
        "correct": sum(v is True for _, v in verdicts),
        "top1_accuracy": _ratio(sum(v is True for _, v in verdicts), len(answerable)),
        "no_match": sum(r.detection.status == NO_MATCH for r in answerable),
        "rejected": sum(r.detection.status == REJECTED for r in answerable),
        "evaluable_queries": judge.evaluable,
        "unevaluable_queries": judge.unevaluable,
        "per_query": per_query,
    }


def ranking_metrics(
    records: list[DetectionRecord], families: tuple[str, ...], family_values: dict[str, tuple]
) -> dict | None:
    """Mean rank of the true caption among hard negatives, per family too, and attribute confusion."""
    ranked = [r for r in records if r.rank is not None]
    if not ranked:
        return None
    ranks = np.array([r.rank for r in ranked])
    per_family, confusion = {}, {}
    for family in families:
        rows = [r for r in ranked if family in r.family_ranks]
        if not rows:
            continue
        family_ranks = np.array([r.family_ranks[family] for r in rows])
        candidates = np.array([r.family_candidates[family] for r in rows])
        per_family[family] = {
            "objects": len(rows),
            "mean_rank": mean_rank(family_ranks),
            "chance_mean_rank": float(np.mean([chance_mean_rank(c - 1) for c in candidates])),
            "accuracy": float(
                np.mean([r.family_predicted[family] == r.truth.attributes[family] for r in rows])
            ),
        }
        values = list(family_values[family])
        matrix = np.zeros((len(values), len(values)), np.int64)
        for r in rows:
            matrix[values.index(r.truth.attributes[family]), values.index(r.family_predicted[family])] += 1
        confusion[family] = {"values": values, "matrix": matrix.tolist()}
    return {
        "objects": len(ranked),
        "mean_rank": mean_rank(ranks),
        "median_rank": median_rank(ranks),
        "top1": float(np.mean(ranks == 1)),
        "mean_candidates": float(np.mean([r.rank_candidates for r in ranked])),
        "histogram": {int(k): int(v) for k, v in sorted(Counter(ranks.tolist()).items())},
        "per_family": per_family,
        "confusion": confusion,
    }


def percentiles(values: list[float]) -> dict:
    """p50, p99, mean and max of a latency list (all None when empty)."""
    if not values:
        return {"p50": None, "p99": None, "mean": None, "max": None}
    arr = np.asarray(values, np.float64)
    p50, p99 = np.percentile(arr, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "mean": float(arr.mean()), "max": float(arr.max())}


def timing_metrics(decode_ms: list[float], process_ms: list[float], detections: list[int]) -> dict:
    """Latency per frame (image decode, scoring, both) and one-stream throughput of the processed frames."""
    frame_ms = [a + b for a, b in zip(decode_ms, process_ms, strict=True)]
    total_s = sum(frame_ms) / 1000.0
    return {
        "frames": len(frame_ms),
        "decode_ms": percentiles(decode_ms),
        "process_ms": percentiles(process_ms),
        "frame_ms": percentiles(frame_ms),
        "throughput_fps": len(frame_ms) / total_s if total_s > 0 else None,
        "detections_per_s": sum(detections) / total_s if total_s > 0 else None,
    }
