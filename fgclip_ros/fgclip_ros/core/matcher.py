# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Free-text query bank (cached text embeddings) and the crop x query matcher."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fgclip_ros.core.prompts import SLOT, check_template, prompts


class QueryBank:
    """Queries + prompt template -> (M, D) L2-normalised text embeddings, computed once per change.

    ``encode_fn`` maps prompt texts to (M, D) embeddings (the pipeline passes encoder + text head).
    When the query set or template changes, only prompts not embedded before are encoded again.
    ``embed_dim`` gives an empty bank its (0, D) shape without calling ``encode_fn``.
    """

    def __init__(self, encode_fn: Callable[[list[str]], torch.Tensor], template: str = SLOT,
                 embed_dim: int | None = None):
        self._encode_fn = encode_fn
        self._embed_dim = embed_dim
        self._template = check_template(template)
        self._queries: list[str] = []
        self._embeddings: torch.Tensor | None = None
        self._by_prompt: dict[str, torch.Tensor] = {}

    @property
    def queries(self) -> list[str]:
        return list(self._queries)

    @property
    def template(self) -> str:
        return self._template

    @template.setter
    def template(self, template: str) -> None:
        self.set_template(template)

    @property
    def prompts(self) -> list[str]:
        return prompts(self._template, self._queries)

    def set_template(self, template: str) -> bool:
        """Change the template; returns whether it changed (then embeddings are recomputed on use)."""
        template = check_template(template)
        if template == self._template:
            return False
        self._template = template
        self._embeddings = None
        return True

    def set_queries(self, queries: list[str]) -> bool:
        """Replace the query set (order kept: it defines the score columns); returns whether it changed."""
        queries = [str(q) for q in queries]
        if queries == self._queries:
            return False
        self._queries = queries
        self._embeddings = None
        return True

    @property
    def embeddings(self) -> torch.Tensor:
        """(M, D) float32, L2-normalised; computed on first use after a change."""
        if self._embeddings is None:
            self._embeddings = self._compute()
        return self._embeddings

    def _compute(self) -> torch.Tensor:
        prompts = self.prompts
        if not prompts:
            return torch.zeros((0, self._embed_dim or 0), dtype=torch.float32)
        missing = list(dict.fromkeys(p for p in prompts if p not in self._by_prompt))
        if missing:
            encoded = F.normalize(self._encode_fn(missing).to(torch.float32), dim=-1)
            if encoded.shape[0] != len(missing):
                raise RuntimeError(f"encode_fn returned {encoded.shape[0]} rows for {len(missing)} prompts")
            self._by_prompt.update(zip(missing, encoded, strict=True))
        # Keep only the current prompts so the cache stays as large as the query set.
        self._by_prompt = {p: self._by_prompt[p] for p in prompts}
        return torch.stack([self._by_prompt[p] for p in prompts])


@dataclass
class MatchResult:
    """Scores of N crops against M queries; arrays are NumPy on the CPU.

    best_index is -1 when no query reaches ``min_score`` (or M == 0); best_score and margin are
    still the raw values then, so a caller can see how close the crop came.
    """

    scores: np.ndarray       # (N, M) float32 cosine similarity in the re-projected space
    best_index: np.ndarray   # (N,) int64
    best_score: np.ndarray   # (N,) float32 (0 when M == 0)
    margin: np.ndarray       # (N,) float32 best minus runner-up (0 when M <= 1)
    probs: np.ndarray        # (N, M) float32 softmax(logit_scale * scores) over the queries

    @classmethod
    def empty(cls, n: int = 0, m: int = 0) -> "MatchResult":
        return cls(
            scores=np.zeros((n, m), np.float32), best_index=np.full(n, -1, np.int64),
            best_score=np.zeros(n, np.float32), margin=np.zeros(n, np.float32),
            probs=np.zeros((n, m), np.float32),
        )

    @property
    def best_prob(self) -> np.ndarray:
        """(N,) probability of the highest-scoring query (reported even when best_index is -1)."""
        if self.probs.shape[1] == 0:
            return np.zeros(self.probs.shape[0], np.float32)
        return self.probs.max(axis=1)


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def match_on_device(scores: torch.Tensor, logit_scale: float, min_score: float = 0.0) -> torch.Tensor:
    """The matching rules on the scores' own device, packed for ONE copy to the host.

    (N, M) cosine scores -> (N, 2M + 3) float32: [scores | probs | best_score | margin | best_index].
    argmax takes the first of tied queries; margin is best minus runner-up (0 with one query);
    probs is softmax(logit_scale * scores) over the queries; best_index is -1 below `min_score`
    (query indices are exact in float32 up to 2**24). Needs N >= 1 and M >= 1.
    """
    scores = scores.to(torch.float32)
    probs = torch.softmax(float(logit_scale) * scores, dim=1)
    # argmax picks the first of tied queries (topk's order among ties is unspecified).
    argmax = scores.argmax(dim=1)
    top = torch.topk(scores, k=min(2, scores.shape[1]), dim=1).values
    best_score = top[:, 0]
    margin = top[:, 0] - top[:, 1] if scores.shape[1] > 1 else torch.zeros_like(best_score)
    best_index = torch.where(best_score >= min_score, argmax, torch.full_like(argmax, -1))
    columns = (best_score.unsqueeze(1), margin.unsqueeze(1), best_index.to(torch.float32).unsqueeze(1))
    return torch.cat((scores, probs, *columns), dim=1)


def unpack_match(packed: np.ndarray, queries: int) -> MatchResult:
    """MatchResult from ``match_on_device``'s (N, 2M + 3) output, copied to the host."""
    m = queries
    if packed.ndim != 2 or packed.shape[1] != 2 * m + 3:
        raise ValueError(f"packed match must be (N, {2 * m + 3}) for {m} queries, got {packed.shape}")
    # Own contiguous arrays: callers keep and serialise them independently of the packed buffer.
    return MatchResult(
        scores=np.ascontiguousarray(packed[:, :m]),
        best_index=packed[:, 2 * m + 2].astype(np.int64),
        best_score=np.ascontiguousarray(packed[:, 2 * m]),
        margin=np.ascontiguousarray(packed[:, 2 * m + 1]),
        probs=np.ascontiguousarray(packed[:, m : 2 * m]),
    )


def match_scores(scores, logit_scale: float, min_score: float = 0.0) -> MatchResult:
    """MatchResult from (N, M) cosine scores (NumPy or a tensor on any device): the matching rules.

    The reductions run where the scores are (see ``match_on_device``); one copy brings them back.
    """
    scores = _as_tensor(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, M), got shape {tuple(scores.shape)}")
    n, m = scores.shape
    if n == 0 or m == 0:
        return MatchResult.empty(n, m)
    packed = match_on_device(scores, logit_scale, min_score)
    return unpack_match(packed.cpu().numpy(), m)


def match(image_emb, text_emb, logit_scale: float, min_score: float = 0.0) -> MatchResult:
    """Score N image embeddings against M text embeddings (both (., D); normalised here again)."""
    image = _as_tensor(image_emb).to(torch.float32)
    text = _as_tensor(text_emb).to(torch.float32)
    n, m = image.shape[0], text.shape[0]
    if n == 0 or m == 0:
        return MatchResult.empty(n, m)
    if image.shape[1] != text.shape[1]:
        raise ValueError(f"image embeddings have dim {image.shape[1]}, text embeddings {text.shape[1]}")
    text = text.to(image.device)
    scores = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    return match_scores(scores, logit_scale, min_score)
