# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The image size a PNG or JPEG declares in its header, read without decoding (a few bytes per call).

PNG: the first chunk after the 8-byte signature is IHDR; width and height are its first two
big-endian 32-bit fields. JPEG: the segments after SOI are walked by their 16-bit lengths up to
the first start-of-frame marker (SOF0-SOF15 except DHT C4, JPG C8 and DAC CC), whose payload holds
precision (1 byte), height and width (16 bit each). A decoder allocates the declared size, so the
node checks it first: a few hundred bytes can declare gigabytes.
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])  # TEM, RST0-7, SOI: no length field
_END_OF_HEADERS = frozenset([0xD9, 0xDA])  # EOI, SOS: no frame header can follow


def declared_size(data) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header; None when the header is missing or cut off."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if bytes(view[:8]) == PNG_SIGNATURE:
        return _png_size(view)
    if bytes(view[:2]) == b"\xff\xd8":
        return _jpeg_size(view)
    return None


def _png_size(view: memoryview) -> tuple[int, int] | None:
    if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
        return None
    return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")


def _jpeg_size(view: memoryview) -> tuple[int, int] | None:
    position, size = 2, len(view)
    while position + 4 <= size:
        if view[position] != 0xFF:
            return None
        marker = view[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker in _END_OF_HEADERS:
            return None
        length = int.from_bytes(view[position + 2 : position + 4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if position + 9 > size:
                return None
            height = int.from_bytes(view[position + 5 : position + 7], "big")
            width = int.from_bytes(view[position + 7 : position + 9], "big")
            return width, height
        position += 2 + length
    return None
