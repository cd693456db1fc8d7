# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic FG-OVD-format benchmark writer: file format, split rules, counts and seeds."""

import json

import cv2
import pytest

from fgclip_ros.cli.make_fgovd import main as make_main
from fgclip_ros.evaluation.ranks import FGOVD_FILE_NAMES, SPLITS
from fgclip_ros.synth.benchmark import SET_SEEDS, is_held_out_seed, negative_count, write_benchmark
from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES, spec_from_caption

# FG-OVD's counts, capped by our vocabulary: 6 materials leave 5 negatives, 4 patterns leave 3.
EXPECTED_NEGATIVES = {"trivial": 10, "easy": 10, "medium": 10, "hard": 10, "color": 10, "material": 5,
                      "pattern": 3, "transparency": 2}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("fgsynth") / "val"
    paths = write_benchmark(out, set_name="val", n_images=8, width=160, height=120, progress=False)
    return out, paths


def test_negative_counts():
    assert {split: negative_count(split) for split in SPLITS} == EXPECTED_NEGATIVES


def test_files_have_the_fgovd_lvis_layout(small_set):
    out, paths = small_set
    assert set(paths) == set(SPLITS)
    for split, path in paths.items():
        data = json.loads(path.read_text())
        assert {"info", "images", "annotations", "categories"} <= set(data)
        assert data["info"]["split"] == split and data["info"]["set"] == "val"
        assert data["info"]["seed"] == SET_SEEDS["val"]
        assert data["info"]["negatives"] == EXPECTED_NEGATIVES[split]
        assert data["info"]["fgovd_file_name"] == FGOVD_FILE_NAMES[split]
        images = {img["id"]: img for img in data["images"]}
        assert len(images) == 8
        for img in images.values():
            assert {"id", "file_name", "width", "height"} <= set(img)
            pixels = cv2.imread(str(out / img["file_name"]))
            assert pixels.shape == (img["height"], img["width"], 3)
        categories = {cat["id"]: cat["name"] for cat in data["categories"]}
        assert len(set(categories.values())) == len(categories)  # one id per caption
        ids = [ann["id"] for ann in data["annotations"]]
        assert len(ids) == len(set(ids)) >= 8 * 2
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            img = images[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            assert ann["category_id"] in categories
            assert all(n in categories for n in ann["neg_category_ids"])


def _annotations_with_specs(path):
    data = json.loads(path.read_text())
    names = {cat["id"]: cat["name"] for cat in data["categories"]}
    for ann in data["annotations"]:
        yield ann, spec_from_caption(names[ann["category_id"]]), [spec_from_caption(names[n])
                                                                    for n in ann["neg_category_ids"]]


@pytest.mark.parametrize("split", SPLITS)
def test_negatives_follow_the_split_rule(small_set, split):
    _, paths = small_set
    for _, positive, negatives in _annotations_with_specs(paths[split]):
        assert len(negatives) == EXPECTED_NEGATIVES[split]
        assert len(set(negatives)) == len(negatives) and positive not in negatives
        for negative in negatives:
            changed = tuple(f for f in ATTRIBUTE_FAMILIES if getattr(positive, f) != getattr(negative, f))
            if split == "trivial":
                assert changed or negative.category != positive.category
                continue
            assert negative.category == positive.category
            if split in ATTRIBUTE_FAMILIES:
                assert changed == (split,)
            else:
                assert len(changed) == {"easy": 3, "medium": 2, "hard": 1}[split]


def test_all_splits_annotate_the_same_objects(small_set):
    _, paths = small_set
    objects = {}
    for split, path in paths.items():
        objects[split] = [(a["image_id"], a["bbox"], pos) for a, pos, _ in _annotations_with_specs(path)]
    assert all(objs == objects["trivial"] for objs in objects.values())


def test_deterministic_and_sets_do_not_share_scenes(tmp_path, small_set):
    _, paths = small_set
    again = write_benchmark(tmp_path / "again", set_name="val", n_images=8, width=160, height=120,
                            splits=("hard",), progress=False)
    assert again["hard"].read_bytes() == paths["hard"].read_bytes()
    test = write_benchmark(tmp_path / "test", set_name="test", n_images=8, width=160, height=120,
                           splits=("hard",), progress=False)
    val_seeds = {img["scene_seed"] for img in json.loads(paths["hard"].read_text())["images"]}
    test_seeds = {img["scene_seed"] for img in json.loads(test["hard"].read_text())["images"]}
    assert not val_seeds & test_seeds
    assert len(set(SET_SEEDS.values())) == 3
    assert all(is_held_out_seed(s) for s in val_seeds | test_seeds)
    assert not is_held_out_seed(SET_SEEDS["train"] + 5) and not is_held_out_seed(12345)


def test_make_fgovd_cli(tmp_path, capsys):
    assert make_main(["--out", str(tmp_path / "s"), "--set", "train", "--images", "2",
                      "--splits", "hard,pattern", "--width", "96", "--height", "96", "--no-progress"]) == 0
    assert "pattern" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s").glob("*.json")) == ["hard.json", "pattern.json"]
    assert json.loads((tmp_path / "s" / "hard.json").read_text())["info"]["seed"] == SET_SEEDS["train"]
    assert make_main(["--out", str(tmp_path / "t"), "--splits", "sizes", "--images", "1"]) == 2
