# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The FG-OVD evaluator: hand-computed ranks (with ties), and end to end on a tiny synthetic set."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_ARCHITECTURE
from PIL import Image

from fgclip_ros.cli.eval_fgovd import main as eval_main
from fgclip_ros.core.crops import crop_batch_cpu
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads
from fgclip_ros.evaluation import ranks
from fgclip_ros.evaluation.fgovd import (
    BenchmarkError,
    _Annotation,
    category_accuracy,
    evaluate_fgovd,
    find_split_files,
    score_split,
)
from fgclip_ros.synth.benchmark import write_benchmark
from fgclip_ros.synth.vocab import VOCABULARY


def test_rank_counts_ties_against_the_positive():
    assert ranks.positive_rank(0.5, [0.2, 0.5, 0.7]) == 3  # the tie at 0.5 and 0.7 both beat it
    assert ranks.positive_rank(0.9, [0.1, 0.3]) == 1
    assert ranks.positive_rank(0.4, [0.4, 0.4, 0.4, 0.1]) == 4
    assert ranks.positive_rank(0.4, []) == 1
    assert ranks.chance_mean_rank(10) == 6.0 and ranks.chance_mean_rank(2) == 2.0


def _table(score_rows):
    """Embeddings whose dot products are exactly the given scores (one image per row of scores)."""
    captions, text_rows, annotations, image_rows = {}, [], [], []
    for i, (positive, negatives) in enumerate(score_rows):
        names = []
        for score in [positive, *negatives]:
            name = f"caption {len(captions)}"
            captions[name] = len(captions)
            text_rows.append([score, 0.0])
            names.append(name)
        annotations.append(_Annotation(crop=i, positive=names[0], negatives=names[1:]))
        image_rows.append([1.0, 0.0])
    return annotations, torch.tensor(image_rows), torch.tensor(text_rows), captions


def test_split_statistics_match_a_hand_computed_example():
    annotations, images, texts, rows = _table([
        (0.5, [0.2, 0.5, 0.7]),  # rank 3 (tie + one higher), best negative 0.7
        (0.9, [0.1, 0.3]),  # rank 1, best negative 0.3
        (0.4, [0.4, 0.4, 0.4, 0.1]),  # rank 4 (three ties), best negative 0.4
        (0.8, [0.3]),  # its box was rejected: skipped
    ])
    annotations.append(_Annotation(crop=0, positive="caption 0", negatives=[]))  # no negatives: skipped
    valid = np.array([True, True, True, False])
    # L = 2: each ranked against its first two negatives.
    stats = score_split(annotations, images, valid, texts, rows, 2)
    assert stats["negatives"] == 2 and stats["annotations"] == 3 and stats["skipped"] == 2
    assert stats["mean_rank"] == pytest.approx((2 + 1 + 3) / 3)  # [0.2, 0.5] -> 2, [0.1, 0.3] -> 1, ties -> 3
    assert stats["median_rank"] == 2.0
    assert stats["top1"] == pytest.approx(1 / 3)
    assert stats["mean_positive_score"] == pytest.approx((0.5 + 0.9 + 0.4) / 3)
    assert stats["mean_best_negative_score"] == pytest.approx((0.5 + 0.3 + 0.4) / 3)
    assert stats["chance_mean_rank"] == pytest.approx(1 + 2 / 2)
    # L = 3: the annotation with two negatives is skipped too.
    stats = score_split(annotations, images, valid, texts, rows, 3)
    assert stats["annotations"] == 2 and stats["skipped"] == 3
    assert stats["mean_rank"] == pytest.approx((3 + 4) / 2)
    assert stats["mean_best_negative_score"] == pytest.approx((0.7 + 0.4) / 2)
    # MRS of two splits with mean ranks 8/3 and 1.5.
    assert ranks.mean_rank_sum({"hard": stats["mean_rank"], "color": 1.5}) == pytest.approx(3.5 + 1.5)


def test_category_accuracy_by_hand():
    images = torch.eye(3)
    categories = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # Object 0 (true 0): its score 1 ties category 1 -> wrong. Object 1 (true 1): 0 vs 0 ties -> wrong.
    # Object 2 (true 2): 1 > 0 -> right.
    assert category_accuracy(images, categories, np.array([0, 1, 2])) == pytest.approx(1 / 3)
    assert category_accuracy(images, torch.eye(3), np.array([0, 1, 2])) == 1.0


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("fgeval") / "test"
    write_benchmark(out, set_name="test", n_images=3, width=128, height=96, n_objects=(2, 3), progress=False)
    return out


def _random_heads(seed: int, dim: int = 32) -> ReprojectionHeads:
    torch.manual_seed(seed)
    return ReprojectionHeads(Head("linear", dim), Head("linear", dim)).eval()


def test_end_to_end_matches_a_direct_computation(tiny_set, tiny_encoder):
    heads = _random_heads(0)
    variants = {"cosine": None, "identity": ReprojectionHeads.identity(32), "linear": heads}
    results = evaluate_fgovd(
        find_split_files([tiny_set]), tiny_encoder, variants, progress=False, vocabulary=VOCABULARY
    )
    assert results["cosine"].complete and len(results["cosine"].splits) == 8
    for name in variants:
        r = results[name]
        assert r.mean_rank_sum == pytest.approx(sum(s.mean_rank for s in r.splits.values()))
        assert 0.0 <= r.category_accuracy <= 1.0 and r.category_objects >= 6
        for split in r.splits.values():
            assert 1.0 <= split.mean_rank <= 1 + split.negatives
    # Identity heads are the cosine baseline.
    for split, result in results["cosine"].splits.items():
        assert results["identity"].splits[split].mean_rank == result.mean_rank

    # Recompute the hard split's ranks directly: crop, encode, project, rank.
    data = json.loads((tiny_set / "hard.json").read_text())
    images = {img["id"]: img for img in data["images"]}
    names = {cat["id"]: cat["name"] for cat in data["categories"]}
    expected = []
    for ann in data["annotations"]:
        path = tiny_set / images[ann["image_id"]]["file_name"]
        image = np.asarray(Image.open(path).convert("RGB"))
        x, y, w, h = ann["bbox"]
        crop, _ = crop_batch_cpu(image, np.array([[x, y, x + w, y + h]]), tiny_encoder.preprocess)
        with torch.no_grad():
            img = heads.project_images(tiny_encoder.encode_images(crop))[0]
            txt = heads.project_texts(tiny_encoder.encode_texts(
                [names[ann["category_id"]]] + [names[n] for n in ann["neg_category_ids"]]))
        scores = (txt @ img).numpy()
        expected.append(1 + int((scores[1:] >= scores[0]).sum()))
    assert results["linear"].splits["hard"].annotations == len(data["annotations"])
    assert results["linear"].splits["hard"].mean_rank == pytest.approx(np.mean(expected))


def test_fgovd_file_names_and_image_root(tmp_path, tiny_set, tiny_encoder):
    # The published layout: FG-OVD's file names, file_name relative to a COCO-like root.
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    data = json.loads((tiny_set / "hard.json").read_text())
    for img in data["images"]:
        shutil.copy(tiny_set / img["file_name"], tmp_path / "coco" / "val2017")
        img["file_name"] = "val2017/" + img["file_name"].split("/")[-1]
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "1_attributes.json").write_text(json.dumps(data))
    files = find_split_files([tmp_path / "bench"])
    assert list(files) == ["hard"]
    result = evaluate_fgovd(files, tiny_encoder, {"cosine": None}, image_root=tmp_path / "coco",
                            progress=False)
    direct = evaluate_fgovd({"hard": tiny_set / "hard.json"}, tiny_encoder, {"cosine": None}, progress=False)
    assert result["cosine"].splits["hard"].mean_rank == direct["cosine"].splits["hard"].mean_rank
    # Given the image folder itself instead of its parent also works (base-name fallback).
    deeper = evaluate_fgovd(files, tiny_encoder, {"cosine": None}, image_root=tmp_path / "coco" / "val2017",
                            progress=False)
    assert deeper["cosine"].splits["hard"].mean_rank == direct["cosine"].splits["hard"].mean_rank
    with pytest.raises(BenchmarkError, match="val2017"):
        evaluate_fgovd(files, tiny_encoder, {"cosine": None}, image_root=tmp_path, progress=False)


@pytest.fixture
def tiny_manifest(tmp_path, tiny_clip, tiny_model_config_json):
    torch.save(tiny_clip.state_dict(), tmp_path / "tiny.pt")
    save_heads(_random_heads(1), tmp_path / "heads.pt")
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"architecture: {TINY_ARCHITECTURE}\nmodel_config: {{path: {tiny_model_config_json.name}}}\n"
        "weights: {path: tiny.pt}\ninput_size: 32\nembed_dim: 32\n"
        "reprojection: {kind: linear, sides: both, file: {path: heads.pt}}\n")
    return path


def test_cli_writes_report_and_chart_into_the_out_folder(tmp_path, tiny_set, tiny_manifest, capsys):
    out_dir = tmp_path / "report"
    code = eval_main(["--model", str(tiny_manifest), "--benchmark", str(tiny_set), "--compare-cosine",
                      "--out", str(out_dir), "--no-progress", "-q"])
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["ranks.png", "report.json"]
    report = json.loads((out_dir / "report.json").read_text())
    assert set(report["variants"]) == {"cosine", "linear (both)"}
    for variant in report["variants"].values():
        assert set(variant["splits"]) == {"trivial", "easy", "medium", "hard", "color", "material", "pattern",
                                          "transparency"}
        assert variant["complete"] and variant["category_accuracy"] is not None
    assert (out_dir / "ranks.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "MRS" in printed and "category acc" in printed
    assert eval_main(["--model", str(tiny_manifest), "--benchmark", str(tmp_path / "nothing"), "-q"]) == 2
    assert eval_main(["--model", str(tiny_manifest), "--benchmark", str(tiny_set), "--splits", "hard,size",
                      "--out", str(out_dir), "-q"]) == 2



def test_benchmark_images_are_read_without_exif_rotation(tmp_path):
    # FG-OVD's boxes refer to the stored pixels (read with PIL, as the benchmark was made); an EXIF
    # orientation tag must not rotate them (OpenCV's imread would).
    from fgclip_ros.evaluation.fgovd import read_rgb

    stored = np.zeros((40, 100, 3), np.uint8)
    stored[:, :50] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    import cv2

    assert cv2.imread(str(path)).shape[:2] == (100, 40)  # the tag is there and a reader can honour it
    pixels = read_rgb(path)
    assert pixels.shape == (40, 100, 3) and pixels.dtype == np.uint8
    assert pixels[:, :40, 0].mean() > 200 and pixels[:, 60:, 0].mean() < 50
