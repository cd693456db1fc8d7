# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Query bank caching and the crop x query matcher, with hand-made embeddings."""

import math

import numpy as np
import pytest
import torch

from fgclip_ros.core.matcher import MatchResult, QueryBank, match, match_scores


class RecordingEncoder:
    """encode_fn that maps each text to a fixed random vector and records what it was asked."""

    def __init__(self, dim=8):
        self.dim = dim
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> torch.Tensor:
        gen = torch.Generator().manual_seed(sum(map(ord, text)) * 7919 + len(text))
        return torch.randn(self.dim, generator=gen) * 3.0  # deliberately not unit length

    def __call__(self, texts):
        self.calls.append(list(texts))
        return torch.stack([self.vector(t) for t in texts])


def test_template_is_applied_and_embeddings_are_normalised():
    enc = RecordingEncoder()
    bank = QueryBank(enc, template="a photo of a {}")
    assert bank.set_queries(["red mug", "blue {curly} mug"])
    emb = bank.embeddings
    assert enc.calls == [["a photo of a red mug", "a photo of a blue {curly} mug"]]
    expected = torch.stack([enc.vector("a photo of a red mug"), enc.vector("a photo of a blue {curly} mug")])
    torch.testing.assert_close(emb, expected / expected.norm(dim=1, keepdim=True))


def test_embeddings_are_cached_until_queries_or_template_change():
    enc = RecordingEncoder()
    bank = QueryBank(enc)
    bank.set_queries(["a", "b"])
    first = bank.embeddings
    assert bank.embeddings is first
    assert not bank.set_queries(["a", "b"])
    assert bank.embeddings is first and len(enc.calls) == 1

    # Adding a query encodes only the new prompt; order follows the new list.
    assert bank.set_queries(["b", "c", "a"])
    emb = bank.embeddings
    assert enc.calls[-1] == ["c"]
    torch.testing.assert_close(emb[0], first[1])
    torch.testing.assert_close(emb[2], first[0])

    assert bank.set_template("the {}")
    bank.embeddings
    assert enc.calls[-1] == ["the b", "the c", "the a"]
    assert not bank.set_template("the {}")


def test_empty_query_set_is_valid():
    enc = RecordingEncoder(dim=8)
    bank = QueryBank(enc, embed_dim=8)
    assert bank.embeddings.shape == (0, 8)
    assert enc.calls == []


def test_bad_template_is_rejected():
    with pytest.raises(ValueError, match="exactly once"):
        QueryBank(RecordingEncoder(), template="no slot")


def _unit(*rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True)


def test_scores_best_margin_and_probabilities():
    text = _unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    image = _unit([0.9, 0.1, 0.0], [0.0, 0.2, 1.0])
    result = match(image, text, logit_scale=100.0)

    expected_scores = image.numpy() @ text.numpy().T
    np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-6, atol=1e-6)
    assert result.best_index.tolist() == [0, 2]
    np.testing.assert_allclose(result.best_score, expected_scores.max(axis=1), rtol=1e-6)
    sorted_scores = np.sort(expected_scores, axis=1)
    np.testing.assert_allclose(result.margin, sorted_scores[:, -1] - sorted_scores[:, -2], rtol=1e-5)
    logits = 100.0 * expected_scores
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result.probs, softmax, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, rtol=1e-6)
    assert result.scores.dtype == np.float32 and result.best_index.dtype == np.int64


def test_unnormalised_inputs_are_scored_by_cosine():
    result = match(torch.tensor([[3.0, 4.0]]), torch.tensor([[10.0, 0.0], [0.0, 0.5]]), logit_scale=1.0)
    np.testing.assert_allclose(result.scores, [[0.6, 0.8]], rtol=1e-6)


def test_threshold_rule_marks_no_match_but_keeps_scores():
    text = _unit([1, 0], [0, 1])
    image = _unit([1, 0.05], [-1, -0.2])  # the second crop is dissimilar to both queries
    result = match(image, text, logit_scale=10.0, min_score=0.5)
    assert result.best_index.tolist() == [0, -1]
    assert result.best_score[1] < 0.5
    assert match(image, text, logit_scale=10.0, min_score=-1.0).best_index.tolist() == [0, 1]


def test_single_query_has_zero_margin_and_probability_one():
    result = match(_unit([1, 1]), _unit([1, 0]), logit_scale=100.0)
    assert result.margin.tolist() == [0.0]
    assert result.probs.tolist() == [[1.0]]
    assert math.isclose(result.best_score[0], math.sqrt(0.5), rel_tol=1e-6)


def test_ties_pick_the_first_query():
    result = match(_unit([1, 1]), _unit([1, 0], [0, 1]), logit_scale=1.0)
    assert result.best_index.tolist() == [0]
    assert result.margin.tolist() == [0.0]


@pytest.mark.parametrize("n, m", [(0, 3), (2, 0), (0, 0)])
def test_empty_crops_or_queries(n, m):
    result = match(torch.zeros((n, 4)), torch.zeros((m, 4)), logit_scale=100.0)
    assert result.scores.shape == (n, m) and result.probs.shape == (n, m)
    assert result.best_index.shape == (n,) and (result.best_index == -1).all()
    assert result.best_prob.shape == (n,)
    assert isinstance(result, MatchResult)


def test_dimension_mismatch_is_an_error():
    with pytest.raises(ValueError, match="dim"):
        match(torch.ones((1, 4)), torch.ones((1, 5)), logit_scale=1.0)


def test_numpy_inputs_work():
    result = match(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), logit_scale=1.0)
    assert result.best_index.tolist() == [0, 1]


def test_match_scores_applies_the_rules_to_given_scores():
    # Scores as the GPU path hands them over (NumPy, already cosine); row 0 ties queries 1 and 3.
    scores = np.array([[0.1, 0.7, 0.2, 0.7], [0.30, 0.25, 0.05, 0.0], [-0.2, -0.1, -0.3, -0.4]], np.float32)
    result = match_scores(scores, logit_scale=20.0, min_score=0.0)
    np.testing.assert_array_equal(result.scores, scores)
    assert result.best_index.tolist() == [1, 0, -1]  # first of tied queries; below min_score -> -1
    np.testing.assert_allclose(result.best_score, [0.7, 0.3, -0.1], rtol=1e-6)
    np.testing.assert_allclose(result.margin, [0.0, 0.05, 0.1], atol=1e-6)
    logits = 20.0 * scores.astype(np.float64)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(result.probs, softmax / softmax.sum(axis=1, keepdims=True), rtol=1e-5)
    single = match_scores(scores[:, :1], logit_scale=20.0)
    assert np.all(single.margin == 0) and np.allclose(single.probs, 1.0)
    assert match_scores(np.zeros((3, 0), np.float32), 20.0).best_index.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="scores must be"):
        match_scores(np.zeros(3, np.float32), 20.0)

