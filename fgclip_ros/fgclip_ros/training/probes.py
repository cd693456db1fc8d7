# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""What a frozen model knows: linear probes on image embeddings and a cosine hard-negative check.

The paper's premise is that CLIP's image embedding holds the fine-grained attributes while cosine
similarity against captions does not use them well. For the embedded model both halves are
measured on held-out rendered crops:

- ``probe_families``: multinomial logistic regression (L-BFGS, torch) on frozen, standardised image
  embeddings, one per label family (category, colour, material, pattern, transparency); accuracy
  on a disjoint held-out set. Target: >= 0.9 for every attribute family.
- ``hard_negative_check``: per attribute family, the rank of the full positive caption among the
  captions that differ only in that family (cosine; rank = captions scoring >= the positive), and
  the category accuracy with "a {category}" prompts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fgclip_ros.core.prompts import prompts as prompt_texts
from fgclip_ros.core.reprojection import project
from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES, CATEGORIES, FAMILY_VALUES, ObjectSpec
from fgclip_ros.training.data import LABEL_COLUMNS, normalise

PROBE_COLUMNS: tuple[str, ...] = ("category", *ATTRIBUTE_FAMILIES)


@torch.no_grad()
def embed_crops(
    encode_images: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    mean,
    std,
    device: torch.device | str,
    batch_size: int = 512,
) -> torch.Tensor:
    """Raw image embeddings (N, D) float32 of uint8 (N, S, S, 3) crops already at the model's size."""
    device = torch.device(device)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
        pixels = normalise(chunk.permute(0, 3, 1, 2).float().div_(255.0), mean, std)
        out.append(encode_images(pixels).float())
    return torch.cat(out)


def linear_probe_accuracy(
    fit_x: torch.Tensor,
    fit_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Test accuracy of an L2-regularised multinomial logistic regression fitted on (fit_x, fit_y)."""
    fit_x, test_x = fit_x.float(), test_x.float()
    mean, std = fit_x.mean(0), fit_x.std(0).clamp(min=1e-6)
    fit_x, test_x = (fit_x - mean) / std, (test_x - mean) / std
    fit_y, test_y = fit_y.to(fit_x.device).long(), test_y.to(test_x.device).long()
    linear = torch.nn.Linear(fit_x.shape[1], n_classes).to(fit_x.device)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(fit_x), fit_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return float((linear(test_x).argmax(1) == test_y).float().mean())


def probe_families(
    fit_x: torch.Tensor,
    fit_labels: np.ndarray,
    test_x: torch.Tensor,
    test_labels: np.ndarray,
    max_iter: int = 200,
) -> dict[str, float]:
    """Linear-probe accuracy per label family (category and the four attribute families)."""
    results = {}
    for name in PROBE_COLUMNS:
        column = LABEL_COLUMNS.index(name)
        n_classes = len(CATEGORIES) if name == "category" else len(FAMILY_VALUES[name])
        results[name] = linear_probe_accuracy(
            fit_x,
            torch.from_numpy(fit_labels[:, column]),
            test_x,
            torch.from_numpy(test_labels[:, column]),
            n_classes,
            max_iter=max_iter,
        )
    return results


def all_full_captions() -> tuple[list[str], dict[tuple[int, ...], int]]:
    """Every full caption of the world and the index of each label tuple (first five columns)."""
    value_lists = [CATEGORIES] + [FAMILY_VALUES[f] for f in ATTRIBUTE_FAMILIES]
    captions, index = [], {}
    for combo in itertools.product(*(range(len(v)) for v in value_lists)):
        spec = ObjectSpec(*(values[i] for values, i in zip(value_lists, combo)))
        index[combo] = len(captions)
        captions.append(spec.caption())
    return captions, index


@torch.no_grad()
def encode_texts_batched(
    encode_texts: Callable[[list[str]], torch.Tensor], texts: list[str], batch_size: int = 1024
):
    return torch.cat(
        [encode_texts(texts[i : i + batch_size]).float() for i in range(0, len(texts), batch_size)]
    )


@torch.no_grad()
def hard_negative_check(
    image_emb: torch.Tensor,
    labels: np.ndarray,
    encode_texts: Callable[[list[str]], torch.Tensor],
    project_images: Callable[[torch.Tensor], torch.Tensor] | None = None,
    project_texts: Callable[[torch.Tensor], torch.Tensor] | None = None,
    category_prompt: str = "a {}",
) -> dict[str, float]:
    """Cosine ranking of full captions against single-family hard negatives, plus category accuracy.

    Returns ``rank_<family>`` (mean rank, 1 = perfect, chance = (n_values + 1) / 2),
    ``top1_<family>``, ``rank_sum`` over the four families, and ``category_accuracy``.
    ``project_*`` (default: L2 normalisation) lets the same check score re-projected embeddings.
    """
    project_images = project_images or (lambda x: project(x, None, "visual"))
    project_texts = project_texts or (lambda x: project(x, None, "text"))
    captions, index = all_full_captions()
    text = project_texts(encode_texts_batched(encode_texts, captions)).to(image_emb.device)
    image = project_images(image_emb)
    base = labels[:, : len(PROBE_COLUMNS)]
    results: dict[str, float] = {}
    rank_sum = 0.0
    for k, family in enumerate(ATTRIBUTE_FAMILIES, start=1):
        n_values = len(FAMILY_VALUES[family])
        rows = np.repeat(base[:, None, :], n_values, axis=1)
        rows[:, :, k] = np.arange(n_values)[None, :]
        caption_index = torch.tensor(
            [[index[tuple(r)] for r in per_image] for per_image in rows], device=image.device
        )
        scores = torch.einsum("nd,nvd->nv", image, text[caption_index])
        positive = scores.gather(1, torch.from_numpy(base[:, k]).to(image.device)[:, None])
        ranks = (scores >= positive).sum(1).float()
        results[f"rank_{family}"] = float(ranks.mean())
        results[f"top1_{family}"] = float((ranks == 1).float().mean())
        rank_sum += results[f"rank_{family}"]
    results["rank_sum"] = rank_sum
    prompts = project_texts(encode_texts(prompt_texts(category_prompt, CATEGORIES)).float()).to(
        image.device
    )
    predicted = (image @ prompts.T).argmax(1).cpu().numpy()
    results["category_accuracy"] = float((predicted == base[:, 0]).mean())
    return results


def chance_ranks() -> dict[str, float]:
    """Mean rank of a random scorer per family, for reading ``hard_negative_check``."""
    return {f"rank_{f}": (len(FAMILY_VALUES[f]) + 1) / 2 for f in ATTRIBUTE_FAMILIES}
