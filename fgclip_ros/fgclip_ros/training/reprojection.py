# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Train the paper's re-projection heads on frozen embeddings of any FG-OVD-format set.

1. ``build_cache``: one pass through the frozen encoder: the raw image embedding of every
   annotation box (plain box, the model's preprocessing, as the evaluator crops it) and the raw
   text embedding of every caption (with the manifest's prompt template), saved to a cache file
   that later runs reuse while the inputs (files, model) are unchanged.
2. ``train_heads``: linear or MLP heads on both sides or one side; the triplet loss of the paper
   with the image as anchor against its positive and each hard-negative caption,
   ``relu(margin - s(v, t+) + s(v, t-))`` on cosine similarities of the projected, L2-normalised
   embeddings (defaults: margin 0.05, lr 1e-5, batch 256, 10 epochs, as the paper). Optional: a
   contrastive warm-up (image vs. positive caption, in-batch InfoNCE) and a category-preserving
   term (cross-entropy of the image against "a {category}" prompts) that keeps zero-shot category
   accuracy. Early stopping on the validation set's mean-rank sum; the best epoch is kept.
   ``PAPER_RECIPE`` is the paper's recipe point by point (sigmoid score, summed loss, Hard split,
   >= 10 negatives, selection by validation loss, seed 123, fp16 features and its caption-axis
   normalisation quirk, ``project_caption_batch``); ``init`` may name heads to start from.
3. ``save_trained``: the heads in the upstream key layout (``core.reprojection.save_heads``), a
   manifest YAML next to them that reuses the base model's encoder, and a JSON + PNG log.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fgclip_ros.core.crops import crop_batch_cpu
from fgclip_ros.core.prompts import prompts
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads
from fgclip_ros.evaluation import ranks
from fgclip_ros.evaluation.fgovd import (
    BenchmarkError,
    file_negatives,
    find_split_files,
    load_split,
    read_rgb,
    resolve_image,
)

LOG = logging.getLogger("fgclip_ros.train.reprojection")
CACHE_VERSION = 2


# ----------------------------------------------------------------------------------- the cache


@dataclass
class EmbeddingCache:
    """Raw frozen embeddings of one FG-OVD-format set, with its annotations as index tensors.

    ``image`` (N, D) per unique (image, box), ``valid`` (N,) False where the box was unusable;
    ``text`` (M, D) per unique caption (``captions``); per annotation: ``crop`` row, ``positive``
    row, ``negatives`` (A, K) rows padded with -1, ``split`` index into ``splits``.
    """

    image: torch.Tensor
    valid: torch.Tensor
    text: torch.Tensor
    captions: list[str]
    crop: torch.Tensor
    positive: torch.Tensor
    negatives: torch.Tensor
    split: torch.Tensor
    splits: list[str]
    split_negatives: list[int]  # L of each split, as its file states it
    image_id: torch.Tensor  # per annotation: index of its image (for image-level val splits)
    meta: dict = field(default_factory=dict)

    def to_state(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def load(cls, path: Path) -> EmbeddingCache:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**state)

    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Raw embeddings of cached texts (e.g. the category prompts given as ``extra_texts``)."""
        rows = {c: i for i, c in enumerate(self.captions)}
        missing = [t for t in texts if t not in rows]
        if missing:
            raise KeyError(f"not in the embedding cache: {missing[:3]}")
        return self.text[[rows[t] for t in texts]]

    def subset(self, keep: torch.Tensor) -> EmbeddingCache:
        """The same embeddings with only the annotations where ``keep`` is True."""
        out = copy.copy(self)
        for name in ("crop", "positive", "negatives", "split", "image_id"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    @property
    def annotations(self) -> int:
        return len(self.crop)


def _file_fingerprint(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, int(stat.st_mtime)]


def model_fingerprint(manifest) -> dict:
    """What identifies the frozen encoder: architecture, tags and the files it is built from."""
    from fgclip_ros.core.fetch import resolve_file

    files = {}
    for key in ("model_config", "weights"):
        spec = getattr(manifest, key)
        if spec is not None:
            files[key] = spec.sha256 or _file_fingerprint(resolve_file(spec, manifest.base_dir, key))
    return {
        "architecture": manifest.architecture,
        "pretrained": manifest.pretrained,
        "files": files,
        "template": manifest.prompt_template,
    }


def _collect(split_files: dict[str, Path], image_root: Path | None, max_annotations: int | None):
    """Annotations of all split files: unique crops, unique captions and per-annotation indices."""
    crop_rows: dict[tuple[str, tuple[float, ...]], int] = {}
    by_image: dict[Path, list[tuple[int, list[float]]]] = {}
    image_rows: dict[str, int] = {}
    captions: dict[str, int] = {}
    split_negatives: list[int] = []
    records = []

    def caption_row(text: str) -> int:
        return captions.setdefault(text, len(captions))

    for split_index, (split, path) in enumerate(split_files.items()):
        data = load_split(path)
        split_negatives.append(file_negatives(split, data, path))
        root = image_root if image_root is not None else Path(path).parent
        images = {img["id"]: img for img in data["images"]}
        names = {cat["id"]: cat["name"] for cat in data["categories"]}
        resolved: dict[int, Path] = {}
        annotations = data["annotations"][:max_annotations] if max_annotations else data["annotations"]
        for ann in annotations:
            try:
                image_id = ann["image_id"]
                if image_id not in resolved:
                    resolved[image_id] = resolve_image(root, images[image_id]["file_name"])
                positive = caption_row(names[ann["category_id"]])
                negatives = [caption_row(names[i]) for i in ann.get("neg_category_ids", [])]
                x, y, w, h = (float(v) for v in ann["bbox"])
            except KeyError as error:
                raise BenchmarkError(
                    f"{path}: annotation {ann.get('id')} refers to a missing id or key {error}"
                ) from None
            image_path = resolved[image_id]
            key = (str(image_path), (x, y, w, h))
            if key not in crop_rows:
                crop_rows[key] = len(crop_rows)
                by_image.setdefault(image_path, []).append((crop_rows[key], [x, y, x + w, y + h]))
            image_row = image_rows.setdefault(str(image_path), len(image_rows))
            records.append((crop_rows[key], positive, negatives, split_index, image_row))
    return crop_rows, by_image, list(captions), records, split_negatives


@torch.no_grad()
def build_cache(
    split_files: dict[str, Path],
    encoder,
    template: str = "{}",
    image_root: Path | None = None,
    batch_size: int = 256,
    max_annotations: int | None = None,
    progress: bool | None = None,
    meta: dict | None = None,
    extra_texts: Sequence[str] = (),
) -> EmbeddingCache:
    """Embed every box and caption of the split files once with the frozen ``encoder``.

    ``extra_texts`` (e.g. category prompts) are embedded too, appended to ``captions``.
    """
    from tqdm import tqdm

    crop_rows, by_image, captions, records, split_negatives = _collect(
        split_files, image_root, max_annotations
    )
    captions += [t for t in dict.fromkeys(extra_texts) if t not in set(captions)]
    if not records:
        raise BenchmarkError(f"no annotations in {', '.join(str(p) for p in split_files.values())}")
    dim = encoder.embed_dim
    image = torch.zeros((len(crop_rows), dim))
    valid = torch.zeros(len(crop_rows), dtype=torch.bool)
    pending_rows: list[int] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending_rows:
            image[pending_rows] = encoder.encode_images(np.concatenate(pending)).float().cpu()
            pending_rows.clear()
            pending.clear()

    bar = tqdm(
        total=len(crop_rows),
        desc="embed boxes",
        unit="box",
        disable=None if progress is None else not progress,
    )
    for image_path, entries in by_image.items():
        crops, check = crop_batch_cpu(
            read_rgb(image_path), np.array([b for _, b in entries]), encoder.preprocess
        )
        for index, crop in zip(check.indices, crops):
            row = entries[index][0]
            valid[row] = True
            pending_rows.append(row)
            pending.append(crop[None])
            if len(pending_rows) >= batch_size:
                flush()
        bar.update(len(entries))
    flush()
    bar.close()
    # clone(): encoders may return inference-mode tensors, which autograd must not see later.
    text = torch.cat(
        [
            encoder.encode_texts(prompts(template, captions[i : i + 1024]))
            .float()
            .cpu()
            .clone()
            for i in range(0, len(captions), 1024)
        ]
    )
    width = max(len(r[2]) for r in records) or 1
    negatives = torch.full((len(records), width), -1, dtype=torch.long)
    for row, record in enumerate(records):
        negatives[row, : len(record[2])] = torch.tensor(record[2], dtype=torch.long)
    return EmbeddingCache(
        image=image,
        valid=valid,
        text=text,
        captions=captions,
        crop=torch.tensor([r[0] for r in records]),
        positive=torch.tensor([r[1] for r in records]),
        negatives=negatives,
        split=torch.tensor([r[3] for r in records]),
        splits=list(split_files),
        split_negatives=split_negatives,
        image_id=torch.tensor([r[4] for r in records]),
        meta=dict(meta or {}, version=CACHE_VERSION),
    )


def cache_meta(split_files: dict[str, Path], manifest, image_root, max_annotations, extra_texts=()) -> dict:
    return {
        "files": {s: _file_fingerprint(Path(p)) for s, p in split_files.items()},
        "model": model_fingerprint(manifest),
        "image_root": str(image_root) if image_root else None,
        "max_annotations": max_annotations,
        "extra_texts": list(extra_texts),
        "version": CACHE_VERSION,
    }


def cached_embeddings(
    paths: Sequence[Path | str],
    manifest,
    encoder_factory,
    cache_folder: Path | None = None,
    tag: str = "",
    image_root: Path | None = None,
    max_annotations: int | None = None,
    progress: bool | None = None,
    batch_size: int = 256,
    extra_texts: Sequence[str] = (),
) -> EmbeddingCache:
    """Load the cached embeddings of (files, model, texts), or build and save them via ``encoder_factory``.

    The cache file is ``cache_folder`` (default ``cache_dir()/reprojection``) / ``<model>-<tag>-<digest>.pt``,
    the digest covering the inputs, so changed files or another model never reuse a stale cache.
    """
    from fgclip_ros.core.paths import cache_dir

    split_files = find_split_files(list(paths))
    meta = cache_meta(split_files, manifest, image_root, max_annotations, extra_texts)
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_folder) if cache_folder is not None else cache_dir() / "reprojection"
    cache_path = folder / f"{manifest.name}-{tag + '-' if tag else ''}{digest}.pt"
    if cache_path.is_file():
        try:
            cache = EmbeddingCache.load(cache_path)
            if cache.meta == meta:
                LOG.info(
                    "embeddings from cache %s (%d boxes, %d captions, %d annotations)",
                    cache_path,
                    len(cache.image),
                    len(cache.captions),
                    cache.annotations,
                )
                return cache
            LOG.info("cache %s is for other inputs; rebuilding", cache_path)
        except Exception as error:  # noqa: BLE001 - a stale or foreign cache file is simply rebuilt
            LOG.info("cache %s unreadable (%s); rebuilding", cache_path, error)
    start = time.perf_counter()
    cache = build_cache(
        split_files,
        encoder_factory(),
        manifest.prompt_template,
        image_root,
        batch_size,
        max_annotations,
        progress,
        meta,
        extra_texts,
    )
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache.to_state(), cache_path)
    LOG.info(
        "embedded %d boxes and %d captions (%d annotations) in %.1f s -> %s",
        len(cache.image),
        len(cache.captions),
        cache.annotations,
        time.perf_counter() - start,
        cache_path,
    )
    return cache


# ----------------------------------------------------------------------------------- categories


def annotation_categories(cache: EmbeddingCache, categories: Sequence[str]) -> torch.Tensor:
    """Per annotation, the index of the category named in its positive caption (-1: none).

    A caption names a category when the category appears in it as whole words; the last such
    mention wins ("a red mug" -> mug), which is how attribute-first captions are built.
    """
    patterns = [re.compile(rf"\b{re.escape(c.lower())}\b") for c in categories]
    per_caption = []
    for caption in cache.captions:
        text = caption.lower()
        best, best_pos = -1, -1
        for index, pattern in enumerate(patterns):
            for match in pattern.finditer(text):
                if match.start() > best_pos:
                    best, best_pos = index, match.start()
        per_caption.append(best)
    return torch.tensor(per_caption, dtype=torch.long)[cache.positive]


# ----------------------------------------------------------------------------------- training


@dataclass
class HeadTrainConfig:
    kind: str = "linear"  # linear | mlp
    sides: str = "both"  # both | visual | text
    init: str = "identity"  # identity (linear: epoch 0 = cosine) | default (torch's init) | a heads file
    margin: float = 0.05
    lr: float = 1e-5
    weight_decay: float = 0.0  # AdamW's; 0 makes it Adam, the paper's optimiser
    batch_size: int = 256
    epochs: int = 10
    patience: int = 3  # epochs without val improvement before stopping; 0 = never stop
    warmup_epochs: int = 0  # contrastive warm-up epochs before the triplet loss
    contrastive_weight: float = 0.0  # in-batch InfoNCE alongside the triplet loss
    category_weight: float = 0.0  # category-preserving term (needs categories)
    category_prompt: str = "a {}"
    temperature: float = 0.07  # of the contrastive and category terms
    score: str = "cosine"  # under the margin: cosine | sigmoid (of the cosine, the paper's)
    reduction: str = "mean"  # of the triplet terms over (image, negative) pairs: mean | sum (the paper's)
    train_splits: str = ""  # comma-separated splits to train and validate on ("" = all in the files)
    min_negatives: int = 0  # > 0: only annotations with at least this many, using their first this many
    select: str = "val_rank"  # kept: val_rank (lowest val MRS, epoch 0 included) | val_loss (epoch >= 1)
    caption_axis_norm: bool = False  # the paper's quirk: training text embeddings normalised over captions
    features: str = "fp32"  # fp16: frozen embeddings rounded to fp16, as the paper's were stored
    seed: int = 0
    device: str = "cpu"


# The paper's FG-OVD recipe, point by point (../docs/training.md lists where the project's differs).
PAPER_RECIPE: dict = {
    "margin": 0.05, "lr": 1e-5, "weight_decay": 0.0, "batch_size": 256, "epochs": 10, "patience": 0,
    "warmup_epochs": 0, "contrastive_weight": 0.0, "category_weight": 0.0, "score": "sigmoid",
    "reduction": "sum", "train_splits": "hard", "min_negatives": 10, "select": "val_loss",
    "caption_axis_norm": True, "features": "fp16", "seed": 123,
}


def make_heads(kind: str, sides: str, embed_dim: int, init: str = "identity") -> ReprojectionHeads:
    """Heads to train: identity-initialised, torch's default init, or loaded from a heads file."""
    if kind not in ("linear", "mlp"):
        raise ValueError(f"kind must be linear or mlp, got {kind!r}")
    if sides not in ("both", "visual", "text"):
        raise ValueError(f"sides must be both, visual or text, got {sides!r}")
    if init not in ("identity", "default"):
        # Start from given heads (the paper starts its FG-OVD heads from COCO triplet heads).
        from fgclip_ros.core.reprojection import load_heads

        return load_heads(Path(init), kind, embed_dim, sides=sides).train()

    def head(trained: bool) -> Head:
        h = Head(kind if trained else "identity", embed_dim)
        if trained and init == "identity":
            # Linear: start at the identity map, so epoch 0 is cosine. MLP: identity weights, so the
            # start is tanh(tanh(x)), which keeps the sign pattern of x (tanh follows every Linear).
            for layer in h.layers:
                torch.nn.init.eye_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
        return h

    return ReprojectionHeads(head(sides in ("both", "visual")), head(sides in ("both", "text")))


def triplet_loss(
    image: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor,
    margin: float,
    score: str = "cosine",
    reduction: str = "mean",
) -> torch.Tensor:
    """relu(margin - s(v, t+) + s(v, t-)) over (anchor, negative) pairs; inputs normalised.

    s is the dot product (``score="cosine"``) or its sigmoid (the paper's); the terms are averaged
    over the unmasked pairs (``reduction="mean"``) or summed (the paper's).
    """
    pos = (image * positive).sum(-1, keepdim=True)
    neg = torch.einsum("bd,bkd->bk", image, negatives)
    if score == "sigmoid":
        pos, neg = torch.sigmoid(pos), torch.sigmoid(neg)
    elif score != "cosine":
        raise ValueError(f"score must be cosine or sigmoid, got {score!r}")
    losses = F.relu(margin - pos + neg) * mask
    if reduction == "sum":
        return losses.sum()
    if reduction != "mean":
        raise ValueError(f"reduction must be mean or sum, got {reduction!r}")
    return losses.sum() / mask.sum().clamp(min=1)


def project_caption_batch(
    heads: ReprojectionHeads, raw: torch.Tensor, caption_axis_norm: bool
) -> torch.Tensor:
    """(B, C, D) raw caption embeddings -> projected, normalised per caption (or over the C axis).

    ``caption_axis_norm`` reproduces the paper's training code, which normalises the (B, 1 + K, D)
    text batch along dim 1 (each feature over the captions) rather than per caption; its evaluation
    normalises per caption, as ``project_texts`` does.
    """
    if not caption_axis_norm:
        return heads.project_texts(raw)
    return F.normalize(heads.text(raw.to(torch.float32)), dim=1)


def select_annotations(cache: EmbeddingCache, cfg: HeadTrainConfig) -> EmbeddingCache:
    """What a recipe trains / validates on: its splits, >= ``min_negatives``, features as stored."""
    keep = cache.valid[cache.crop].clone()
    if cfg.train_splits:
        wanted = [s.strip() for s in cfg.train_splits.split(",") if s.strip()]
        missing = [s for s in wanted if s not in cache.splits]
        if missing:
            raise ValueError(
                f"train_splits {', '.join(missing)} not in the given files ({', '.join(cache.splits)})"
            )
        keep &= torch.isin(cache.split, torch.tensor([cache.splits.index(s) for s in wanted]))
    if cfg.min_negatives > 0:
        keep &= (cache.negatives >= 0).sum(1) >= cfg.min_negatives
    if cfg.caption_axis_norm and cfg.min_negatives <= 0:
        raise ValueError("caption_axis_norm normalises a (B, 1 + K, D) batch: set min_negatives to K")
    out = cache.subset(keep)
    if cfg.min_negatives > 0:
        out.negatives = out.negatives[:, : cfg.min_negatives]
    if cfg.features == "fp16":
        out.image, out.text = out.image.half().float(), out.text.half().float()
    elif cfg.features != "fp32":
        raise ValueError(f"features must be fp32 or fp16, got {cfg.features!r}")
    if out.annotations == 0:
        raise ValueError(
            f"no annotation of splits {cfg.train_splits or 'all'} has {cfg.min_negatives} negatives"
        )
    return out


def info_nce(image: torch.Tensor, text: torch.Tensor, same_caption: torch.Tensor, temperature: float):
    """Symmetric in-batch contrastive loss; other rows with the same caption are not negatives."""
    logits = image @ text.T / temperature
    logits = logits.masked_fill(
        same_caption & ~torch.eye(len(image), dtype=torch.bool, device=image.device), float("-inf")
    )
    target = torch.arange(len(image), device=image.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@torch.no_grad()
def evaluate_heads(
    heads: ReprojectionHeads,
    cache: EmbeddingCache,
    category_index: torch.Tensor | None = None,
    category_text: torch.Tensor | None = None,
) -> dict:
    """FG-OVD mean rank per split (``ranks.embedding_ranks``, each split's L), their sum, category acc."""
    device = next(heads.parameters(), torch.empty(0)).device
    image = heads.project_images(cache.image.to(device))
    text = heads.project_texts(cache.text.to(device))
    crop, positive, negatives, split = (t.to(device) for t in (cache.crop, cache.positive, cache.negatives,
                                                               cache.split))
    usable = cache.valid.to(device)[crop]
    counts = (negatives >= 0).sum(1)
    result = {"mean_rank": {}}
    for index, name in enumerate(cache.splits):
        count = cache.split_negatives[index]
        selected = usable & (split == index) & (counts >= count)
        if count > negatives.shape[1] or not selected.any():
            continue
        split_ranks, _, _ = ranks.embedding_ranks(
            image[crop[selected]], text[positive[selected]], text[negatives[selected, :count]])
        result["mean_rank"][name] = float(split_ranks.double().mean())
    result["rank_sum"] = float(sum(result["mean_rank"].values()))
    if category_index is not None and category_text is not None:
        cat = category_index.to(device)[usable]
        has = cat >= 0
        if has.any():
            prompts = heads.project_texts(category_text.to(device))
            # One row per annotation; every split annotates the same objects, so this is per-object accuracy.
            predicted = (image[crop[usable]][has] @ prompts.T).argmax(1)
            result["category_accuracy"] = float((predicted == cat[has]).float().mean())
    return result


@dataclass
class HeadTrainResult:
    heads: ReprojectionHeads
    best_epoch: int
    history: list[dict]
    baseline: dict  # identity heads (cosine) on the validation set
    best: dict


def train_heads(
    train: EmbeddingCache,
    val: EmbeddingCache,
    cfg: HeadTrainConfig,
    categories: Sequence[str] | None = None,
    category_text: torch.Tensor | None = None,
    progress: bool | None = None,
) -> HeadTrainResult:
    """Train heads on ``train``, keeping the epoch ``cfg.select`` prefers on ``val``.

    ``val_rank``: the lowest validation mean-rank sum, the start (epoch 0) included, with early
    stopping after ``patience`` epochs without improvement. ``val_loss`` (the paper's): the lowest
    validation triplet loss among epochs >= 1. ``categories`` + ``category_text`` (raw embeddings of
    the category prompts, in that order) enable the category-preserving term and the category
    accuracy in the metrics.
    """
    from tqdm import tqdm

    if cfg.select not in ("val_rank", "val_loss"):
        raise ValueError(f"select must be val_rank or val_loss, got {cfg.select!r}")
    train, val = select_annotations(train, cfg), select_annotations(val, cfg)
    LOG.info("training on %d annotations, validating on %d (splits: %s, negatives: %s, features %s)",
             train.annotations, val.annotations, cfg.train_splits or "all",
             f"first {cfg.min_negatives}" if cfg.min_negatives else "all", cfg.features)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    dim = train.image.shape[1]
    heads = make_heads(cfg.kind, cfg.sides, dim, cfg.init).to(device)
    train_cat = annotation_categories(train, categories) if categories else None
    val_cat = annotation_categories(val, categories) if categories else None
    if cfg.category_weight > 0 and (train_cat is None or category_text is None):
        raise ValueError("the category-preserving term needs categories and their prompt embeddings")

    usable = train.valid[train.crop]
    rows = torch.nonzero(usable).squeeze(1)
    image_raw, text_raw = train.image.to(device), train.text.to(device)
    crop_all, pos_all, neg_all = train.crop.to(device), train.positive.to(device), train.negatives.to(device)
    cat_all = train_cat.to(device) if train_cat is not None else None
    cat_text = category_text.to(device) if category_text is not None else None
    optimizer = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    baseline_heads = ReprojectionHeads.identity(dim).to(device)
    baseline = evaluate_heads(baseline_heads, val, val_cat, category_text)
    start = evaluate_heads(heads, val, val_cat, category_text)
    LOG.info(
        "val cosine baseline: rank sum %.3f%s; heads at start: %.3f",
        baseline["rank_sum"],
        _cat_text(baseline),
        start["rank_sum"],
    )
    start_loss = validation_loss(heads, val, cfg)
    history: list[dict] = [{"epoch": 0, "phase": "start", "val": start, "val_loss": start_loss}]
    best_state, best_epoch, best = copy.deepcopy(heads.state_dict()), 0, start
    best_loss = math.inf  # val_loss selection never keeps the untrained start
    stale = 0
    total_epochs = cfg.warmup_epochs + cfg.epochs
    for epoch in range(1, total_epochs + 1):
        warmup = epoch <= cfg.warmup_epochs
        heads.train()
        order = rows[torch.randperm(len(rows), generator=generator)]
        losses = []
        bar = tqdm(
            range(0, len(order), cfg.batch_size),
            desc=f"epoch {epoch}/{total_epochs}",
            unit="batch",
            disable=None if progress is None else not progress,
            leave=False,
        )
        for start_row in bar:
            batch = order[start_row : start_row + cfg.batch_size].to(device)
            v = heads.project_images(image_raw[crop_all[batch]])
            positive_rows = pos_all[batch]
            t_pos = heads.project_texts(text_raw[positive_rows])
            loss = torch.zeros((), device=device)
            if warmup or cfg.contrastive_weight > 0:
                same = positive_rows[:, None] == positive_rows[None, :]
                loss = loss + (1.0 if warmup else cfg.contrastive_weight) * info_nce(
                    v, t_pos, same, cfg.temperature
                )
            if not warmup:
                loss = loss + _batch_triplet_loss(heads, v, text_raw, positive_rows, neg_all[batch], cfg)
            if cfg.category_weight > 0:
                cats = cat_all[batch]
                has = cats >= 0
                if has.any():
                    prompts = heads.project_texts(cat_text)
                    logits = v[has] @ prompts.T / cfg.temperature
                    loss = loss + cfg.category_weight * F.cross_entropy(logits, cats[has])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        bar.close()
        heads.eval()
        metrics = evaluate_heads(heads, val, val_cat, category_text)
        val_loss = validation_loss(heads, val, cfg)
        entry = {
            "epoch": epoch,
            "phase": "warmup" if warmup else "triplet",
            "loss": float(np.mean(losses)),
            "val": metrics,
            "val_loss": val_loss,
        }
        history.append(entry)
        if cfg.select == "val_loss":
            improved = not warmup and val_loss < best_loss
        else:
            improved = not warmup and metrics["rank_sum"] < best["rank_sum"] - 1e-9
        LOG.info(
            "epoch %d/%d (%s) loss %.4f val loss %.4f val rank sum %.3f%s%s",
            epoch,
            total_epochs,
            entry["phase"],
            entry["loss"],
            val_loss,
            metrics["rank_sum"],
            _cat_text(metrics),
            " *" if improved else "",
        )
        if improved:
            best_state, best_epoch, best, stale = copy.deepcopy(heads.state_dict()), epoch, metrics, 0
            best_loss = val_loss
        elif not warmup:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                LOG.info("early stop: no val improvement for %d epochs; keeping epoch %d", stale, best_epoch)
                break
    heads.load_state_dict(best_state)
    heads.eval()
    return HeadTrainResult(heads.cpu(), best_epoch, history, baseline, best)


def _batch_triplet_loss(heads, image, text_raw, positive_rows, negative_rows, cfg) -> torch.Tensor:
    """The recipe's triplet term for one batch: projected images vs. their positive + negatives."""
    mask = (negative_rows >= 0).float()
    rows = torch.cat([positive_rows[:, None], negative_rows.clamp(min=0)], dim=1)
    texts = project_caption_batch(heads, text_raw[rows], cfg.caption_axis_norm)
    return triplet_loss(image, texts[:, 0], texts[:, 1:], mask, cfg.margin, cfg.score, cfg.reduction)


@torch.no_grad()
def validation_loss(heads: ReprojectionHeads, val: EmbeddingCache, cfg: HeadTrainConfig) -> float:
    """The recipe's triplet loss on the validation annotations (summed over batches; mean for "mean")."""
    device = next(heads.parameters(), torch.empty(0)).device
    rows = torch.nonzero(val.valid[val.crop]).squeeze(1)
    image_raw, text_raw = val.image.to(device), val.text.to(device)
    total, pairs = 0.0, 0.0
    for start in range(0, len(rows), cfg.batch_size):
        batch = rows[start : start + cfg.batch_size]
        v = heads.project_images(image_raw[val.crop[batch].to(device)])
        negatives = val.negatives[batch].to(device)
        loss = _batch_triplet_loss(heads, v, text_raw, val.positive[batch].to(device), negatives, cfg)
        weight = float((negatives >= 0).sum())
        total += float(loss) * (weight if cfg.reduction == "mean" else 1.0)
        pairs += weight
    return total / max(pairs, 1.0) if cfg.reduction == "mean" else total


def _cat_text(metrics: dict) -> str:
    return f", category acc {metrics['category_accuracy']:.3f}" if "category_accuracy" in metrics else ""


def split_by_image(
    cache: EmbeddingCache, fraction: float, seed: int
) -> tuple[EmbeddingCache, EmbeddingCache]:
    """Hold out ``fraction`` of the images (all their annotations) as a validation set."""
    images = torch.unique(cache.image_id)
    generator = torch.Generator().manual_seed(seed)
    held = images[
        torch.randperm(len(images), generator=generator)[: max(1, math.ceil(fraction * len(images)))]
    ]
    is_val = torch.isin(cache.image_id, held)
    return cache.subset(~is_val), cache.subset(is_val)


# ----------------------------------------------------------------------------------- outputs


def _relative_spec(spec, base_dir: Path, target_dir: Path) -> dict | None:
    if spec is None:
        return None
    if spec.url is not None:
        return {"url": spec.url, "sha256": spec.sha256}
    path = Path(spec.path)
    absolute = path if path.is_absolute() else (base_dir / path).resolve()
    out = {"path": os.path.relpath(absolute, target_dir.resolve())}
    if spec.sha256:
        out["sha256"] = spec.sha256
    return out


def manifest_dict(
    base, heads_path: Path | None, kind: str, sides: str, manifest_path: Path, name: str, description: str
) -> dict:
    """A manifest for ``base``'s encoder with these heads (paths relative to ``manifest_path``)."""
    target_dir = manifest_path.parent
    data = {"name": name, "description": description, "architecture": base.architecture}
    for key in ("model_config", "weights"):
        spec = _relative_spec(getattr(base, key), base.base_dir, target_dir)
        if spec is not None:
            data[key] = spec
    if base.pretrained:
        data["pretrained"] = base.pretrained
    data.update(input_size=base.input_size, embed_dim=base.embed_dim, prompt_template=base.prompt_template)
    if heads_path is None:
        data["reprojection"] = {"kind": "identity"}
    else:
        data["reprojection"] = {
            "kind": kind,
            "sides": sides,
            "file": {"path": os.path.relpath(heads_path.resolve(), target_dir.resolve())},
        }
    return data


def write_manifest(data: dict, path: Path, header: str) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(data, sort_keys=False, width=110))


def plot_history(history: list[dict], baseline: dict, path: Path, title: str) -> None:
    """Validation mean-rank sum per epoch against the cosine baseline (PNG)."""
    from fgclip_ros.evaluation.plots import pyplot, save_png

    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(epochs, [h["val"]["rank_sum"] for h in history], marker="o", label="re-projection (val)")
    ax.axhline(baseline["rank_sum"], color="gray", linestyle="--", label="cosine (val)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean-rank sum (lower is better)")
    ax.set_title(title, fontsize=9)
    if any("category_accuracy" in h["val"] for h in history):
        ax2 = ax.twinx()
        ax2.plot(
            epochs,
            [h["val"].get("category_accuracy", float("nan")) for h in history],
            color="tab:green",
            marker=".",
            label="category acc (val)",
        )
        ax2.set_ylabel("category accuracy", color="tab:green")
        ax2.set_ylim(0, 1.02)
    ax.legend(loc="upper right", fontsize=8)
    save_png(fig, path, dpi=None)


def save_trained(result: HeadTrainResult, cfg: HeadTrainConfig, heads_path: Path, log: dict) -> dict:
    """Heads in the upstream layout + JSON log + PNG curve next to them; returns the log written."""
    heads_path = Path(heads_path)
    save_heads(result.heads, heads_path)
    log = dict(
        log,
        config=asdict(cfg),
        best_epoch=result.best_epoch,
        baseline=result.baseline,
        best=result.best,
        history=result.history,
    )
    stem = heads_path.with_suffix("")
    Path(f"{stem}_train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    plot_history(
        result.history,
        result.baseline,
        Path(f"{stem}_train.png"),
        f"{heads_path.name}: {cfg.kind} ({cfg.sides}), best epoch {result.best_epoch}",
    )
    return log
