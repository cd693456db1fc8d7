# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ROS-free decoding of raw and compressed image buffers into RGB ``HxWx3 uint8`` arrays.

cv_bridge is not on PyPI, so this module does what ``cv_bridge.imgmsg_to_cv2(msg, "rgb8")`` and
``compressed_imgmsg_to_cv2(msg, "rgb8")`` do for the encodings the node accepts:

- ``rgb8``: returned as a view on the message buffer (no copy), row padding (``step``) included.
- ``rgba8``: a view that drops the alpha channel (no copy; alpha is ignored, not premultiplied).
- ``bgr8`` / ``bgra8``: one copy with the channels swapped.
- ``mono8``: one copy, the grey value replicated into R, G and B.
- ``mono16``: one copy, scaled to 8 bit by 255/65535 with rounding (cv_bridge's 16 -> 8 bit rule),
  honouring ``is_bigendian``.
- compressed JPEG / PNG: ``cv2.imdecode`` (grey and alpha images become 3-channel RGB).

Both refuse images above ``max_pixels`` (default: 8K UHD, 7680 x 4320) with reason ``too_large``;
compressed ones on the size their header declares (``core.image_header``), before decoding, so a
decompression bomb costs a few bytes of parsing instead of gigabytes of memory.

Everything else (Bayer, YUV, float depth images, ...) and any buffer whose ``step`` / size / data
length disagree raises :class:`ImageDecodeError`, whose ``reason`` is a short stable key the node
counts (``unsupported_encoding``, ``bad_size``, ``bad_step``, ``bad_data_length``, ``too_large``,
``corrupt``, ...).
Views keep the caller's buffer alive and must be treated as read-only.
"""

from __future__ import annotations

import cv2
import numpy as np

from fgclip_ros.core.image_header import declared_size

DEFAULT_MAX_IMAGE_PIXELS = 7680 * 4320  # 8K UHD: above any camera the node is meant for

# encoding -> (bytes per channel, channels)
_LAYOUTS: dict[str, tuple[int, int]] = {
    "rgb8": (1, 3),
    "bgr8": (1, 3),
    "rgba8": (1, 4),
    "bgra8": (1, 4),
    "mono8": (1, 1),
    "mono16": (2, 1),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
SUPPORTED_COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into an RGB array; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _as_bytes_view(data) -> np.ndarray:
    """A flat uint8 view on bytes / bytearray / array.array('B') / memoryview / ndarray, without copying."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        # rclpy never delivers lists, but hand-built messages in tests or scripts may
        return np.asarray(data, dtype=np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(
            "bad_data", f"image data of type {type(data).__name__} is not a byte buffer"
        ) from exc


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"{what} is {width}x{height} = {width * height} px, above max_image_pixels {max_pixels}",
        )


def decode_raw(
    height: int,
    width: int,
    encoding: str,
    step: int,
    data,
    is_bigendian: bool | int = False,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode a ``sensor_msgs/Image``-style buffer into an RGB ``HxWx3 uint8`` array.

    ``rgb8`` and ``rgba8`` return views on ``data`` (zero-copy); other encodings return a new array.
    Raises :class:`ImageDecodeError` for unsupported encodings and inconsistent layouts.
    """
    layout = _LAYOUTS.get(encoding.strip().lower() if isinstance(encoding, str) else "")
    if layout is None:
        raise ImageDecodeError(
            "unsupported_encoding",
            f"encoding {encoding!r} is not supported (use one of {', '.join(SUPPORTED_ENCODINGS)})",
        )
    encoding = encoding.strip().lower()
    itemsize, channels = layout
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError("bad_size", f"image size {width}x{height} is empty or negative")
    _check_pixels(width, height, max_pixels, "image")
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step", f"step {step} is smaller than width*channels*bytes = {row_bytes} for {encoding}"
        )
    if step % itemsize:
        raise ImageDecodeError(
            "bad_step", f"step {step} is not a multiple of {itemsize} bytes for {encoding}"
        )
    flat = _as_bytes_view(data)
    if flat.size != step * height:
        raise ImageDecodeError(
            "bad_data_length",
            f"data has {flat.size} bytes, expected step*height = {step}*{height} = {step * height}",
        )

    if itemsize == 1:
        # Strided view: rows start every `step` bytes, the padding at the end of each row is skipped.
        pixels = np.lib.stride_tricks.as_strided(
            flat, shape=(height, width, channels), strides=(step, channels, 1), writeable=False
        )
    else:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels = np.ndarray(
            shape=(height, width, channels),
            dtype=dtype,
            buffer=flat,
            strides=(step, channels * itemsize, itemsize),
        )

    if encoding == "rgb8":
        return pixels
    if encoding == "rgba8":
        return pixels[:, :, :3]
    if encoding == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2RGB)
    if encoding == "mono8":
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), cv2.COLOR_GRAY2RGB)
    # mono16: cv_bridge converts 16 -> 8 bit with convertTo(scale=255/65535), i.e. rounded, saturated.
    grey16 = pixels[:, :, 0].astype(np.float32)
    grey8 = np.clip(np.rint(grey16 * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey8, cv2.COLOR_GRAY2RGB)


def decode_compressed(  # noqa: A002 - `format` mirrors the message field name
    format: str, data, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` payload (JPEG or PNG) into an RGB ``HxWx3 uint8`` array.

    The container is recognised by its magic bytes; ``format`` only serves to reject payloads that
    are not colour/grey images (e.g. ``compressedDepth``). Raises :class:`ImageDecodeError`.
    """
    fmt = (format or "").lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError("unsupported_format", f"format {format!r}: depth images are not supported")
    flat = _as_bytes_view(data)
    if flat.size == 0:
        raise ImageDecodeError("bad_data_length", "compressed image has no data")
    head = flat[:8].tobytes()
    if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
        raise ImageDecodeError(
            "unsupported_format",
            f"format {format!r}: data is neither JPEG nor PNG (first bytes {head[:4].hex()})",
        )
    size = declared_size(flat)
    if size is None or 0 in size:
        raise ImageDecodeError(
            "corrupt", f"format {format!r}: no image size in the header of {flat.size} bytes"
        )
    _check_pixels(*size, max_pixels, f"format {format!r}: the declared size")
    try:
        bgr = cv2.imdecode(flat, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header OpenCV refuses, or a stream cut off mid-way
        raise ImageDecodeError("corrupt", f"format {format!r}: OpenCV refused it: {exc.err}") from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        raise ImageDecodeError("corrupt", f"format {format!r}: OpenCV could not decode {flat.size} bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_rgb8(image_rgb: np.ndarray) -> tuple[int, int, str, int, bytes]:
    """The inverse for publishing: RGB ``HxWx3 uint8`` -> (height, width, "rgb8", step, data)."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"expected an HxWx3 uint8 array, got shape {image_rgb.shape} dtype {image_rgb.dtype}"
        )
    height, width = image_rgb.shape[:2]
    return height, width, "rgb8", width * 3, np.ascontiguousarray(image_rgb).tobytes()
