# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Raw/compressed image decoding behaves as cv_bridge's conversion to rgb8 does, and rejects bad buffers."""

import array

import cv2
import numpy as np
import pytest
from hostile import jpeg_declaring, png_bomb, png_header_only
from hypothesis import given, settings
from hypothesis import strategies as st

from fgclip_ros.core.image_codec import (
    DEFAULT_MAX_IMAGE_PIXELS,
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_raw,
    encode_rgb8,
)
from fgclip_ros.core.image_header import declared_size


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


# ----------------------------------------------------------------------------- hostile payloads
def test_the_declared_size_is_read_from_the_header():
    ok, png = cv2.imencode(".png", np.zeros((5, 7, 3), np.uint8))
    ok, jpeg = cv2.imencode(".jpg", np.zeros((9, 11, 3), np.uint8))
    assert declared_size(png.tobytes()) == (7, 5)
    assert declared_size(jpeg.tobytes()) == (11, 9)
    assert declared_size(jpeg_declaring(65500, 65500)) == (65500, 65500)
    assert declared_size(png_header_only(30000, 30000)) == (30000, 30000)
    assert declared_size(b"\xff\xd8\xff\xe0\x00") is None
    assert declared_size(b"not an image") is None


@pytest.mark.parametrize(
    "payload",
    [jpeg_declaring(65500, 65500), png_header_only(30000, 30000), png_bomb(9000, 9000)],
    ids=["jpeg-65500", "png-header-30000", "png-9000"],
)
def test_decompression_bombs_are_refused_before_decoding(payload):
    # 65500^2 px made OpenCV raise cv2.error (CV_IO_MAX_IMAGE_PIXELS); smaller ones were decoded in full.
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed("jpeg", payload)
    assert info.value.reason == "too_large"
    assert str(DEFAULT_MAX_IMAGE_PIXELS) in info.value.detail


def test_the_pixel_limit_is_a_parameter():
    ok, png = cv2.imencode(".png", np.zeros((100, 100, 3), np.uint8))
    assert decode_compressed("png", png.tobytes(), max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageDecodeError, match="too_large"):
        decode_compressed("png", png.tobytes(), max_pixels=9_999)
    with pytest.raises(ImageDecodeError, match="too_large"):
        decode_raw(100, 100, "rgb8", 300, bytes(30_000), max_pixels=9_999)
    assert decode_raw(100, 100, "rgb8", 300, bytes(30_000), max_pixels=10_000).shape == (100, 100, 3)


def test_a_corrupt_stream_after_a_valid_header_is_corrupt_not_a_crash():
    ok, jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
    data = jpeg.tobytes()
    for cut in (len(data) // 4, len(data) // 2):
        try:
            decode_compressed("jpeg", data[:cut])
        except ImageDecodeError as exc:
            assert exc.reason == "corrupt"


def test_a_png_bomb_does_not_raise_peak_memory():
    # 12000 x 12000 RGB = 432 MB decoded, ~0.5 MB on the wire; peak RSS must not follow the declared size.
    script = (
        "import resource, sys\n"
        "from fgclip_ros.core.image_codec import ImageDecodeError, decode_compressed\n"
        "payload = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    decode_compressed('png', payload)\n"
        "except ImageDecodeError as exc:\n"
        "    print(exc.reason)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".png") as bomb:
        bomb.write(png_bomb(12000, 12000))
        bomb.flush()
        run = subprocess.run(
            [sys.executable, "-c", script, bomb.name], capture_output=True, text=True, timeout=120
        )
    assert run.returncode == 0, run.stderr
    *reasons, growth_mb = run.stdout.split()
    assert reasons == ["too_large"]
    assert int(growth_mb) < 200, f"peak RSS grew by {growth_mb} MB"


raw_fields = st.fixed_dictionaries(
    {
        "height": st.integers(-2, 70000),
        "width": st.integers(-2, 70000),
        "encoding": st.sampled_from([*SUPPORTED_ENCODINGS, "yuv422", "", "RGB8 ", "32FC1"]),
        "step": st.integers(-1, 300000),
        "data": st.binary(max_size=600),
        "is_bigendian": st.integers(0, 255),
    }
)


@settings(max_examples=300, deadline=None)
@given(raw_fields)
def test_any_raw_image_decodes_or_is_refused_with_a_reason(fields):
    try:
        out = decode_raw(max_pixels=1_000_000, **fields)
    except ImageDecodeError as exc:
        assert exc.reason in {"unsupported_encoding", "bad_size", "bad_step", "bad_data_length", "too_large"}
        return
    assert out.shape == (fields["height"], fields["width"], 3) and out.dtype == np.uint8


def _mutations():
    ok, jpeg = cv2.imencode(".jpg", np.full((24, 32, 3), 90, np.uint8))
    ok, png = cv2.imencode(".png", np.full((24, 32, 3), 90, np.uint8))
    seeds = [jpeg.tobytes(), png.tobytes(), jpeg_declaring(65500, 65500), png_header_only(30000, 30000)]

    @st.composite
    def mutate(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 6))):
            index = draw(st.integers(0, len(data) - 1))
            data[index] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data)))])

    return mutate()


@settings(max_examples=300, deadline=None)
@given(_mutations(), st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"]))
def test_any_compressed_payload_decodes_or_is_refused_with_a_reason(payload, fmt):
    try:
        out = decode_compressed(fmt, payload, max_pixels=1_000_000)
    except ImageDecodeError as exc:
        assert exc.reason in {"unsupported_format", "bad_data_length", "corrupt", "too_large"}
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[0] * out.shape[1] <= 1_000_000
