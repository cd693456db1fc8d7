# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""FG-OVD ranking evaluation of an encoder with one or more sets of re-projection heads.

For every annotation of a split file: crop its box with the model's preprocessing (plain box,
context scale 1.0, as the paper does), embed the crop and the positive + negative captions, score
each caption by the dot product of the projected, L2-normalised embeddings, and rank the positive
against the split's first L negatives (``ranks.embedding_ranks``: ties count against it;
annotations with fewer than L negatives are skipped, as FG-OVD does). L is the benchmark's: a
file's ``info.negatives`` when it records one (the synthetic world's sets), else FG-OVD's (10,
Pattern 7, Transparency 2). Works on the published FG-OVD files (with the COCO image folder) and
on the synthetic world's sets (``fgclip_ros.synth.benchmark``). Images are read with PIL without
applying EXIF orientation, as FG-OVD's boxes were drawn on the stored pixels.

Raw encoder outputs are computed once per unique (image, box) and per unique caption, then every
variant (e.g. cosine = identity heads, and the model's re-projection) is scored from them, so
comparing variants costs one pass through the towers.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fgclip_ros.core.crops import crop_batch_cpu
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.prompts import prompts
from fgclip_ros.core.reprojection import ReprojectionHeads, project
from fgclip_ros.evaluation import ranks
from fgclip_ros.evaluation.ranks import FGOVD_FILE_NAMES, SPLITS
from fgclip_ros.evaluation.vocabulary import Vocabulary

LOG = logging.getLogger("fgclip_ros.evaluate.fgovd")
CATEGORY_PROMPT = "a {}"


class BenchmarkError(FgclipError):
    """A benchmark file or one of its images is missing or malformed."""


@dataclass
class SplitResult:
    split: str
    file: str
    negatives: int  # L: each annotation is ranked against its first L negatives
    annotations: int  # annotations ranked
    skipped: int  # annotations with fewer than L negatives or with an unusable box
    mean_rank: float
    median_rank: float
    chance_mean_rank: float  # 1 + L / 2
    top1: float  # fraction of annotations whose positive beats every negative (rank 1)
    mean_positive_score: float
    mean_best_negative_score: float
    gap_closed: float | None = None  # share of the baseline's distance to rank 1 removed (ranks.gap_closed)


@dataclass
class VariantResult:
    """One scoring variant (e.g. "cosine" or the model's re-projection) over all evaluated splits."""

    variant: str
    splits: dict[str, SplitResult] = field(default_factory=dict)
    mean_rank_sum: float = float("nan")  # over the evaluated splits; FG-OVD's MRS when all 8 are there
    chance_mean_rank_sum: float = float("nan")  # MRS at chance for these splits' L (FG-OVD: 42.5)
    perfect_mean_rank_sum: float = float("nan")  # one per split (FG-OVD: 8)
    gap_closed: float | None = None  # of the MRS, relative to the baseline variant
    complete: bool = False  # all eight FG-OVD splits evaluated
    category_accuracy: float | None = None  # synthetic sets only (see ``category_accuracy``)
    category_objects: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["splits"] = {name: asdict(result) for name, result in self.splits.items()}
        return out


# ----------------------------------------------------------------------------------- loading


def find_split_files(paths: Sequence[Path | str]) -> dict[str, Path]:
    """Map split name -> JSON file from folders and/or files.

    A folder may hold our names (``hard.json``) or FG-OVD's (``1_attributes.json``). A file's split
    comes from its name, or from ``info.split`` of a synthetic set.
    """
    by_fgovd_name = {name: split for split, name in FGOVD_FILE_NAMES.items()}
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for split in SPLITS:
                for name in (f"{split}.json", FGOVD_FILE_NAMES[split]):
                    if (path / name).is_file() and split not in found:
                        found[split] = path / name
            continue
        if not path.is_file():
            raise BenchmarkError(f"{path}: no such file or folder; pass FG-OVD JSON files or their folder")
        split = path.stem if path.stem in SPLITS else by_fgovd_name.get(path.name)
        if split is None:
            info = _read_json(path).get("info", {})
            split = info.get("split") if isinstance(info, dict) else None
        if split not in SPLITS:
            raise BenchmarkError(f"{path}: cannot tell which FG-OVD split this is; name it <split>.json "
                                 f"with split one of {', '.join(SPLITS)}")
        found[split] = path
    if not found:
        raise BenchmarkError(f"no FG-OVD split files found in {', '.join(str(p) for p in paths)}")
    return {split: found[split] for split in SPLITS if split in found}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise BenchmarkError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a JSON object with images/annotations/categories")
    return data


def load_split(path: Path | str) -> dict:
    """Read an LVIS-style FG-OVD file, checking the keys the evaluator uses."""
    data = _read_json(Path(path))
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise BenchmarkError(f"{path}: missing the {key!r} list of an FG-OVD/LVIS file")
    return data


def resolve_image(image_root: Path, file_name: str) -> Path:
    """``image_root/file_name``, else ``image_root/<base name>`` (a folder given one level too deep)."""
    for candidate in (image_root / file_name, image_root / Path(file_name).name):
        if candidate.is_file():
            return candidate
    raise BenchmarkError(
        f"image {file_name!r} not found under {image_root}; pass --images the folder that holds it "
        "(for FG-OVD, the COCO 2017 root that contains val2017/)")


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the stored pixels: PIL, no EXIF rotation (boxes refer to these pixels)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise BenchmarkError(f"{path}: not a readable image ({error})") from None


def file_negatives(split: str, data: Mapping, path: Path | str) -> int:
    """The split's L as its file states it (``info.negatives``), else FG-OVD's for that split.

    A split whose every annotation has fewer than L negatives would be skipped wholesale: that is
    an error naming the fix, never a silently missing split.
    """
    try:
        count = ranks.split_negatives(split, data.get("info"))
    except ValueError as error:
        raise BenchmarkError(f"{path}: {error}") from None
    held = [len(ann.get("neg_category_ids") or []) for ann in data["annotations"] if isinstance(ann, dict)]
    if held and max(held) < count:
        raise BenchmarkError(
            f"{path}: the {split} split ranks against the first {count} negatives, but no annotation "
            f"has that many (at most {max(held)}); a set with fewer negatives per annotation must state "
            "its own count as info.negatives (fgclip-make-fgovd does)")
    return count


# ----------------------------------------------------------------------------------- embedding


@dataclass
class _Annotation:
    crop: int  # row in the raw image-embedding table (-1: box rejected)
    positive: str
    negatives: list[str]


def _encode_texts(encoder, texts: list[str], template: str, batch_size: int) -> torch.Tensor:
    rows = []
    for start in range(0, len(texts), batch_size):
        chunk = prompts(template, texts[start : start + batch_size])
        rows.append(encoder.encode_texts(chunk).float().cpu())
    return torch.cat(rows) if rows else torch.zeros((0, encoder.embed_dim))


class _CropTable:
    """Raw image embeddings of unique (image, box) pairs, encoded in batches across images."""

    def __init__(self, encoder, batch_size: int):
        self.encoder = encoder
        self.batch_size = batch_size
        self.keys: dict[tuple[str, tuple[float, ...]], int] = {}
        self.by_image: dict[Path, list[tuple[int, list[float]]]] = {}

    def add(self, image_path: Path, bbox_xywh: Sequence[float]) -> int:
        key = (str(image_path), tuple(float(v) for v in bbox_xywh))
        if key not in self.keys:
            self.keys[key] = len(self.keys)
            x, y, w, h = key[1]
            self.by_image.setdefault(image_path, []).append((self.keys[key], [x, y, x + w, y + h]))
        return self.keys[key]

    def encode(self, progress: bool | None) -> tuple[torch.Tensor, np.ndarray]:
        """(N, D) raw embeddings (rows of rejected boxes are zero) and the (N,) valid mask."""
        raw = torch.zeros((len(self.keys), self.encoder.embed_dim), dtype=torch.float32)
        valid = np.zeros(len(self.keys), dtype=bool)
        pending_rows: list[int] = []
        pending_crops: list[np.ndarray] = []

        def flush() -> None:
            if pending_rows:
                batch = np.concatenate(pending_crops)
                with torch.inference_mode():
                    raw[pending_rows] = self.encoder.encode_images(batch).float().cpu()
                pending_rows.clear()
                pending_crops.clear()

        bar = tqdm(total=len(self.keys), desc="annotations", unit="box",
                   disable=None if progress is None else not progress)
        for image_path, entries in self.by_image.items():
            image = read_rgb(image_path)
            boxes = np.array([box for _, box in entries])
            crops, check = crop_batch_cpu(image, boxes, self.encoder.preprocess)
            kept = [entries[i][0] for i in check.indices]
            valid[kept] = True
            for row, crop in zip(kept, crops):
                pending_rows.append(row)
                pending_crops.append(crop[None])
                if len(pending_rows) >= self.batch_size:
                    flush()
            bar.update(len(entries))
        flush()
        bar.close()
        return raw, valid


def _project(raw: torch.Tensor, heads: ReprojectionHeads | None, side: str) -> torch.Tensor:
    # On the heads' own device (they may live on the GPU); results come back to the CPU.
    device = next(heads.parameters(), torch.empty(0)).device if heads is not None else raw.device
    with torch.inference_mode():
        return project(raw.to(device), heads, side).cpu()


# ----------------------------------------------------------------------------------- scoring


def score_split(annotations: list[_Annotation], image_emb: torch.Tensor, valid: np.ndarray,
                text_emb: torch.Tensor, text_row: Mapping[str, int], negatives: int) -> dict:
    """Rank statistics of one split from projected embeddings, under the L = ``negatives`` rule."""
    crops, positives, negative_rows = [], [], []
    skipped = 0
    for ann in annotations:
        first = ranks.first_negatives(ann.negatives, negatives)
        if ann.crop < 0 or not valid[ann.crop] or first is None:
            skipped += 1
            continue
        crops.append(ann.crop)
        positives.append(text_row[ann.positive])
        negative_rows.append([text_row[n] for n in first])
    nan = float("nan")
    rank_list, pos, neg = ranks.embedding_ranks(
        image_emb[crops], text_emb[positives],
        text_emb[torch.tensor(negative_rows, dtype=torch.long).reshape(-1, negatives)])
    rank_list = rank_list.cpu().numpy()
    return {
        "negatives": negatives, "annotations": len(rank_list), "skipped": skipped,
        "mean_rank": ranks.mean_rank(rank_list), "median_rank": ranks.median_rank(rank_list),
        "chance_mean_rank": ranks.chance_mean_rank(negatives),
        "top1": float(np.mean(rank_list == 1)) if len(rank_list) else nan,
        "mean_positive_score": float(pos.mean()) if len(rank_list) else nan,
        "mean_best_negative_score": float(neg.max(dim=1).values.mean()) if len(rank_list) else nan,
    }


def category_accuracy(image_emb: torch.Tensor, category_emb: torch.Tensor, true_index: np.ndarray) -> float:
    """Fraction of objects whose own category prompt scores strictly above every other category's.

    ``category_emb`` holds one projected prompt per category ("a mug", "a bottle", ...) and
    ``true_index`` each object's category row; a tie with another category counts as wrong.
    """
    if len(true_index) == 0:
        return float("nan")
    scores = image_emb @ category_emb.T  # (N, C)
    own = scores[torch.arange(len(true_index)), torch.as_tensor(true_index)]
    others = scores.clone()
    others[torch.arange(len(true_index)), torch.as_tensor(true_index)] = -torch.inf
    return float((own > others.max(dim=1).values).float().mean())


def _vocabulary_categories(captions: Sequence[str], vocabulary: Vocabulary | None) -> list[str] | None:
    """Each caption's category when the vocabulary wrote all of them, else None (e.g. real FG-OVD)."""
    parsed = [vocabulary.parse(c) for c in captions] if vocabulary is not None else [None]
    return None if any(p is None for p in parsed) else [p[0] for p in parsed]


def evaluate_fgovd(
    split_files: Mapping[str, Path],
    encoder,
    variants: Mapping[str, ReprojectionHeads | None],
    image_root: Path | str | None = None,
    template: str = "{}",
    batch_size: int = 64,
    max_annotations: int | None = None,
    progress: bool | None = None,
    vocabulary: Vocabulary | None = None,
    baseline: str = "cosine",
) -> dict[str, VariantResult]:
    """Evaluate ``encoder`` under each named set of heads on each split file.

    ``variants`` maps a name to heads (None = plain cosine on the raw embeddings, also right for
    encoders whose graphs hold the heads). ``image_root`` defaults to each file's folder (our sets);
    for FG-OVD pass the COCO 2017 root. ``max_annotations`` keeps the first N of each split.
    With a ``vocabulary`` whose captions the positives are, category accuracy is measured too. When
    ``baseline`` names one of the variants, the others report the share of its gap to perfect
    that they close, per split and for the MRS.
    """
    with_heads = [name for name, h in variants.items() if h is not None and h.sides != "none"]
    if getattr(encoder, "projected", False) and with_heads:
        raise ValueError("the encoder's graphs already apply heads (projected=True); use heads=None")
    table = _CropTable(encoder, batch_size)
    per_split: dict[str, list[_Annotation]] = {}
    split_l: dict[str, int] = {}
    captions: dict[str, None] = {}
    for split, path in split_files.items():
        data = load_split(path)
        split_l[split] = count = file_negatives(split, data, path)
        root = Path(image_root) if image_root is not None else Path(path).parent
        images = {img["id"]: img for img in data["images"]}
        names = {cat["id"]: cat["name"] for cat in data["categories"]}
        annotations = data["annotations"][:max_annotations] if max_annotations else data["annotations"]
        resolved: dict[int, Path] = {}
        items = []
        for ann in annotations:
            try:
                image_id = ann["image_id"]
                if image_id not in resolved:
                    resolved[image_id] = resolve_image(root, images[image_id]["file_name"])
                positive = names[ann["category_id"]]
                negatives = [names[i] for i in ann.get("neg_category_ids", [])]
                crop = table.add(resolved[image_id], ann["bbox"])
            except KeyError as error:
                raise BenchmarkError(
                    f"{path}: annotation {ann.get('id')} refers to a missing id or key {error}") from None
            captions.update(dict.fromkeys([positive, *negatives[:count]]))
            items.append(_Annotation(crop, positive, negatives))
        per_split[split] = items
        short = sum(len(ann.negatives) < count for ann in items)
        LOG.info("%s: %d annotations from %s (L = %d; %d with fewer negatives are skipped)",
                 split, len(items), path, count, short)

    caption_list = list(captions)
    text_row = {c: i for i, c in enumerate(caption_list)}
    raw_text = _encode_texts(encoder, caption_list, template, max(batch_size, 256))
    raw_image, valid = table.encode(progress)

    # Category accuracy (synthetic sets): each unique object's positive caption names its category.
    object_caption: dict[int, str] = {}
    for items in per_split.values():
        for ann in items:
            if valid[ann.crop]:
                object_caption.setdefault(ann.crop, ann.positive)
    object_rows = np.array(list(object_caption), dtype=np.int64)
    object_categories = _vocabulary_categories(list(object_caption.values()), vocabulary)
    raw_category = None
    if object_categories is not None:
        categories = vocabulary.categories
        raw_category = _encode_texts(encoder, prompts(CATEGORY_PROMPT, categories), template, 256)
        true_index = np.array([categories.index(c) for c in object_categories], dtype=np.int64)

    results: dict[str, VariantResult] = {}
    for name, heads in variants.items():
        image_emb = _project(raw_image, heads, "visual")
        text_emb = _project(raw_text, heads, "text")
        result = VariantResult(variant=name)
        for split, items in per_split.items():
            stats = score_split(items, image_emb, valid, text_emb, text_row, split_l[split])
            result.splits[split] = SplitResult(split=split, file=str(split_files[split]), **stats)
        result.mean_rank_sum = ranks.mean_rank_sum({s: r.mean_rank for s, r in result.splits.items()})
        result.chance_mean_rank_sum = ranks.chance_mean_rank_sum(split_l)
        result.perfect_mean_rank_sum = ranks.PERFECT_MEAN_RANK * len(split_l)
        result.complete = set(result.splits) == set(SPLITS)
        if raw_category is not None:
            category_emb = _project(raw_category, heads, "text")
            result.category_accuracy = category_accuracy(image_emb[object_rows], category_emb, true_index)
            result.category_objects = len(object_rows)
        results[name] = result
    if baseline in results:
        reference = results[baseline]
        for name, result in results.items():
            if name == baseline:
                continue
            for split, split_result in result.splits.items():
                split_result.gap_closed = ranks.gap_closed(reference.splits[split].mean_rank,
                                                           split_result.mean_rank)
            result.gap_closed = ranks.gap_closed(reference.mean_rank_sum, result.mean_rank_sum,
                                                 result.perfect_mean_rank_sum)
    return results
