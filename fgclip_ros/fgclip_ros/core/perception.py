# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The perception node's logic without ROS: a Pipeline, the latest frame, and waiting for the next one.

:class:`PerceptionEngine` scores each frame's boxes against the current queries, keeps the crop
embeddings of the latest frame so that the Query service can score that frame against *other*
queries without running the image tower again.
The rclpy node (``fgclip_ros.ros.perception_node``) only converts messages and calls it.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fgclip_ros.core.detection import DetectionResult
from fgclip_ros.core.matcher import MatchResult, QueryBank, match
from fgclip_ros.core.rejection import REASON_OVER_LIMIT


@dataclass
class FrameOutput:
    frame: Any  # the caller's frame token (the node passes the image header)
    sequence: int  # 1, 2, ... per processed frame
    queries: list[str]
    min_score: float
    detections: list[DetectionResult]
    latency_s: float = 0.0


@dataclass
class _LatestFrame:
    frame: Any
    sequence: int
    embeddings: torch.Tensor  # (K, D) projected crop embeddings of the valid boxes
    valid: np.ndarray  # (N,) bool
    reasons: dict[int, str]
    ids: list[str]
    boxes: np.ndarray  # (N, 4) xyxy


def build_results(
    match_result: MatchResult,
    valid: np.ndarray,
    reasons: dict[int, str],
    queries: list[str],
    ids: list[str],
    boxes: np.ndarray,
) -> list[DetectionResult]:
    """One DetectionResult per input box from the match of the valid boxes (rows in input order)."""
    results: list[DetectionResult] = []
    row = 0
    for index, is_valid in enumerate(valid):
        box = tuple(float(v) for v in boxes[index])
        if not is_valid:
            results.append(
                DetectionResult(
                    valid=False, rejected_reason=reasons.get(index, "rejected"), id=ids[index], box_xyxy=box
                )
            )
            continue
        best = int(match_result.best_index[row])
        scores = match_result.scores[row].astype(np.float32, copy=False)
        probs = match_result.probs[row].astype(np.float32, copy=False)
        top = int(np.argmax(scores)) if scores.size else -1
        results.append(
            DetectionResult(
                valid=True,
                best_index=best,
                best_query=queries[best] if best >= 0 else "",
                score=float(match_result.best_score[row]),
                probability=float(probs[top]) if top >= 0 else 0.0,
                margin=float(match_result.margin[row]),
                scores=scores,
                probs=probs,
                id=ids[index],
                box_xyxy=box,
            )
        )
        row += 1
    return results


class PerceptionEngine:
    """Thread-safe wrapper of a Pipeline for a node: process frames, answer queries, wait for frames."""

    def __init__(self, pipeline, max_detections: int = 100, min_score: float = 0.0):
        self.pipeline = pipeline
        self.max_detections = int(max_detections)
        self.min_score = float(min_score)
        # One lock around every use of the model: frames, query-set changes and service re-scoring
        # come from different executor threads.
        self._model_lock = threading.RLock()
        self._frame_lock = threading.Lock()  # sequence and latest frame
        self._sequence = 0
        self._latest: _LatestFrame | None = None
        self._latest_output: FrameOutput | None = None
        self._adhoc_bank = QueryBank(
            pipeline.encode_queries,
            template=pipeline.query_bank.template,
            embed_dim=pipeline.encoder.embed_dim,
        )

    # ------------------------------------------------------------------ queries
    @property
    def queries(self) -> list[str]:
        return self.pipeline.queries

    def set_queries(self, queries: list[str], template: str | None = None) -> None:
        """Replace the query set; the text embeddings are computed here, once per change.

        They are computed into a new bank outside the model lock (a large set takes seconds, and
        only the text tower runs), then swapped in: frames meanwhile use the previous set.
        """
        pipeline = self.pipeline
        bank = QueryBank(
            pipeline.encode_queries,
            template=pipeline.query_bank.template if template is None else template,
            embed_dim=pipeline.encoder.embed_dim,
        )
        bank.set_queries(list(queries))
        bank.embeddings  # noqa: B018 - encode now, not inside the next frame
        with self._model_lock:
            pipeline.query_bank = bank
            self._adhoc_bank.set_template(bank.template)

    def text_embeddings(self, queries: list[str] | None) -> tuple[list[str], torch.Tensor]:
        """Embeddings of ``queries`` (None = the current set), cached for repeated service calls."""
        with self._model_lock:
            if queries is None or list(queries) == self.pipeline.queries:
                return self.pipeline.queries, self.pipeline.query_bank.embeddings
            self._adhoc_bank.set_queries(list(queries))
            return self._adhoc_bank.queries, self._adhoc_bank.embeddings

    # ------------------------------------------------------------------ frames
    @property
    def sequence(self) -> int:
        with self._frame_lock:
            return self._sequence

    @property
    def latest(self) -> FrameOutput | None:
        with self._frame_lock:
            return self._latest_output

    def process(
        self, image_rgb: np.ndarray, boxes_xyxy: np.ndarray, frame: Any = None, ids: list[str] | None = None
    ) -> FrameOutput:
        """Score the boxes of one frame; boxes beyond ``max_detections`` are rejected with a reason.

        ``ids``: the input detections' ids, carried into the results ("" each when None).

        The one per-frame function of the node, ``fgclip-eval-bag`` and ``fgclip-bench``'s pipeline
        row: ``Pipeline.process`` (fused on CUDA) plus the per-box results the messages carry.
        """
        start = time.perf_counter()
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        ids = [""] * len(boxes) if ids is None else [str(i) for i in ids]
        if len(ids) != len(boxes):
            raise ValueError(f"{len(ids)} ids for {len(boxes)} boxes")
        kept = boxes[: self.max_detections] if self.max_detections > 0 else boxes  # 0 = no limit
        with self._model_lock:
            min_score = self.min_score
            frame_result = self.pipeline.process(image_rgb, kept, min_score)
        queries, result, check = frame_result.queries, frame_result.match, frame_result.check
        valid = np.zeros(len(boxes), bool)
        valid[: len(kept)] = check.valid
        reasons = dict(check.reasons)
        for index in range(len(kept), len(boxes)):
            reasons[index] = f"{REASON_OVER_LIMIT} ({self.max_detections})"
        detections = build_results(result, valid, reasons, queries, ids, boxes)
        with self._frame_lock:
            self._sequence += 1
            output = FrameOutput(
                frame, self._sequence, queries, min_score, detections, latency_s=time.perf_counter() - start
            )
            self._latest = _LatestFrame(
                frame, self._sequence, frame_result.embeddings, valid, reasons, ids, boxes
            )
            self._latest_output = output
        return output

    def score_latest(
        self, queries: list[str] | None = None, min_score: float | None = None
    ) -> FrameOutput | None:
        """The latest frame scored against ``queries`` (None = current set); None before the first frame."""
        with self._frame_lock:
            latest = self._latest
        if latest is None or self.pipeline is None:
            return None
        threshold = self.min_score if min_score is None else float(min_score)
        start = time.perf_counter()
        names, text = self.text_embeddings(queries)
        with self._model_lock:
            result = match(latest.embeddings, text, self.pipeline.logit_scale, threshold)
        detections = build_results(result, latest.valid, latest.reasons, names, latest.ids, latest.boxes)
        return FrameOutput(
            latest.frame, latest.sequence, names, threshold, detections, latency_s=time.perf_counter() - start
        )

    # ------------------------------------------------------------------ lifetime
    @property
    def provider(self) -> str:
        return str(getattr(self.pipeline.encoder, "provider", "unknown"))

    def close(self) -> None:
        """Drop the model and the cached embeddings; free cached GPU memory."""
        with self._model_lock:
            device = getattr(self.pipeline.encoder, "device", torch.device("cpu"))
            self.pipeline = None
            self._adhoc_bank = None
        with self._frame_lock:
            self._latest = None
        gc.collect()
        if torch.device(device).type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
