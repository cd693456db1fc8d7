# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""FG-OVD's rank rule: first L negatives, short annotations skipped, L from the benchmark, exact ties.

Also the chance level and the gap closed.

Facts (../shared/FGCLIP-FACTS.md): L = 10 for six splits, Pattern 7, Transparency 2; the published
files hold Easy 1,299 annotations all with 10 negatives, Pattern 467 (320 with 7, 137 with 8, 10
with 10), Transparency 409 (1 with 1, 377 with 2, 19 with 4, 5 with 6, 7 with 8). Chance 42.5,
perfect 8. Rank = captions (positive included) scoring >= the positive.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fgclip_ros.core.crops import crop_batch_cpu
from fgclip_ros.core.reprojection import Head, ReprojectionHeads
from fgclip_ros.evaluation import ranks
from fgclip_ros.evaluation.fgovd import (
    BenchmarkError,
    _Annotation,
    evaluate_fgovd,
    find_split_files,
    score_split,
)
from fgclip_ros.synth.benchmark import write_benchmark
from fgclip_ros.training import reprojection as rp

# Negatives per annotation in the published test files, as (count, annotations).
REAL_SHAPE = {
    "easy": [(10, 1299)],
    "pattern": [(7, 320), (8, 137), (10, 10)],
    "transparency": [(1, 1), (2, 377), (4, 19), (6, 5), (8, 7)],
}
FILE_NAMES = {"trivial": "shuffle_negatives.json", "easy": "3_attributes.json", "medium": "2_attributes.json",
              "hard": "1_attributes.json", "color": "color.json", "material": "material.json",
              "pattern": "pattern.json", "transparency": "transparency.json"}
FACT_L = {"trivial": 10, "easy": 10, "medium": 10, "hard": 10, "color": 10, "material": 10, "pattern": 7,
          "transparency": 2}
N_BOXES = 40
N_CAPTIONS = 60


@pytest.fixture(scope="module")
def real_shaped(tmp_path_factory):
    """The eight FG-OVD files under their published names, no ``info`` (as published), one image."""
    root = tmp_path_factory.mktemp("fgovd_real")
    rng = np.random.default_rng(11)
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(root / "000001.png")
    boxes = [[float(x), float(y), float(w), float(h)] for x, y, w, h in
             zip(rng.integers(0, 200, N_BOXES), rng.integers(0, 150, N_BOXES),
                 rng.integers(20, 110, N_BOXES), rng.integers(20, 80, N_BOXES))]
    categories = [{"id": i + 1, "name": f"a caption number {i}"} for i in range(N_CAPTIONS)]
    for split, file_name in FILE_NAMES.items():
        shape = REAL_SHAPE.get(split, [(10, 30)])
        annotations = []
        for count, how_many in shape:
            for _ in range(how_many):
                ids = rng.choice(N_CAPTIONS, size=count + 1, replace=False) + 1
                annotations.append({"id": len(annotations) + 1, "image_id": 1,
                                    "bbox": boxes[len(annotations) % N_BOXES], "category_id": int(ids[0]),
                                    "neg_category_ids": [int(i) for i in ids[1:]]})
        rng.shuffle(annotations)
        data = {"images": [{"id": 1, "file_name": "000001.png", "width": 320, "height": 240}],
                "annotations": annotations, "categories": categories}
        (root / file_name).write_text(json.dumps(data))
    return root


def _independent_mean_rank(path, encoder, count):
    """What FG-OVD computes, from scratch: first `count` negatives, shorter annotations skipped."""
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    image = np.asarray(Image.open(path.parent / "000001.png").convert("RGB"))
    boxes = sorted({tuple(ann["bbox"]) for ann in data["annotations"]})
    xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes])
    crops, _ = crop_batch_cpu(image, xyxy, encoder.preprocess)
    with torch.no_grad():
        box_vectors = dict(zip(boxes, F.normalize(encoder.encode_images(crops).double(), dim=-1)))
        caption_ids = sorted(names)
        caption_vectors = dict(zip(caption_ids, F.normalize(
            encoder.encode_texts([names[i] for i in caption_ids]).double(), dim=-1)))
    ranked, skipped = [], 0
    for ann in data["annotations"]:
        if len(ann["neg_category_ids"]) < count:
            skipped += 1
            continue
        v = box_vectors[tuple(ann["bbox"])]
        kept = [ann["category_id"], *ann["neg_category_ids"][:count]]
        scores = [float(caption_vectors[i] @ v) for i in kept]
        ranked.append(sum(score >= scores[0] for score in scores))
    return float(np.mean(ranked)), len(ranked), skipped


def test_real_shaped_files_follow_the_first_l_rule(real_shaped, tiny_encoder):
    files = find_split_files([real_shaped])
    assert list(files) == list(FILE_NAMES)
    result = evaluate_fgovd(files, tiny_encoder, {"cosine": None}, progress=False)["cosine"]
    for split in ("easy", "pattern", "transparency"):
        got = result.splits[split]
        expected, ranked, skipped = _independent_mean_rank(files[split], tiny_encoder, FACT_L[split])
        assert got.negatives == FACT_L[split]
        assert (got.annotations, got.skipped) == (ranked, skipped)
        assert got.mean_rank == pytest.approx(expected, abs=1e-9)
        assert got.chance_mean_rank == 1 + FACT_L[split] / 2
    assert result.splits["pattern"].annotations == 467 and result.splits["transparency"].annotations == 408
    assert result.splits["easy"].annotations == 1299
    assert result.complete
    assert result.chance_mean_rank_sum == pytest.approx(42.5)
    assert result.perfect_mean_rank_sum == 8


def test_fgovd_chance_and_perfect_mean_rank_sums():
    assert ranks.chance_mean_rank_sum(ranks.FGOVD_NEGATIVES) == pytest.approx(42.5)
    assert ranks.FGOVD_NEGATIVES == FACT_L
    assert ranks.PERFECT_MEAN_RANK * len(ranks.FGOVD_NEGATIVES) == 8


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("fgsynth_rule") / "test"
    write_benchmark(out, set_name="test", n_images=3, width=128, height=96, n_objects=(2, 3), progress=False)
    return out


def test_synthetic_sets_record_their_own_l_and_no_split_is_skipped(synthetic_set, tiny_encoder):
    result = evaluate_fgovd(find_split_files([synthetic_set]), tiny_encoder, {"cosine": None},
                            progress=False)["cosine"]
    for split, split_result in result.splits.items():
        data = json.loads((synthetic_set / f"{split}.json").read_text())
        held = {len(ann["neg_category_ids"]) for ann in data["annotations"]}
        assert held == {data["info"]["negatives"]}
        assert split_result.negatives == data["info"]["negatives"]
        assert split_result.annotations == len(data["annotations"]) and split_result.skipped == 0
    # The world has 4 patterns: 3 negatives, fewer than FG-OVD's 7.
    assert result.splits["pattern"].negatives == 3
    assert result.chance_mean_rank_sum == pytest.approx(
        sum(1 + s.negatives / 2 for s in result.splits.values()))


def test_a_split_that_would_be_skipped_wholesale_is_an_error(synthetic_set, tmp_path, tiny_encoder):
    data = json.loads((synthetic_set / "pattern.json").read_text())
    del data["info"]["negatives"]  # now FG-OVD's L = 7 applies, and every annotation has 3
    (tmp_path / "pattern.json").write_text(json.dumps(data))
    (tmp_path / "images").symlink_to(synthetic_set / "images")
    with pytest.raises(BenchmarkError, match="info.negatives"):
        evaluate_fgovd({"pattern": tmp_path / "pattern.json"}, tiny_encoder, {"cosine": None}, progress=False)
    with pytest.raises(BenchmarkError, match="info.negatives"):
        rp.build_cache({"pattern": tmp_path / "pattern.json"}, tiny_encoder, progress=False)


def test_gap_closed_per_split_and_for_the_mrs(synthetic_set, tiny_encoder):
    torch.manual_seed(3)
    heads = ReprojectionHeads(Head("linear", 32), Head("linear", 32)).eval()
    results = evaluate_fgovd(find_split_files([synthetic_set]), tiny_encoder,
                             {"cosine": None, "linear": heads}, progress=False)
    cosine, linear = results["cosine"], results["linear"]
    assert cosine.gap_closed is None and all(s.gap_closed is None for s in cosine.splits.values())
    for split, result in linear.splits.items():
        before = cosine.splits[split].mean_rank
        if before > 1:
            assert result.gap_closed == pytest.approx((before - result.mean_rank) / (before - 1))
    assert linear.gap_closed == pytest.approx(
        (cosine.mean_rank_sum - linear.mean_rank_sum) / (cosine.mean_rank_sum - 8))


# ----------------------------------------------------------------------------------- exact ties


def _identical_negative_table(n_annotations=300, dim=512, n_negatives=10, seed=0):
    """Each positive's negatives are other captions with exactly the positive's embedding."""
    generator = torch.Generator().manual_seed(seed)
    vectors = F.normalize(torch.randn(n_annotations, dim, generator=generator), dim=-1)
    images = F.normalize(vectors + 0.3 * torch.randn(n_annotations, dim, generator=generator), dim=-1)
    text_rows, annotations = {}, []
    texts = []
    for i in range(n_annotations):
        names = [f"caption {i}.{k}" for k in range(n_negatives + 1)]
        for name in names:
            text_rows[name] = len(texts)
            texts.append(vectors[i])
        annotations.append(_Annotation(crop=i, positive=names[0], negatives=names[1:]))
    return annotations, images, torch.stack(texts), text_rows


def test_identical_embeddings_tie_exactly_in_the_evaluator():
    annotations, images, texts, rows = _identical_negative_table()
    stats = score_split(annotations, images, np.ones(len(images), bool), texts, rows, 10)
    assert stats["mean_rank"] == 11.0 and stats["median_rank"] == 11.0  # every row: 11 of 11


def test_identical_embeddings_tie_exactly_in_the_training_validation():
    annotations, images, texts, rows = _identical_negative_table()
    cache = rp.EmbeddingCache(
        image=images, valid=torch.ones(len(images), dtype=torch.bool), text=texts, captions=list(rows),
        crop=torch.arange(len(images)), positive=torch.tensor([rows[a.positive] for a in annotations]),
        negatives=torch.tensor([[rows[n] for n in a.negatives] for a in annotations]),
        split=torch.zeros(len(images), dtype=torch.long), splits=["hard"], split_negatives=[10],
        image_id=torch.arange(len(images)))
    assert rp.evaluate_heads(ReprojectionHeads.identity(512), cache)["mean_rank"]["hard"] == 11.0


def test_ranks_do_not_depend_on_caption_order():
    generator = torch.Generator().manual_seed(5)
    image = F.normalize(torch.randn(200, 512, generator=generator), dim=-1)
    positive = F.normalize(image + 0.5 * torch.randn(200, 512, generator=generator), dim=-1)
    negatives = F.normalize(image[:, None] + 0.5 * torch.randn(200, 10, 512, generator=generator), dim=-1)
    negatives[:, ::3] = positive[:, None]  # some exact ties among ordinary negatives
    reference, _, _ = ranks.embedding_ranks(image, positive, negatives)
    for seed in range(3):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(seed))
        rows = torch.randperm(200, generator=torch.Generator().manual_seed(seed))
        shuffled, _, _ = ranks.embedding_ranks(image[rows], positive[rows], negatives[rows][:, order])
        assert torch.equal(shuffled, reference[rows])
    # The four exact ties count against the positive; the six others as their scores say.
    others = negatives[:, [1, 2, 4, 5, 7, 8]].double().numpy()
    v, p = image.double().numpy(), positive.double().numpy()
    expected = 1 + 4 + (np.einsum("akd,ad->ak", others, v) >= np.einsum("ad,ad->a", p, v)[:, None]).sum(1)
    np.testing.assert_array_equal(reference.numpy(), expected)
