# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Crops: parity with open_clip's own preprocess, CPU/torch agreement, box validation, context scale."""

import warnings
from dataclasses import asdict

import numpy as np
import open_clip
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from fgclip_ros.core.crops import (
    REASON_NON_FINITE,
    REASON_NON_POSITIVE,
    REASON_OUTSIDE,
    REASON_TOO_SMALL,
    Preprocess,
    crop_batch_cpu,
    crop_batch_torch,
    validate_boxes,
)

CLIP_PREPROCESS = Preprocess(224, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Integer boxes in a 240 x 320 frame: square, tall, wide, upscaled (small) and downscaled (large) ones,
# one touching the image border.
INTEGER_BOXES = np.array([
    [100, 60, 164, 124],
    [20, 30, 70, 150],
    [150, 100, 310, 160],
    [200, 10, 217, 22],
    [0, 0, 320, 240],
    [5, 120, 270, 239],
], dtype=np.float64)
# Detectors emit sub-pixel boxes; both paths must place them the same way.
FRACTIONAL_BOXES = INTEGER_BOXES + np.array([0.3, 0.7, -0.4, -0.2])


@pytest.fixture(scope="module")
def textured_image() -> np.ndarray:
    """Deterministic frame with detail at several scales and hard edges (so resampling errors show)."""
    rng = np.random.default_rng(7)
    height, width = 240, 320
    image = np.zeros((height, width, 3), np.float32)
    for cell in (3, 11, 40):
        noise = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        upsampled = torch.nn.functional.interpolate(
            torch.from_numpy(noise).permute(2, 0, 1)[None], scale_factor=cell, mode="bicubic")
        smooth = upsampled[0].permute(1, 2, 0).numpy()
        image += smooth[:height, :width]
    image = image / 3 * 190
    yy, xx = np.mgrid[0:height, 0:width]
    image[((xx // 17 + yy // 13) % 2) == 0] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


def open_clip_reference(image: np.ndarray, boxes: np.ndarray, model_size: int = 224) -> np.ndarray:
    """What the paper's pipeline feeds CLIP: PIL crop of each box, then open_clip's eval transform."""
    transform = image_transform_v2(PreprocessCfg(size=model_size), is_train=False)
    frame = Image.fromarray(image)
    return np.stack([transform(frame.crop(tuple(int(v) for v in box))).numpy() for box in boxes])


def fgovd_reference(image: np.ndarray, boxes: np.ndarray, model_size: int = 224) -> np.ndarray:
    """FG-OVD's crops of sub-pixel boxes: PIL crop of (floor x1, y1, ceil x2, y2), then the eval transform."""
    transform = image_transform_v2(PreprocessCfg(size=model_size), is_train=False)
    frame = Image.fromarray(image)
    pixel = [(np.floor(x0), np.floor(y0), np.ceil(x1), np.ceil(y1)) for x0, y0, x1, y1 in boxes]
    return np.stack([transform(frame.crop(tuple(int(v) for v in box))).numpy() for box in pixel])


def to_pixel_units(normalised_diff: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Differences of normalised values back in 0..255 pixel units (per channel std)."""
    std = np.asarray(preprocess.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.abs(normalised_diff) * std * 255.0


def test_cpu_path_matches_open_clip_preprocess(textured_image):
    batch, check = crop_batch_cpu(textured_image, INTEGER_BOXES, CLIP_PREPROCESS)
    reference = open_clip_reference(textured_image, INTEGER_BOXES)
    assert batch.shape == reference.shape == (len(INTEGER_BOXES), 3, 224, 224)
    assert batch.dtype == np.float32 and check.valid.all()
    error = to_pixel_units(batch - reference, CLIP_PREPROCESS)
    # Same Pillow bicubic filter on the same sub-region: only the float placement of the kept region
    # can flip a uint8 rounding, so at most one grey level anywhere (measured: max 1, mean 0.0003).
    assert error.mean() < 0.05
    assert error.max() <= 1.0 + 1e-3


def test_sub_pixel_boxes_are_cropped_as_their_whole_pixel_box(textured_image):
    batch, check = crop_batch_cpu(textured_image, FRACTIONAL_BOXES, CLIP_PREPROCESS)
    reference = fgovd_reference(textured_image, FRACTIONAL_BOXES)
    error = to_pixel_units(batch - reference, CLIP_PREPROCESS)
    # The same whole-pixel crop through the same Pillow filter: at most one grey level anywhere.
    assert error.mean() < 0.05 and error.max() <= 1.0 + 1e-3
    np.testing.assert_array_equal(check.boxes, np.concatenate(
        [np.floor(FRACTIONAL_BOXES[:, :2]), np.ceil(FRACTIONAL_BOXES[:, 2:])], axis=1))


def test_crop_boxes_snap_outwards_to_whole_pixels_and_clamp():
    check = validate_boxes([[10.3, 5.7, 50.2, 40.01], [300.5, 200.5, 330.0, 250.0], [-3.2, -0.5, 7.5, 9.0]],
                           (240, 320))
    np.testing.assert_array_equal(check.boxes, [[10, 5, 51, 41], [300, 200, 320, 240], [0, 0, 8, 9]])
    # Context scaling happens before the snap: 2x of [100.5, 60, 140.5, 100] is [80.5, 40, 160.5, 120].
    scaled = validate_boxes([[100.5, 60, 140.5, 100]], (240, 320), context_scale=2.0)
    np.testing.assert_array_equal(scaled.boxes, [[80, 40, 161, 120]])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("boxes", [INTEGER_BOXES, FRACTIONAL_BOXES], ids=["integer", "fractional"])
def test_torch_path_agrees_with_cpu_path(textured_image, tiny_encoder, device, boxes):
    cpu_batch, cpu_check = crop_batch_cpu(textured_image, boxes, CLIP_PREPROCESS)
    frame = torch.from_numpy(textured_image).to(device)
    torch_batch, torch_check = crop_batch_torch(frame, boxes, CLIP_PREPROCESS)
    assert torch_batch.device.type == device and torch_batch.dtype == torch.float32
    np.testing.assert_array_equal(cpu_check.valid, torch_check.valid)
    np.testing.assert_allclose(cpu_check.boxes, torch_check.boxes)
    error = to_pixel_units(torch_batch.cpu().numpy() - cpu_batch, CLIP_PREPROCESS)
    # roi_align is bilinear with box-averaged supersampling, Pillow bicubic with a wider antialias
    # kernel: on this deliberately hard texture they differ by 1.4-1.9 grey levels per crop on average
    # (measured); allow 3.
    per_crop_mean = error.mean(axis=(1, 2, 3))
    assert per_crop_mean.max() < 3.0, per_crop_mean

    # What matters downstream: the same embedding. Crops at the tiny model's input size.
    small_cpu, _ = crop_batch_cpu(textured_image, boxes, tiny_encoder.preprocess)
    small_torch, _ = crop_batch_torch(frame, boxes, tiny_encoder.preprocess)
    cosine = torch.nn.functional.cosine_similarity(
        tiny_encoder.encode_images(small_cpu), tiny_encoder.encode_images(small_torch.cpu()))
    # Measured >= 0.9998. For scale, with this random tiny model two different boxes give 0.86-0.99
    # and the same boxes shifted by 4 px 0.97-0.999.
    assert cosine.min() > 0.999, cosine


def test_degenerate_boxes_are_rejected_with_reasons(textured_image):
    boxes = np.array([
        [10, 10, 50, 50],                  # fine
        [np.nan, 10, 50, 50],              # NaN
        [10, 10, np.inf, 50],              # inf
        [30, 10, 30, 50],                  # zero width
        [30, 50, 60, 20],                  # negative height
        [400, 300, 500, 400],              # fully outside (right/below)
        [-50, -50, -10, -5],               # fully outside (left/above)
        [319.5, 10, 330, 50],              # overlaps by half a pixel: under min_size after clamping
        [100, 100, 300, 300],              # partly outside: clamped, kept
    ])
    expected = {1: REASON_NON_FINITE, 2: REASON_NON_FINITE, 3: REASON_NON_POSITIVE, 4: REASON_NON_POSITIVE,
                5: REASON_OUTSIDE, 6: REASON_OUTSIDE, 7: REASON_TOO_SMALL}
    for batch, check in (crop_batch_cpu(textured_image, boxes, CLIP_PREPROCESS),
                         crop_batch_torch(torch.from_numpy(textured_image), boxes, CLIP_PREPROCESS)):
        assert sorted(check.reasons) == sorted(expected)
        for index, reason in expected.items():
            assert check.reasons[index].startswith(reason), (index, check.reasons[index])
        np.testing.assert_array_equal(check.indices, [0, 8])
        assert batch.shape[0] == 2 and np.isfinite(np.asarray(batch)).all()
        np.testing.assert_allclose(check.boxes, [[10, 10, 50, 50], [100, 100, 300, 240]])


def test_context_scale_grows_about_the_centre_and_clamps():
    check = validate_boxes([[40, 40, 60, 80], [0, 0, 20, 20], [300, 200, 320, 240]], (240, 320),
                           context_scale=2.0)
    assert check.valid.all()
    np.testing.assert_allclose(check.boxes, [[30, 20, 70, 100], [0, 0, 30, 30], [290, 180, 320, 240]])
    shrunk = validate_boxes([[40, 40, 60, 80]], (240, 320), context_scale=0.5)
    np.testing.assert_allclose(shrunk.boxes, [[45, 50, 55, 70]])
    with pytest.raises(ValueError):
        validate_boxes([[0, 0, 1, 1]], (240, 320), context_scale=0.0)


def test_context_scale_crop_equals_crop_of_the_enlarged_box(textured_image):
    scaled, _ = crop_batch_cpu(textured_image, [[100, 60, 140, 100]], CLIP_PREPROCESS, context_scale=2.0)
    explicit, _ = crop_batch_cpu(textured_image, [[80, 40, 160, 120]], CLIP_PREPROCESS)
    np.testing.assert_array_equal(scaled, explicit)
    frame = torch.from_numpy(textured_image)
    scaled_t, _ = crop_batch_torch(frame, [[100, 60, 140, 100]], CLIP_PREPROCESS, context_scale=2.0)
    explicit_t, _ = crop_batch_torch(frame, [[80, 40, 160, 120]], CLIP_PREPROCESS)
    torch.testing.assert_close(scaled_t, explicit_t)


@pytest.mark.parametrize("empty", [np.zeros((0, 4)), [], np.zeros((0,))])
def test_empty_boxes_give_an_empty_batch(textured_image, empty):
    batch, check = crop_batch_cpu(textured_image, empty, CLIP_PREPROCESS)
    assert batch.shape == (0, 3, 224, 224) and batch.dtype == np.float32
    assert check.valid.shape == (0,) and check.boxes.shape == (0, 4) and not check.reasons
    batch_t, check_t = crop_batch_torch(torch.from_numpy(textured_image), empty, CLIP_PREPROCESS)
    assert batch_t.shape == (0, 3, 224, 224) and check_t.valid.shape == (0,)


def test_all_boxes_rejected_gives_an_empty_batch(textured_image):
    batch, check = crop_batch_cpu(textured_image, [[5, 5, 5, 5]], CLIP_PREPROCESS)
    assert batch.shape == (0, 3, 224, 224) and not check.valid.any() and 0 in check.reasons


def test_preprocess_reads_the_models_size_and_normalisation(tiny_clip):
    preprocess = Preprocess.from_open_clip(tiny_clip)
    assert preprocess.size == 32
    assert preprocess.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert preprocess.std == pytest.approx(open_clip.OPENAI_DATASET_STD)

    from conftest import make_tiny_clip

    model = make_tiny_clip(seed=1)
    cfg = PreprocessCfg(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    open_clip.set_model_preprocess_cfg(model, asdict(cfg))
    assert Preprocess.from_open_clip(model) == Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_cpu_path_normalises_with_the_given_mean_and_std():
    flat = np.full((40, 40, 3), (255, 0, 128), dtype=np.uint8)
    preprocess = Preprocess(8, (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    batch, _ = crop_batch_cpu(flat, [[0, 0, 40, 40]], preprocess)
    np.testing.assert_allclose(batch[0, :, 4, 4], [1.0, -2.0, (128 / 255 - 0.5) / 0.5], atol=1e-6)


def test_wrong_box_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="xyxy"):
        validate_boxes(np.zeros((4, 5)), (240, 320))


def test_wrong_image_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="uint8"):
        crop_batch_cpu(np.zeros((10, 10, 3), np.float32), [[0, 0, 5, 5]], CLIP_PREPROCESS)
    with pytest.raises(ValueError, match="uint8"):
        crop_batch_torch(torch.zeros((3, 10, 10), dtype=torch.uint8), [[0, 0, 5, 5]], CLIP_PREPROCESS)


@settings(max_examples=300, deadline=None)
@given(
    boxes=st.lists(st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=64)] * 4), max_size=20),
    height=st.integers(1, 5000),
    width=st.integers(1, 5000),
    context_scale=st.floats(0.1, 4.0),
)
def test_any_boxes_are_kept_inside_the_image_or_rejected_with_a_reason(boxes, height, width, context_scale):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hostile box must not spam numpy warnings into the node's log
        check = validate_boxes(np.array(boxes, np.float64).reshape(-1, 4), (height, width), context_scale)
    assert check.valid.shape == (len(boxes),)
    assert set(check.reasons) == set(np.flatnonzero(~check.valid).tolist())
    assert all(check.reasons.values())
    kept = check.boxes
    assert kept.shape == (int(check.valid.sum()), 4) and np.isfinite(kept).all()
    assert (kept[:, 0] >= 0).all() and (kept[:, 2] <= width).all() and (kept[:, 3] <= height).all()
    assert ((kept[:, 2:] - kept[:, :2]) >= 1.0).all()
