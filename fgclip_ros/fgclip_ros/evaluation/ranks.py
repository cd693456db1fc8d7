# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The FG-OVD ranking metric: one rank rule, the per-split negative count L, chance and gap.

The rank of the positive caption is the number of captions (the positive included) whose score
is >= the positive's score, so ties count against the model: 1 is perfect, 1 + L the worst. Per
split the benchmark fixes L: each annotation is ranked against its FIRST L negatives, and an
annotation with fewer than L is skipped. The real FG-OVD files use L = 10, Pattern 7,
Transparency 2; sets written by ``fgclip_ros.synth.benchmark`` record their own L per split
(``info.negatives``). A split's summary is the mean and median rank; the mean-rank sum (MRS)
adds the mean ranks of the splits (perfect: one per split, 8; FG-OVD's chance: 42.5).

``embedding_ranks`` is the one place ranks are computed from embeddings (the evaluator and the
training validation both call it); ``ranks_from_scores`` is the comparison itself.
"""

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

# The eight FG-OVD benchmarks, their L (negatives per annotation) and their published file names.
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
PERFECT_MEAN_RANK = 1.0
# Annotations scored per chunk in embedding_ranks (bounds the float64 working set).
_CHUNK = 4096


def split_negatives(split: str, info: Mapping | None = None) -> int:
    """L of a split file: its own ``info.negatives`` when it records one, else FG-OVD's."""
    recorded = info.get("negatives") if isinstance(info, Mapping) else None
    if recorded is not None:
        if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 1:
            raise ValueError(f"{split}: info.negatives must be a positive integer, got {recorded!r}")
        return recorded
    if split not in FGOVD_NEGATIVES:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return FGOVD_NEGATIVES[split]


def first_negatives(negatives: Sequence, count: int) -> list | None:
    """The first ``count`` negatives of an annotation, or None when it has fewer (it is skipped)."""
    return list(negatives[:count]) if len(negatives) >= count else None


def ranks_from_scores(positive: torch.Tensor, negatives: torch.Tensor,
                      tied: torch.Tensor | None = None) -> torch.Tensor:
    """(A,) ranks: 1 + the negatives scoring >= the positive, or marked ``tied`` (exactly equal)."""
    beats = negatives >= positive[..., None]
    if tied is not None:
        beats = beats | tied
    return 1 + beats.sum(-1)


def positive_rank(positive_score: float, negative_scores: Sequence[float] | np.ndarray) -> int:
    """The rank of one positive among already computed scores (ties are losses)."""
    negatives = torch.as_tensor(np.asarray(negative_scores, dtype=np.float64)).reshape(1, -1)
    return int(ranks_from_scores(torch.tensor([float(positive_score)], dtype=torch.float64), negatives)[0])


def embedding_ranks(image: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ranks of L2-normalised (A, D) images against their (A, D) positives and (A, L, D) negatives.

    Returns (ranks (A,), positive scores (A,), negative scores (A, L)), float64 scores on the
    inputs' device. Exact and independent of where a caption sits: each score is one float64 sum
    of exact float32 products, computed per (image, caption) pair (no matrix product, whose
    rounding depends on a row's position), and a negative whose embedding equals the positive's
    bit for bit ties it by definition, whatever rounding would say.
    """
    if image.ndim != 2 or positive.shape != image.shape or negatives.ndim != 3 \
            or negatives.shape[0] != image.shape[0] or negatives.shape[2] != image.shape[1]:
        raise ValueError(f"expected (A, D), (A, D), (A, L, D); got {tuple(image.shape)}, "
                         f"{tuple(positive.shape)}, {tuple(negatives.shape)}")
    out_ranks, out_pos, out_neg = [], [], []
    for start in range(0, len(image), _CHUNK):
        v = image[start:start + _CHUNK].to(torch.float64)
        p = positive[start:start + _CHUNK]
        n = negatives[start:start + _CHUNK]
        pos = (v * p.to(torch.float64)).sum(-1)
        neg = (v[:, None, :] * n.to(torch.float64)).sum(-1)
        tied = (n == p[:, None, :]).all(-1)
        out_ranks.append(ranks_from_scores(pos, neg, tied))
        out_pos.append(pos)
        out_neg.append(neg)
    if not out_ranks:
        empty = image.new_zeros((0,), dtype=torch.float64)
        return empty.long(), empty, image.new_zeros((0, negatives.shape[1]), dtype=torch.float64)
    return torch.cat(out_ranks), torch.cat(out_pos), torch.cat(out_neg)


def mean_rank(ranks: Iterable[int]) -> float:
    values = np.asarray(list(ranks), dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def median_rank(ranks: Iterable[int]) -> float:
    values = np.asarray(list(ranks), dtype=np.float64)
    return float(np.median(values)) if values.size else float("nan")


def chance_mean_rank(n_negatives: int) -> float:
    """Expected rank of the positive among 1 + n_negatives captions scored at random (no ties)."""
    return 1.0 + n_negatives / 2.0


def chance_mean_rank_sum(negatives: Mapping[str, int]) -> float:
    """MRS at chance for splits with these L: 42.5 for FG-OVD's eight."""
    return float(sum(chance_mean_rank(count) for count in negatives.values()))


def mean_rank_sum(mean_ranks: Mapping[str, float]) -> float:
    """The MRS: the sum of the per-split mean ranks."""
    return float(sum(mean_ranks.values()))


def gap_closed(baseline_mean_rank: float, mean_rank: float, perfect: float = PERFECT_MEAN_RANK) -> float:
    """Share of the baseline's distance to perfect that a model removes (1 = perfect, 0 = no better).

    NaN when the baseline is already perfect (there is no gap to close).
    """
    gap = baseline_mean_rank - perfect
    return float((baseline_mean_rank - mean_rank) / gap) if gap > 0 else float("nan")
