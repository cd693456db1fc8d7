# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Training of the embedded model and of re-projection heads (fgclip_ros.training), on the CPU.

The base-model smoke run trains a tiny config for a few steps; nothing here retrains fgsynth.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fgclip_ros.synth.vocab import ATTRIBUTE_FAMILIES, CATEGORIES, FAMILY_VALUES, ObjectSpec
from fgclip_ros.training import data, probes
from fgclip_ros.training import reprojection as rp

TINY_TRAIN_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tokenizer():
    import open_clip

    return open_clip.SimpleTokenizer(context_length=24)


@pytest.fixture(scope="module")
def labels():
    return data.render_crops(seed=3, stream=0, index=0, count=48, size=32, scene_fraction=0.5)[1]


# ----------------------------------------------------------------------------------- data



def _spec_of_labels(row) -> ObjectSpec:
    """The spec a label row encodes (the inverse of data.spec_labels; extra columns ignored)."""
    names = data.LABEL_COLUMNS[:-1]
    return ObjectSpec(**{name: data.LABEL_VALUES[name][int(row[i])] for i, name in enumerate(names)})

def test_caption_tokens_are_what_the_tokenizer_gives(tokenizer, labels):
    builder = data.CaptionBuilder(tokenizer, 24)
    generator = torch.Generator().manual_seed(0)
    styles = [data.CaptionStyle(), data.CaptionStyle(1.0, 1.0, 1.0), data.CaptionStyle(0.0, 0.0, 0.0)]
    for style in styles:
        choices = builder.sample_choices(torch.from_numpy(labels), style, generator)
        texts = builder.texts(choices)
        assert torch.equal(builder.tokens(choices), tokenizer(texts))
    # Full captions are exactly the benchmark's captions.
    choices = builder.sample_choices(torch.from_numpy(labels), data.CaptionStyle(full_prob=1.0), generator)
    assert builder.texts(choices) == [_spec_of_labels(row).caption() for row in labels]


def test_biased_captions_name_the_category_always_and_attributes_sometimes(tokenizer):
    rng = np.random.default_rng(0)
    n = 4000
    labels = np.stack([rng.integers(len(v), size=n) for v in data.LABEL_VALUES.values()], axis=1)
    builder = data.CaptionBuilder(tokenizer, 24)
    choices = builder.sample_choices(
        torch.from_numpy(labels), data.CaptionStyle(attribute_prob=0.25), torch.Generator().manual_seed(1)
    )
    texts = builder.texts(choices)
    assert all(CATEGORIES[row[0]] in text.split() for row, text in zip(labels, texts))
    named = np.mean((choices[:, builder.SLOTS.index("material")] >= 0).numpy())
    assert 0.2 < named < 0.3


def test_loosely_named_attributes_are_the_true_or_the_next_value(tokenizer):
    rng = np.random.default_rng(2)
    n = 4000
    labels = np.stack([rng.integers(len(v), size=n) for v in data.LABEL_VALUES.values()], axis=1)
    builder = data.CaptionBuilder(tokenizer, 24)
    style = data.CaptionStyle(attribute_prob=1.0, attribute_true_prob=0.3)
    choices = builder.sample_choices(torch.from_numpy(labels), style, torch.Generator().manual_seed(3))
    column = data.LABEL_COLUMNS.index("color")
    said = choices[:, builder.SLOTS.index("color")].numpy()
    size = len(data.LABEL_VALUES["color"])
    offset = (said - labels[:, column]) % size
    assert set(np.unique(offset)) <= {0, 1}
    assert 0.25 < np.mean(offset == 0) < 0.35
    # Full captions stay exact whatever the looseness.
    exact = builder.sample_choices(
        torch.from_numpy(labels), data.CaptionStyle(full_prob=1.0, attribute_true_prob=0.0),
        torch.Generator().manual_seed(4))
    assert np.array_equal(exact[:, builder.SLOTS.index("color")].numpy(), labels[:, column])


def test_render_crops_are_deterministic_and_streams_differ():
    a_images, a_labels = data.render_crops(seed=1, stream=0, index=5, count=6, size=32, scene_fraction=0.5)
    b_images, b_labels = data.render_crops(seed=1, stream=0, index=5, count=6, size=32, scene_fraction=0.5)
    c_images, _ = data.render_crops(seed=1, stream=1, index=5, count=6, size=32, scene_fraction=0.5)
    assert a_images.shape == (6, 32, 32, 3) and a_images.dtype == np.uint8
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    assert not np.array_equal(a_images, c_images)
    for column, name in enumerate(data.LABEL_COLUMNS[:-1]):
        assert ((0 <= a_labels[:, column]) & (a_labels[:, column] < len(data.LABEL_VALUES[name]))).all()


def test_training_scenes_avoid_the_benchmark_val_and_test_seeds(monkeypatch):
    from fgclip_ros.synth import benchmark

    draws = iter([benchmark.SET_SEEDS["test"] + 5, benchmark.SET_SEEDS["val"], 7])

    class FakeRng:
        def integers(self, high):
            return next(draws)

    assert data.training_scene_seed(FakeRng()) == 7


def test_augment_without_zoom_or_flip_keeps_pixels():
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    same = data.augment(images, generator, min_scale=1.0, flip=False)
    assert torch.allclose(same, images.permute(0, 3, 1, 2).float() / 255)
    moved = data.augment(images, generator, min_scale=0.7, flip=True)
    assert moved.shape == (4, 3, 16, 16) and 0 <= float(moved.min()) and float(moved.max()) <= 1


def test_crop_pool_is_a_ring_buffer():
    pool = data.CropPool(capacity=5, size=2, device=torch.device("cpu"))
    for start in (0, 3, 6):
        images = torch.arange(start, start + 3, dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 2, 2, 3)
        pool.add(images, torch.arange(start, start + 3).view(3, 1).expand(3, len(data.LABEL_COLUMNS)))
    assert pool.filled == 5 and pool.added == 9
    assert sorted(pool.labels[:, 0].tolist()) == [4, 5, 6, 7, 8]  # the oldest were overwritten
    images, labels = pool.sample(20, torch.Generator().manual_seed(0))
    assert torch.equal(images[:, 0, 0, 0].long(), labels[:, 0])  # crops and labels stay paired


class _BrokenRenderer(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise ValueError("renderer broke")


def test_background_feeder_reports_render_failures_instead_of_hanging():
    feeder = data.ChunkFeeder(data.chunk_loader(_BrokenRenderer(), workers=0), mode="async")
    with pytest.raises(RuntimeError, match="renderer broke"):
        feeder.next_blocking()
    feeder.close()


# ----------------------------------------------------------------------------------- probes


def test_linear_probe_finds_separable_labels_and_not_random_ones():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=generator)
    features = F.one_hot(labels, 4).float() * 3 + torch.randn(400, 4, generator=generator) * 0.3
    features = torch.cat([features, torch.randn(400, 12, generator=generator)], 1)
    assert probes.linear_probe_accuracy(features[:200], labels[:200], features[200:], labels[200:], 4) > 0.95
    shuffled = labels[torch.randperm(400, generator=generator)]
    chance = probes.linear_probe_accuracy(features[:200], shuffled[:200], features[200:], shuffled[200:], 4)
    assert chance < 0.45


def _attribute_encoder():
    """A fake text encoder whose embedding is the one-hot code of every word of the caption."""
    vocab = [w for values in [CATEGORIES, *FAMILY_VALUES.values()] for w in values]

    def encode(texts):
        out = torch.zeros(len(texts), len(vocab))
        for row, text in enumerate(texts):
            for word in text.split():
                if word in vocab:
                    out[row, vocab.index(word)] = 1.0
        return out

    return encode, vocab


def test_hard_negative_check_ranks_a_perfect_and_a_blind_model():
    encode, vocab = _attribute_encoder()
    _, labels = data.render_crops(seed=0, stream=0, index=0, count=30, size=32, scene_fraction=0.0)
    captions = [_spec_of_labels(row).caption() for row in labels]
    perfect = probes.hard_negative_check(encode(captions), labels, encode)
    assert perfect["rank_sum"] == pytest.approx(len(ATTRIBUTE_FAMILIES))
    assert perfect["category_accuracy"] == 1.0
    # Images that only show the category: every caption of a family ties, so the positive ranks last.
    category_only = encode([f"a {data.LABEL_VALUES['category'][row[0]]}" for row in labels])
    blind = probes.hard_negative_check(category_only, labels, encode)
    for family in ATTRIBUTE_FAMILIES:
        assert blind[f"rank_{family}"] == pytest.approx(len(FAMILY_VALUES[family]))
    assert blind["category_accuracy"] == 1.0


# ----------------------------------------------------------------------------------- base model


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    from fgclip_ros.training.base_model import BaseTrainConfig, train_base_model

    folder = tmp_path_factory.mktemp("train_base")
    config = folder / "fgsynth-test-tiny.json"
    config.write_text(json.dumps(TINY_TRAIN_CONFIG))
    runs = []
    for name in ("run_a", "run_b"):
        cfg = BaseTrainConfig(
            out_dir=str(folder / name),
            model_config=str(config),
            name="fgsynth-test-tiny",
            seed=5,
            batch_size=16,
            max_steps=6,
            warmup_steps=2,
            lr=2e-3,
            pool_size=64,
            chunk=16,
            workers=0,
            eval_images=32,
            eval_every_steps=3,
            log_every=2,
            progress=False,
        )
        runs.append(train_base_model(cfg))
    return config, runs


def test_base_training_smoke_run_saves_a_reloadable_model(tiny_training):
    from safetensors.torch import load_file

    from fgclip_ros.core.encoders import TorchEncoder

    config, (result, _) = tiny_training
    log = json.loads(result.log.read_text())
    assert log["complete"] and log["steps"] == 6
    assert all(np.isfinite(h["loss"]) for h in log["history"])
    assert set(log["final"]["probe"]) == {"category", *ATTRIBUTE_FAMILIES}
    assert len(log["evaluations"]) >= 2  # periodic + final
    assert json.loads(result.config.read_text()) == TINY_TRAIN_CONFIG
    encoder = TorchEncoder.from_open_clip("fgsynth-test-tiny", weights=result.weights, model_config=config)
    assert encoder.embed_dim == 16 and encoder.preprocess.size == 32
    crops = torch.randn(2, 3, 32, 32)
    assert torch.isfinite(encoder.encode_images(crops)).all()
    assert encoder.encode_texts(["a red mug"]).shape == (1, 16)
    # Saved as fp16 to keep the committed weights small.
    assert all(
        t.dtype == torch.float16 for t in load_file(str(result.weights)).values() if t.is_floating_point()
    )


def test_base_training_is_reproducible_from_the_seed(tiny_training):
    from safetensors.torch import load_file

    _, (first, second) = tiny_training
    a, b = load_file(str(first.weights)), load_file(str(second.weights))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lr_schedule_warms_up_then_decays():
    from fgclip_ros.training.base_model import lr_factor

    assert lr_factor(0, 0.0, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(20, 0.5, 10, 0.0) == pytest.approx(0.5)
    assert lr_factor(99, 1.0, 10, 0.02) == pytest.approx(0.02)


# ----------------------------------------------------------------------------------- re-projection


def _rotated_cache(n_objects=60, dim=8, n_negatives=5, seed=0) -> rp.EmbeddingCache:
    """Images z and captions R z (a fixed rotation): cosine is near chance, a linear head can fix it."""
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(n_objects, dim, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    negatives = torch.stack(
        [torch.tensor([(i + 1 + k) % n_objects for k in range(n_negatives)]) for i in range(n_objects)]
    )
    return rp.EmbeddingCache(
        image=latent,
        valid=torch.ones(n_objects, dtype=torch.bool),
        text=latent @ rotation.T,
        captions=[f"caption {i}" for i in range(n_objects)],
        crop=torch.arange(n_objects),
        positive=torch.arange(n_objects),
        negatives=negatives,
        split=torch.zeros(n_objects, dtype=torch.long),
        splits=["hard"],
        split_negatives=[n_negatives],
        image_id=torch.arange(n_objects),
    )


def test_triplet_loss_by_hand():
    image = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [0.99, 0.141]]])
    mask = torch.tensor([[1.0, 1.0]])
    # relu(0.05 - 1 + 0) = 0 and relu(0.05 - 1 + 0.99) = 0.04 -> mean 0.02
    assert rp.triplet_loss(image, positive, negatives, mask, 0.05) == pytest.approx(0.02)
    assert rp.triplet_loss(image, positive, negatives, torch.tensor([[1.0, 0.0]]), 0.05) == pytest.approx(0.0)


def test_identity_initialised_heads_start_at_cosine():
    cache = _rotated_cache()
    for kind in ("linear",):
        heads = rp.make_heads(kind, "both", 8, "identity")
        baseline = rp.evaluate_heads(rp.ReprojectionHeads.identity(8), cache)
        assert rp.evaluate_heads(heads, cache)["rank_sum"] == pytest.approx(baseline["rank_sum"])


@pytest.mark.parametrize("sides", ["both", "visual", "text"])
def test_heads_learn_what_cosine_misses(sides):
    train, val = _rotated_cache(seed=0), _rotated_cache(seed=0)
    cfg = rp.HeadTrainConfig(sides=sides, lr=5e-2, epochs=40, batch_size=16, patience=0, margin=0.2)
    result = rp.train_heads(train, val, cfg, progress=False)
    assert result.best["rank_sum"] < 0.6 * result.baseline["rank_sum"]
    assert result.heads.sides == sides
    assert result.best_epoch > 0


def test_early_stopping_keeps_the_best_epoch():
    train, val = _rotated_cache(seed=0), _rotated_cache(seed=0)
    # A huge learning rate makes later epochs worse; the kept heads are the best ones seen.
    cfg = rp.HeadTrainConfig(lr=5.0, epochs=12, batch_size=8, patience=2)
    result = rp.train_heads(train, val, cfg, progress=False)
    assert rp.evaluate_heads(result.heads, val)["rank_sum"] == pytest.approx(result.best["rank_sum"])
    assert len(result.history) <= 1 + cfg.epochs
    assert result.best["rank_sum"] == min(h["val"]["rank_sum"] for h in result.history)


def test_category_term_needs_categories():
    cache = _rotated_cache()
    with pytest.raises(ValueError, match="categories"):
        rp.train_heads(cache, cache, rp.HeadTrainConfig(category_weight=1.0), progress=False)


def test_annotation_categories_take_the_last_named_category():
    cache = _rotated_cache(n_objects=3)
    cache.captions = ["a mug on a box", "a box of cups", "a striped thing"]
    # Whole words only ("cups" is not "cup"); no category at all gives -1.
    assert rp.annotation_categories(cache, ["mug", "box", "cup", "ball"]).tolist() == [1, 1, -1]


@pytest.fixture
def tiny_model_manifest(tmp_path):
    """A manifest for a tiny, randomly initialised fgsynth-like model, saved as fgclip-train-base saves."""
    from fgclip_ros.training.base_model import build_model, save_weights

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_TRAIN_CONFIG))
    model, _ = build_model("fgsynth-test-tiny-reproj", config, seed=0, device=torch.device("cpu"))
    save_weights(model, tmp_path / "tiny.safetensors", "fp32")
    manifest = tmp_path / "tiny-cosine.yaml"
    manifest.write_text(
        "name: tiny-cosine\narchitecture: fgsynth-test-tiny-reproj\nmodel_config: {path: tiny.json}\n"
        "weights: {path: tiny.safetensors}\ninput_size: 32\nembed_dim: 16\n"
    )
    return manifest


def test_train_reprojection_cli_writes_heads_and_a_working_manifest_into_the_out_folder(
    tmp_path, tiny_model_manifest, monkeypatch
):
    from fgclip_ros.cli.train_reprojection import main
    from fgclip_ros.core.encoders import build_encoder
    from fgclip_ros.core.manifest import load_manifest
    from fgclip_ros.core.reprojection import load_heads
    from fgclip_ros.synth.benchmark import write_benchmark

    monkeypatch.setenv("FGCLIP_ROS_CACHE", str(tmp_path / "cache"))
    write_benchmark(tmp_path / "train", "train", n_images=4, progress=False)
    write_benchmark(tmp_path / "val", "val", n_images=2, progress=False)
    out_dir = tmp_path / "models"
    out = out_dir / "tiny_heads.pt"  # <name>_heads.pt, the name from --name
    manifest_out = out_dir / "tiny.yaml"  # <name>.yaml in --out
    args = [
        "--model",
        str(tiny_model_manifest),
        "--train",
        str(tmp_path / "train"),
        "--val",
        str(tmp_path / "val"),
        "--out",
        str(out_dir),
        "--name",
        "tiny",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--category-weight",
        "1.0",
        "--no-progress",
    ]
    assert main(args) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "tiny.yaml", "tiny_heads.pt", "tiny_heads_train.png", "tiny_heads_train_log.json"
    ]
    heads = load_heads(out, "linear", 16, sides="both")
    state = torch.load(out, weights_only=True)
    assert set(state) == {
        "linear_layers.0.0.weight",
        "linear_layers.0.0.bias",
        "linear_layers.1.0.weight",
        "linear_layers.1.0.bias",
    }
    manifest = load_manifest(manifest_out)
    assert (manifest.name, manifest.reprojection_kind, manifest.reprojection_sides) == (
        "tiny",
        "linear",
        "both",
    )
    encoder = build_encoder(manifest)  # the encoder files resolve from the new manifest's folder
    with torch.inference_mode():
        assert heads.project_images(encoder.encode_images(torch.randn(1, 3, 32, 32))).shape == (1, 16)
    log = json.loads(Path(f"{out.with_suffix('')}_train_log.json").read_text())
    assert log["categories"] == list(CATEGORIES) and "category_accuracy" in log["baseline"]
    assert Path(f"{out.with_suffix('')}_train.png").stat().st_size > 0
    # The frozen embeddings were cached: a second run reuses them (the cache files stay untouched).
    caches = sorted((tmp_path / "cache" / "reprojection").glob("*.pt"))
    assert len(caches) == 2
    stamps = [p.stat().st_mtime_ns for p in caches]
    assert main(args + ["--sides", "visual"]) == 0
    assert [p.stat().st_mtime_ns for p in caches] == stamps
    assert set(torch.load(out, weights_only=True)) == {"linear_layers.0.0.weight", "linear_layers.0.0.bias"}
