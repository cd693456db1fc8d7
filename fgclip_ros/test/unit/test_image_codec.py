# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Raw/compressed image decoding behaves as cv_bridge's conversion to rgb8 does, and rejects bad buffers."""

import array

import cv2
import numpy as np
import pytest

from fgclip_ros.core.image_codec import ImageDecodeError, decode_compressed, decode_raw, encode_rgb8


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def pack(pixels: np.ndarray, padding: int = 0) -> tuple[int, array.array]:
    """Rows of ``pixels`` as bytes with ``padding`` extra bytes per row, as rclpy delivers them."""
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    return padded.shape[1], array.array("B", padded.tobytes())


@pytest.mark.parametrize("padding", [0, 3])
def test_rgb8_is_a_zero_copy_view(rgb, padding):
    step, data = pack(rgb, padding)
    out = decode_raw(5, 7, "rgb8", step, data)
    np.testing.assert_array_equal(out, rgb)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("padding", [0, 2])
def test_bgr8_swaps_channels(rgb, padding):
    step, data = pack(np.ascontiguousarray(rgb[:, :, ::-1]), padding)
    np.testing.assert_array_equal(decode_raw(5, 7, "bgr8", step, data), rgb)


@pytest.mark.parametrize("padding", [0, 4])
def test_rgba8_drops_alpha_without_copy(rgb, padding):
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 17, np.uint8)], axis=2)
    step, data = pack(rgba, padding)
    out = decode_raw(5, 7, "rgba8", step, data)
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


def test_bgra8_swaps_and_drops_alpha(rgb):
    bgra = np.concatenate([rgb[:, :, ::-1], np.zeros((5, 7, 1), np.uint8)], axis=2)
    step, data = pack(bgra, 1)
    np.testing.assert_array_equal(decode_raw(5, 7, "bgra8", step, data), rgb)


def test_mono8_replicates_grey(rgb):
    grey = rgb[:, :, 0].copy()
    step, data = pack(grey, 5)
    out = decode_raw(5, 7, "mono8", step, data)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_scales_like_cv_bridge(bigendian):
    values = np.array([[0, 1, 128, 257], [32896, 65280, 65534, 65535]], dtype=np.uint16)
    raw = values.astype(">u2" if bigendian else "<u2")
    step, data = pack(raw, 2)
    out = decode_raw(2, 4, "mono16", step, data, is_bigendian=bigendian)
    # cv_bridge: convertTo(CV_8U, 255/65535) = round-half-even-free saturating rounding of v*255/65535
    expected = np.array([[0, 0, 0, 1], [128, 254, 255, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(out[:, :, 1], expected)


def test_accepts_bytes_and_numpy_buffers(rgb):
    step, data = pack(rgb)
    np.testing.assert_array_equal(decode_raw(5, 7, "rgb8", step, bytes(data)), rgb)
    np.testing.assert_array_equal(decode_raw(5, 7, "rgb8", step, np.frombuffer(data, np.uint8)), rgb)


@pytest.mark.parametrize(
    "height,width,encoding,step,nbytes,reason",
    [
        (5, 7, "bayer_rggb8", 7, 35, "unsupported_encoding"),
        (5, 7, "32FC1", 28, 140, "unsupported_encoding"),
        (5, 7, "", 21, 105, "unsupported_encoding"),
        (0, 7, "rgb8", 21, 0, "bad_size"),
        (5, -1, "rgb8", 21, 105, "bad_size"),
        (5, 7, "rgb8", 20, 100, "bad_step"),
        (5, 7, "mono16", 15, 75, "bad_step"),
        (5, 7, "rgb8", 21, 104, "bad_data_length"),
        (5, 7, "rgb8", 21, 106, "bad_data_length"),
        (5, 7, "rgb8", 21, 0, "bad_data_length"),
    ],
)
def test_rejects_with_a_reason(height, width, encoding, step, nbytes, reason):
    with pytest.raises(ImageDecodeError) as info:
        decode_raw(height, width, encoding, step, bytes(nbytes))
    assert info.value.reason == reason
    assert str(info.value)


def test_png_roundtrip_is_exact(rgb):
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_compressed("png", array.array("B", png.tobytes())), rgb)


def test_jpeg_decodes_to_rgb():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = (250, 10, 10)  # red left half
    image[:, 16:] = (10, 10, 250)  # blue right half
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = decode_compressed("rgb8; jpeg compressed bgr8", jpeg.tobytes())
    assert out.shape == (32, 32, 3)
    assert out[16, 4, 0] > 200 and out[16, 4, 2] < 60
    assert out[16, 28, 2] > 200 and out[16, 28, 0] < 60


def test_grey_png_becomes_three_channels():
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    ok, png = cv2.imencode(".png", grey)
    out = decode_compressed("png", png.tobytes())
    assert out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out[:, :, 2], grey)


@pytest.mark.parametrize(
    "fmt,payload,reason",
    [
        ("jpeg", b"", "bad_data_length"),
        ("jpeg", b"GIF89a not an image", "unsupported_format"),
        ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
        ("16UC1; compressedDepth png", b"\x89PNG\r\n\x1a\n", "unsupported_format"),
    ],
)
def test_compressed_rejects_with_a_reason(fmt, payload, reason):
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(fmt, payload)
    assert info.value.reason == reason


def test_encode_rgb8_roundtrips(rgb):
    height, width, encoding, step, data = encode_rgb8(rgb)
    np.testing.assert_array_equal(decode_raw(height, width, encoding, step, data), rgb)
