# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""One input detection scored against the queries: the record every consumer shares.

The engine makes it; the node's messages (fgclip_msgs/FineGrainedDetection), the bag evaluator's
reports, the demo's tables and the overlay read it, and a published message reads back into it
(``bags.messages.detection_from_message``). Plain NumPy: the bag tools use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fgclip_ros.core.rejection import Rejection, rejection_code

NO_BOX = (float("nan"),) * 4

MATCHED = "matched"
NO_MATCH = "no match"
REJECTED = "rejected"


@dataclass
class DetectionResult:
    """One input box and its scores: the fields of fgclip_msgs/FineGrainedDetection."""

    valid: bool
    rejected_reason: str = ""
    best_index: int = -1  # -1: no query reached min_score (or the box was rejected)
    best_query: str = ""
    score: float = 0.0
    probability: float = 0.0
    margin: float = 0.0
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (M,), empty if not valid
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (M,); not in the message
    id: str = ""  # the input Detection2D's id
    box_xyxy: tuple[float, float, float, float] = NO_BOX  # the input box, pixels

    @property
    def rejected_code(self) -> Rejection:
        return rejection_code(self.valid, self.rejected_reason)

    @property
    def status(self) -> str:
        """``matched``, ``no match`` (no query reached min_score) or ``rejected`` (the box was not scored)."""
        if not self.valid:
            return REJECTED
        return MATCHED if self.best_index >= 0 else NO_MATCH

    def summary(self) -> dict:
        """The published scalar fields as JSON types (reports, ``fgclip-query --json``): no box, no scores."""
        return {
            "valid": bool(self.valid),
            "rejected_code": int(self.rejected_code),
            "rejected_reason": self.rejected_reason,
            "best_index": int(self.best_index),
            "best_query": self.best_query,
            "score": float(self.score),
            "probability": float(self.probability),
            "margin": float(self.margin),
        }

    def ranked(self, min_score: float, top_k: int = 0) -> list[tuple[int, float]]:
        """(query index, probability) of the queries reaching ``min_score``, most probable first."""
        if not self.valid or self.scores.size == 0:
            return []
        candidates = np.flatnonzero(self.scores >= min_score)
        order = candidates[np.argsort(-self.probs[candidates], kind="stable")]
        if top_k > 0:
            order = order[:top_k]
        return [(int(i), float(self.probs[i])) for i in order]
