# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Writer of FG-OVD-format benchmark sets of the synthetic world.

One set (train, val or test) is a folder with the rendered scenes under ``images/`` and one
LVIS-style JSON per split, shaped exactly like FG-OVD's files: ``images`` (id, file_name, width,
height), ``annotations`` (id, image_id, bbox [x, y, w, h], category_id = the positive caption,
neg_category_ids = its negatives) and ``categories`` (id, name = the full caption). All eight
splits annotate the same objects of the same images; only the negatives differ:

- trivial: random other captions; easy / medium / hard: 3 / 2 / 1 attributes changed;
- color / material / pattern / transparency: only that attribute changed.

Negative counts follow FG-OVD (10; Pattern 7; Transparency 2) where the vocabulary has enough
values: Material has 5 (6 materials) and Pattern 3 (4 patterns). Every file records its count as
``info.negatives``: the set's L, which the evaluator's rank rule uses in place of FG-OVD's.
Each set has its own seed range (``SET_SEEDS``), recorded in every file's ``info``, so train, val
and test never share a scene.
"""

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fgclip_ros.evaluation.ranks import FGOVD_FILE_NAMES, FGOVD_NEGATIVES, SPLITS

from .render import render_scene
from .vocab import (
    ATTRIBUTE_FAMILIES,
    CATEGORIES,
    FAMILY_VALUES,
    ObjectSpec,
    random_spec,
)

CHANGED_ATTRIBUTES: dict[str, int] = {"easy": 3, "medium": 2, "hard": 1}
# Image i of a set is render_scene(SET_SEEDS[set] + i): disjoint ranges for up to 10 M images per set.
SET_SEEDS: dict[str, int] = {"train": 10_000_000, "val": 20_000_000, "test": 30_000_000}
MAX_IMAGES_PER_SET = 10_000_000
FORMAT_VERSION = 1


def is_held_out_seed(seed: int) -> bool:
    """True for scene seeds of the val and test ranges: training data must not render those scenes."""
    return any(SET_SEEDS[name] <= seed < SET_SEEDS[name] + MAX_IMAGES_PER_SET for name in ("val", "test"))


def _candidates(spec: ObjectSpec, split: str) -> list[ObjectSpec] | None:
    """All negatives allowed by a split's rule (None for trivial, whose pool is the whole world)."""
    if split in ATTRIBUTE_FAMILIES:
        return [spec.with_attribute(split, v) for v in FAMILY_VALUES[split] if v != getattr(spec, split)]
    if split in CHANGED_ATTRIBUTES:
        out = []
        for families in itertools.combinations(ATTRIBUTE_FAMILIES, CHANGED_ATTRIBUTES[split]):
            options = [[v for v in FAMILY_VALUES[f] if v != getattr(spec, f)] for f in families]
            for values in itertools.product(*options):
                changed = spec
                for family, value in zip(families, values):
                    changed = changed.with_attribute(family, value)
                out.append(changed)
        return out
    if split == "trivial":
        return None
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def negative_count(split: str) -> int:
    """Negatives per annotation: FG-OVD's count, capped by what the vocabulary allows."""
    example = ObjectSpec(CATEGORIES[0], *(FAMILY_VALUES[f][0] for f in ATTRIBUTE_FAMILIES))
    pool = _candidates(example, split)
    return FGOVD_NEGATIVES[split] if pool is None else min(FGOVD_NEGATIVES[split], len(pool))


def sample_negatives(spec: ObjectSpec, split: str, rng: np.random.Generator) -> list[ObjectSpec]:
    """Distinct negatives of ``spec`` for ``split`` (``negative_count(split)`` of them)."""
    count = negative_count(split)
    pool = _candidates(spec, split)
    if pool is None:
        chosen: dict[ObjectSpec, None] = {}
        while len(chosen) < count:
            other = random_spec(rng)
            if other != spec:
                chosen[other] = None
        return list(chosen)
    picks = rng.choice(len(pool), size=count, replace=False)
    return [pool[i] for i in picks]


@dataclass
class _Object:
    image_id: int
    spec: ObjectSpec
    box: tuple[float, float, float, float]


def _category_entry(cat_id: int, caption: str) -> dict:
    # LVIS keys that FG-OVD's categories carry, so LVIS tooling can read our files too.
    return {"id": cat_id, "name": caption, "synset": "", "synonyms": [], "def": "", "frequency": "f",
            "instance_count": 0, "image_count": 0}


def build_split(split: str, images: list[dict], objects: list[_Object], info: dict, seed: int) -> dict:
    """The LVIS-style dict of one split (negatives drawn from a split-specific stream of ``seed``)."""
    rng = np.random.default_rng([seed, 1000 + SPLITS.index(split)])
    categories: dict[str, dict] = {}

    def category_id(caption: str) -> int:
        if caption not in categories:
            categories[caption] = _category_entry(len(categories) + 1, caption)
        return categories[caption]["id"]

    annotations = []
    images_with: dict[str, set[int]] = {}
    for ann_id, obj in enumerate(objects, start=1):
        positive = obj.spec.caption()
        pos_id = category_id(positive)
        neg_ids = [category_id(n.caption()) for n in sample_negatives(obj.spec, split, rng)]
        x0, y0, x1, y1 = obj.box
        annotations.append({
            "id": ann_id, "image_id": obj.image_id, "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "category_id": pos_id, "neg_category_ids": neg_ids,
        })
        categories[positive]["instance_count"] += 1
        images_with.setdefault(positive, set()).add(obj.image_id)
    for caption, image_ids in images_with.items():
        categories[caption]["image_count"] = len(image_ids)
    changed = CHANGED_ATTRIBUTES.get(split, 1 if split in ATTRIBUTE_FAMILIES else None)
    split_info = dict(info, split=split, negatives=negative_count(split),
                      fgovd_negatives=FGOVD_NEGATIVES[split], changed_attributes=changed,
                      fgovd_file_name=FGOVD_FILE_NAMES[split])
    return {"info": split_info, "licenses": [], "images": images, "annotations": annotations,
            "categories": list(categories.values())}


def write_benchmark(
    out_dir: Path | str,
    set_name: str = "test",
    n_images: int = 200,
    splits: tuple[str, ...] = SPLITS,
    seed: int | None = None,
    width: int = 320,
    height: int = 240,
    n_objects: tuple[int, int] = (2, 5),
    progress: bool | None = None,
) -> dict[str, Path]:
    """Render ``n_images`` scenes into ``out_dir/images`` and write ``out_dir/<split>.json`` per split.

    ``seed`` defaults to ``SET_SEEDS[set_name]``; image i is ``render_scene(seed + i, ...)``.
    Returns the written JSON path of each split. ``file_name`` entries are relative to ``out_dir``.
    """
    if seed is None:
        if set_name not in SET_SEEDS:
            raise ValueError(f"unknown set {set_name!r}: pass seed= or one of {tuple(SET_SEEDS)}")
        seed = SET_SEEDS[set_name]
    if not 0 < n_images <= MAX_IMAGES_PER_SET:
        raise ValueError(f"n_images must be in 1..{MAX_IMAGES_PER_SET}, got {n_images}")
    if not 1 <= n_objects[0] <= n_objects[1]:
        raise ValueError(f"n_objects must be a range (lo, hi) with 1 <= lo <= hi, got {n_objects}")
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)

    images: list[dict] = []
    objects: list[_Object] = []
    bar = tqdm(range(n_images), desc=f"render {set_name}", unit="img",
               disable=None if progress is None else not progress)
    for index in bar:
        scene = render_scene(seed + index, width, height, n_objects)
        image_id = index + 1
        file_name = f"images/{index:06d}.png"
        cv2.imwrite(str(out_dir / file_name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height,
                       "scene_seed": seed + index, "neg_category_ids": [], "not_exhaustive_category_ids": []})
        objects.extend(_Object(image_id, o.spec, o.box) for o in scene.objects)

    info = {
        "description": "fgclip_ros synthetic world, FG-OVD format (the project's offline test world)",
        "generator": "fgclip_ros.synth.benchmark", "version": FORMAT_VERSION,
        "set": set_name, "seed": seed,
        "image_seeds": f"render_scene(seed + index), index 0..{n_images - 1}",
        "negatives_seed": "numpy default_rng([seed, 1000 + split index])",
        "width": width, "height": height, "n_objects": list(n_objects),
        "vocabulary": {"category": list(CATEGORIES),
                       **{f: list(FAMILY_VALUES[f]) for f in ATTRIBUTE_FAMILIES}},
    }
    written = {}
    for split in splits:
        data = build_split(split, images, objects, info, seed)
        path = out_dir / f"{split}.json"
        path.write_text(json.dumps(data))
        written[split] = path
    return written
