# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The paper's head-training recipe (``--recipe paper``), point by point from ../shared/FGCLIP-FACTS.md.

Score under the margin = sigmoid(dot product of normalised embeddings); cost clamp(margin + s_neg -
s_pos, 0) summed over all (image, negative) pairs; Hard split only, annotations with >= 10
negatives; the kept checkpoint has the lowest validation loss among epochs >= 1; no early stopping;
seed 123; the training text batch (B, 11, D) is normalised along the caption axis (dim 1).
"""

import dataclasses
import math

import pytest
import torch

from fgclip_ros.cli.train_reprojection import parse_args
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads
from fgclip_ros.training import reprojection as rp

PAPER = rp.HeadTrainConfig(**rp.PAPER_RECIPE)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_sigmoid_score_summed_loss_by_hand():
    image = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [0.99, 0.141]]])
    mask = torch.ones(1, 2)
    expected = sum(max(0.0, 0.05 + _sigmoid(n) - _sigmoid(1.0)) for n in (0.0, 0.99))
    got = rp.triplet_loss(image, positive, negatives, mask, 0.05, score="sigmoid", reduction="sum")
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert expected > 0.04  # the second negative is inside the margin under the sigmoid


def _mixed_cache(seed=0, dim=8):
    """Hard and Color annotations, some Hard ones with only 6 negatives."""
    generator = torch.Generator().manual_seed(seed)
    n = 80
    latent = torch.randn(n, dim, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    width = 10
    negatives = torch.stack([torch.tensor([(i + 1 + k) % n for k in range(width)]) for i in range(n)])
    short = torch.arange(n) % 5 == 0
    negatives[short, 6:] = -1
    split = (torch.arange(n) % 2 == 1).long()  # 0 = hard, 1 = color
    return rp.EmbeddingCache(
        image=latent, valid=torch.ones(n, dtype=torch.bool), text=latent @ rotation.T,
        captions=[f"caption {i}" for i in range(n)], crop=torch.arange(n), positive=torch.arange(n),
        negatives=negatives, split=split, splits=["hard", "color"], split_negatives=[6, 6],
        image_id=torch.arange(n))


def test_paper_recipe_trains_on_hard_annotations_with_ten_negatives_only():
    cache = _mixed_cache()
    chosen = rp.select_annotations(cache, PAPER)
    expected = [i for i in range(80) if i % 2 == 0 and i % 5 != 0]
    assert chosen.crop.tolist() == expected
    assert chosen.negatives.shape == (len(expected), 10) and bool((chosen.negatives >= 0).all())
    # Features stored in fp16, as the paper's were.
    assert torch.equal(chosen.image, cache.image.half().float())


def test_caption_axis_quirk_normalises_each_feature_over_the_captions():
    raw = torch.randn(4, 11, 8)
    heads = ReprojectionHeads.identity(8)
    quirky = rp.project_caption_batch(heads, raw, caption_axis_norm=True)
    torch.testing.assert_close(quirky, raw / raw.norm(dim=1, keepdim=True))
    plain = rp.project_caption_batch(heads, raw, caption_axis_norm=False)
    torch.testing.assert_close(plain, raw / raw.norm(dim=2, keepdim=True))


def test_paper_batch_loss_equals_an_independent_computation():
    torch.manual_seed(1)
    heads = ReprojectionHeads(Head("linear", 8), Head("linear", 8))
    raw_image, raw_text = torch.randn(5, 8), torch.randn(30, 8)
    positive = torch.arange(5)
    negatives = torch.stack([torch.arange(5 + 10 * (i % 2), 15 + 10 * (i % 2)) for i in range(5)])
    # Five annotations, one batch: the recipe's loss (what training minimises and selects by).
    batch = rp.EmbeddingCache(
        image=raw_image, valid=torch.ones(5, dtype=torch.bool), text=raw_text,
        captions=[f"caption {i}" for i in range(30)], crop=torch.arange(5), positive=positive,
        negatives=negatives, split=torch.zeros(5, dtype=torch.long), splits=["hard"], split_negatives=[10],
        image_id=torch.arange(5))
    got = rp.validation_loss(heads, batch, PAPER)
    with torch.no_grad():
        wv, bv = heads.visual.layers[0].weight, heads.visual.layers[0].bias
        wt, bt = heads.text.layers[0].weight, heads.text.layers[0].bias
    wv, bv, wt, bt = (t.detach() for t in (wv, bv, wt, bt))
    total = 0.0
    for i in range(5):
        image = raw_image[i] @ wv.T + bv
        image = image / image.norm()
        captions = raw_text[torch.cat([positive[i : i + 1], negatives[i]])] @ wt.T + bt  # (11, D)
        columns = [captions[:, d] / captions[:, d].norm() for d in range(8)]  # normalised over captions
        captions = torch.stack(columns, dim=1)
        s = [_sigmoid(float(captions[k] @ image)) for k in range(11)]
        total += sum(max(0.0, 0.05 + s[k] - s[0]) for k in range(1, 11))
    assert float(got) == pytest.approx(total, rel=1e-5)


def test_paper_recipe_keeps_the_lowest_validation_loss_from_epoch_one_without_early_stopping():
    train, val = _mixed_cache(seed=0), _mixed_cache(seed=0)
    cfg = dataclasses.replace(PAPER, lr=5e-2, epochs=6, batch_size=8)
    result = rp.train_heads(train, val, cfg, progress=False)
    assert len(result.history) == 1 + cfg.epochs  # no early stopping
    losses = {h["epoch"]: h["val_loss"] for h in result.history if h["epoch"] >= 1}
    assert result.best_epoch == min(losses, key=losses.get) and result.best_epoch >= 1
    reloaded = rp.validation_loss(result.heads, rp.select_annotations(val, cfg), cfg)
    assert reloaded == pytest.approx(losses[result.best_epoch], rel=1e-5)


def test_init_starts_from_given_heads(tmp_path):
    torch.manual_seed(2)
    start = ReprojectionHeads(Head("linear", 8), Head("linear", 8)).eval()
    save_heads(start, tmp_path / "coco.pt")
    heads = rp.make_heads("linear", "both", 8, str(tmp_path / "coco.pt"))
    x = torch.randn(3, 8)
    torch.testing.assert_close(heads.project_images(x), start.project_images(x))
    cache = _mixed_cache()
    cfg = dataclasses.replace(PAPER, init=str(tmp_path / "coco.pt"), epochs=1)
    result = rp.train_heads(cache, cache, cfg, progress=False)
    assert result.history[0]["val"] == rp.evaluate_heads(start, rp.select_annotations(cache, cfg))


def test_cli_recipe_paper_sets_the_papers_defaults_and_explicit_flags_win():
    args = parse_args(["--recipe", "paper", "--model", "m", "--train", "t", "--out", "out", "--epochs", "3"])
    cfg = {f.name: getattr(args, f.name) for f in dataclasses.fields(rp.HeadTrainConfig)}
    assert cfg["seed"] == 123 and cfg["score"] == "sigmoid" and cfg["reduction"] == "sum"
    assert cfg["train_splits"] == "hard" and cfg["min_negatives"] == 10 and cfg["select"] == "val_loss"
    assert cfg["patience"] == 0 and cfg["caption_axis_norm"] is True and cfg["lr"] == 1e-5
    assert cfg["margin"] == 0.05 and cfg["batch_size"] == 256 and cfg["epochs"] == 3
    project = parse_args(["--model", "m", "--train", "t", "--out", "out"])
    assert project.seed == 0 and project.caption_axis_norm is False and project.select == "val_rank"
