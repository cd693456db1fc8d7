# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The FG-OVD ranking metrics as small pure functions.

The rank of the positive caption is the number of captions (the positive included) whose score
is >= the positive's score, so ties count against the model: 1 is perfect, 1 + n_negatives the
worst. A split's summary is the mean and median rank; the mean-rank sum (MRS) adds the mean ranks
of the eight FG-OVD splits (perfect 8).
"""

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# The eight FG-OVD benchmarks, their negatives per annotation and their published file names.
SPLITS: tuple[str, ...] = (
    "trivial", "easy", "medium", "hard", "color", "material", "pattern", "transparency",
)
FGOVD_NEGATIVES: dict[str, int] = {
    "trivial": 10, "easy": 10, "medium": 10, "hard": 10, "color": 10, "material": 10, "pattern": 7,
    "transparency": 2,
}
FGOVD_FILE_NAMES: dict[str, str] = {
    "trivial": "shuffle_negatives.json", "easy": "3_attributes.json", "medium": "2_attributes.json",
    "hard": "1_attributes.json", "color": "color.json", "material": "material.json",
    "pattern": "pattern.json", "transparency": "transparency.json",
}


def positive_rank(positive_score: float, negative_scores: Sequence[float] | np.ndarray) -> int:
    """1 + the number of negatives scoring >= the positive (ties are losses)."""
    negatives = np.asarray(negative_scores, dtype=np.float64)
    return 1 + int(np.count_nonzero(negatives >= positive_score))


def mean_rank(ranks: Iterable[int]) -> float:
    values = np.asarray(list(ranks), dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def median_rank(ranks: Iterable[int]) -> float:
    values = np.asarray(list(ranks), dtype=np.float64)
    return float(np.median(values)) if values.size else float("nan")


def chance_mean_rank(n_negatives: int) -> float:
    """Expected rank of the positive among 1 + n_negatives captions scored at random (no ties)."""
    return 1.0 + n_negatives / 2.0


def mean_rank_sum(mean_ranks: Mapping[str, float]) -> float:
    """The MRS: the sum of the per-split mean ranks."""
    return float(sum(mean_ranks.values()))
