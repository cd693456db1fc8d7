# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Pipeline: boxes of a frame are cropped, encoded, re-projected and matched to the right query."""

import copy
import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fgclip_ros.core.crops import crop_batch_cpu
from fgclip_ros.core.pipeline import Pipeline
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}
TEMPLATE = "a photo of a {} thing"


def _colour_strip() -> np.ndarray:
    """96 x 32 RGB image: a red, a green and a blue 32 x 32 square side by side."""
    return np.concatenate([np.full((32, 32, 3), rgb, np.uint8) for rgb in COLOURS.values()], axis=1)


def _linear_head_mapping(raw: torch.Tensor, dim: int) -> Head:
    """A linear head sending row k of `raw` exactly to the k-th unit vector (least-norm solution)."""
    targets = torch.eye(dim)[: raw.shape[0]]
    head = Head("linear", dim)
    with torch.no_grad():
        head.layers[0].weight.copy_(targets.T @ torch.linalg.pinv(raw.double().T).float())
        head.layers[0].bias.zero_()
    return head


@pytest.fixture(scope="module")
def colour_heads(tiny_clip, tiny_transform):
    return make_colour_heads(tiny_clip, tiny_transform)


def make_colour_heads(tiny_clip, tiny_transform) -> ReprojectionHeads:
    """Heads under which a solid colour crop and its colour's prompt become the same unit vector.

    The raw embeddings are computed here independently of the pipeline: open_clip's own
    preprocess of a solid colour picture, the model's encode_image / encode_text.
    """
    from conftest import make_tiny_tokenizer

    pictures = torch.stack([tiny_transform(Image.new("RGB", (50, 40), rgb)) for rgb in COLOURS.values()])
    tokenizer = make_tiny_tokenizer()
    with torch.no_grad():
        raw_images = tiny_clip.encode_image(pictures)
        raw_texts = tiny_clip.encode_text(tokenizer([TEMPLATE.format(c) for c in COLOURS]))
    dim = raw_images.shape[1]
    return ReprojectionHeads(_linear_head_mapping(raw_images, dim), _linear_head_mapping(raw_texts, dim))


def test_each_box_gets_its_colour_and_bad_boxes_are_reported(tiny_encoder, colour_heads):
    pipeline = Pipeline(tiny_encoder, colour_heads, prompt_template=TEMPLATE)
    pipeline.set_queries(["red", "green", "blue"])
    boxes = np.array([
        [66, 3, 93, 29],              # blue square
        [10, 10, 10, 20],             # zero width
        [2, 4, 30, 28],               # red square
        [np.nan, 0, 5, 5],            # NaN
        [35, 1, 62, 31],              # green square
        [200, 200, 300, 300],         # outside the 96 x 32 image
    ])
    frame = pipeline.process(_colour_strip(), boxes)

    assert frame.check.valid.tolist() == [True, False, True, False, True, False]
    assert set(frame.check.reasons) == {1, 3, 5}
    assert frame.queries == ["red", "green", "blue"]
    assert frame.match.best_index.tolist() == [2, 0, 1]
    assert frame.row_of_box().tolist() == [0, -1, 1, -1, 2, -1]
    np.testing.assert_allclose(frame.match.best_score, 1.0, atol=1e-3)
    np.testing.assert_allclose(frame.match.margin, 1.0, atol=1e-3)
    assert set(frame.timings_ms) == {"crop", "encode", "match"}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_scores_equal_a_direct_computation(tiny_encoder, kind):
    torch.manual_seed(3)
    dim = tiny_encoder.embed_dim
    heads = ReprojectionHeads(Head(kind, dim), Head(kind, dim))
    pipeline = Pipeline(tiny_encoder, heads, prompt_template="{}", context_scale=1.5)
    queries = ["a striped cat", "a wooden chair", "glass"]
    pipeline.set_queries(queries)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 40, 30], [30, 10, 79, 59], [0, 0, 80, 60]], dtype=np.float64)
    frame = pipeline.process(image, boxes)

    crops, _ = crop_batch_cpu(image, boxes, tiny_encoder.preprocess, context_scale=1.5)
    with torch.no_grad():
        img = heads.visual(tiny_encoder.encode_images(torch.from_numpy(crops)).float())
        txt = heads.text(tiny_encoder.encode_texts(queries).float())
    img = img / img.norm(dim=1, keepdim=True)
    txt = txt / txt.norm(dim=1, keepdim=True)
    expected = (img @ txt.T).numpy()
    np.testing.assert_allclose(frame.match.scores, expected, atol=1e-5)
    assert frame.match.best_index.tolist() == expected.argmax(axis=1).tolist()
    logits = tiny_encoder.logit_scale * expected
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(frame.match.probs, probs / probs.sum(axis=1, keepdims=True), atol=1e-4)

    embeddings, check = pipeline.embed_crops(image, boxes)
    assert check.valid.all()
    torch.testing.assert_close(embeddings, img, atol=1e-5, rtol=1e-5)


def test_empty_queries_and_empty_boxes(tiny_encoder):
    pipeline = Pipeline(tiny_encoder)
    image = np.zeros((40, 40, 3), np.uint8)
    frame = pipeline.process(image, np.array([[0, 0, 20, 20]]))
    assert frame.match.scores.shape == (1, 0) and frame.match.best_index.tolist() == [-1]

    pipeline.set_queries(["a thing", "another thing"])
    frame = pipeline.process(image, np.zeros((0, 4)))
    assert frame.match.scores.shape == (0, 2) and frame.check.valid.shape == (0,)
    frame = pipeline.process(image, [])
    assert frame.match.scores.shape == (0, 2)

    frame = pipeline.process(image, np.array([[50, 50, 60, 60]]))  # only a rejected box
    assert frame.match.scores.shape == (0, 2) and frame.check.reasons


def test_queries_are_encoded_once(tiny_encoder):
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(tiny_encoder, name)

        def encode_texts(self, texts):
            calls.append(list(texts))
            return tiny_encoder.encode_texts(texts)

    pipeline = Pipeline(Counting())
    pipeline.set_queries(["a", "b"])
    image = np.zeros((40, 40, 3), np.uint8)
    for _ in range(3):
        pipeline.process(image, np.array([[0, 0, 20, 20]]))
    pipeline.set_queries(["a", "b"])
    assert calls == [["a", "b"]]
    pipeline.set_queries(["a", "b"], template="the {}")
    assert calls[-1] == ["the a", "the b"]


def test_min_score_turns_weak_matches_into_no_match(tiny_encoder, colour_heads):
    pipeline = Pipeline(tiny_encoder, colour_heads, prompt_template=TEMPLATE)
    pipeline.set_queries(["red", "blue"])
    frame = pipeline.process(_colour_strip(), np.array([[2, 2, 30, 30], [34, 2, 62, 30]]), min_score=0.5)
    assert frame.match.best_index.tolist() == [0, -1]  # no "green" query: the green square matches nothing
    lenient = pipeline.process(_colour_strip(), np.array([[34, 2, 62, 30]]), min_score=-1.0)
    assert lenient.match.best_index[0] >= 0


def test_heads_must_fit_the_encoder(tiny_encoder):
    with pytest.raises(ValueError, match="-d"):
        Pipeline(tiny_encoder, ReprojectionHeads.identity(tiny_encoder.embed_dim + 1))
    with pytest.raises(ValueError, match="image must be"):
        Pipeline(tiny_encoder).process(np.zeros((4, 4), np.uint8), np.zeros((0, 4)))


@pytest.mark.parametrize("heads_source", ["path", "url"])
def test_from_manifest(tmp_path, monkeypatch, tiny_clip, tiny_model_config_json, colour_heads, heads_source):
    from conftest import TINY_ARCHITECTURE

    monkeypatch.setenv("FGCLIP_ROS_CACHE", str(tmp_path / "cache"))
    torch.save(tiny_clip.state_dict(), tmp_path / "tiny.pt")
    save_heads(colour_heads, tmp_path / "heads.pt")
    if heads_source == "path":
        heads_spec = "{path: heads.pt}"
    else:  # a file:// URL goes through the download + sha256 + cache path without a network
        sha = hashlib.sha256((tmp_path / "heads.pt").read_bytes()).hexdigest()
        heads_spec = f"{{url: '{(tmp_path / 'heads.pt').as_uri()}', sha256: {sha}}}"
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(
        f"architecture: {TINY_ARCHITECTURE}\nmodel_config: {{path: {tiny_model_config_json.name}}}\n"
        "weights: {path: tiny.pt}\ninput_size: 32\nembed_dim: 32\n"
        f'prompt_template: "{TEMPLATE}"\n'
        f"reprojection: {{kind: linear, sides: both, file: {heads_spec}}}\n"
    )
    pipeline = Pipeline.from_manifest(str(manifest))
    if heads_source == "url":
        assert (tmp_path / "cache" / sha[:16] / "heads.pt").is_file()
    assert pipeline.name == "tiny" and pipeline.heads.sides == "both"
    pipeline.set_queries(list(COLOURS))
    frame = pipeline.process(_colour_strip(), np.array([[66, 3, 93, 29], [2, 4, 30, 28]]))
    assert frame.match.best_index.tolist() == [2, 0]
    assert math.isclose(pipeline.logit_scale, float(tiny_clip.logit_scale.detach().exp()), rel_tol=1e-5)


def test_fast_path_wiring_gives_the_crop_path_answers(tiny_encoder, colour_heads):
    # The CUDA fast path's code run eagerly on the CPU: same boxes, scores and embeddings as the
    # crop path (Pillow bicubic vs roi_align bilinear differ slightly), context_scale followed.
    heads = copy.deepcopy(colour_heads)
    slow = Pipeline(tiny_encoder, heads, prompt_template=TEMPLATE)
    fast = Pipeline(tiny_encoder, heads, prompt_template=TEMPLATE, gpu_fast_path=True)
    boxes = np.array([[66, 3, 93, 29], [2, 4, 30, 28], [0, 0, 96, 32], [10, 10, 10, 20]])
    for scale in (1.0, 1.5):
        for pipeline in (slow, fast):
            pipeline.set_queries(list(COLOURS))
            pipeline.context_scale = scale
        a, b = slow.process(_colour_strip(), boxes), fast.process(_colour_strip(), boxes)
        assert a.check.valid.tolist() == b.check.valid.tolist() == [True, True, True, False]
        np.testing.assert_allclose(b.check.boxes, a.check.boxes)
        np.testing.assert_allclose(a.match.scores, b.match.scores, atol=0.05)
        assert b.match.best_index[:2].tolist() == [2, 0] and set(b.timings_ms) == {"crop_encode_match"}
        (ea, _), (eb, _) = slow.embed_crops(_colour_strip(), boxes), fast.embed_crops(_colour_strip(), boxes)
        assert (ea * eb).sum(1).min() > 0.99
    assert fast.process(_colour_strip(), np.zeros((0, 4))).match.scores.shape == (0, len(COLOURS))
    fast.set_queries([])
    assert fast.process(_colour_strip(), boxes).match.best_index.tolist() == [-1, -1, -1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pipeline_agrees_with_cpu(tiny_encoder, tiny_encoder_factory, colour_heads):
    cpu = Pipeline(tiny_encoder, colour_heads, prompt_template=TEMPLATE)
    # Pipeline moves the heads to the encoder's device (in place), so the GPU one gets its own copy.
    gpu = Pipeline(tiny_encoder_factory(device="cuda"), copy.deepcopy(colour_heads), prompt_template=TEMPLATE)
    boxes = np.array([[66, 3, 93, 29], [2, 4, 30, 28], [0, 0, 96, 32], [10, 10, 10, 20]])
    for pipeline in (cpu, gpu):
        pipeline.set_queries(list(COLOURS))
    a, b = cpu.process(_colour_strip(), boxes), gpu.process(_colour_strip(), boxes)
    assert a.check.valid.tolist() == b.check.valid.tolist()
    # Crops differ slightly (Pillow bicubic vs roi_align bilinear); scores must stay close.
    np.testing.assert_allclose(a.match.scores, b.match.scores, atol=0.05)
    assert a.match.best_index[:2].tolist() == b.match.best_index[:2].tolist() == [2, 0]
    assert gpu.fused and "crop_encode_match" in b.timings_ms  # the CUDA-graph fast path ran
    embeddings, check = gpu.embed_crops(_colour_strip(), boxes)
    assert embeddings.device.type == "cuda" and embeddings.shape == (3, gpu.encoder.embed_dim)
    # The node changes context_scale at run time; the fast path must follow it.
    for pipeline in (cpu, gpu):
        pipeline.context_scale = 1.5
    a, b = cpu.process(_colour_strip(), boxes), gpu.process(_colour_strip(), boxes)
    np.testing.assert_allclose(b.check.boxes, a.check.boxes)
    np.testing.assert_allclose(a.match.scores, b.match.scores, atol=0.05)


def test_warmup_leaves_the_gpu_path_to_prepare_on_the_first_real_frame(tiny_encoder, colour_heads):
    # The node warms up at configure; on the fast path that must not prepare (capture) for a
    # made-up image size, or the camera's first frame would prepare everything again.
    fast = Pipeline(tiny_encoder, copy.deepcopy(colour_heads), prompt_template=TEMPLATE, gpu_fast_path=True)
    slow = Pipeline(tiny_encoder, copy.deepcopy(colour_heads), prompt_template=TEMPLATE)
    fast.warmup()
    slow.warmup()
    assert fast.prepared_frame_hw is None
    fast.set_queries(list(COLOURS))
    fast.process(_colour_strip(), np.array([[2, 4, 30, 28]]))
    assert fast.prepared_frame_hw == _colour_strip().shape[:2]
    # The node's image_size parameter prepares a known camera size up front instead.
    fast.prepare_frames(width=640, height=480)
    assert fast.prepared_frame_hw == (480, 640)
    slow.prepare_frames(width=640, height=480)  # no fast path: nothing to prepare
    assert slow.prepared_frame_hw is None
