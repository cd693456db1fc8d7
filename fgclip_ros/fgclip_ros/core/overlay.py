# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Debug overlay: boxes with their best query and probability drawn on a copy of the frame (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

from fgclip_ros.core.detection import MATCHED, REJECTED, DetectionResult

MATCHED_RGB = (40, 220, 40)
UNMATCHED_RGB = (230, 200, 40)
REJECTED_RGB = (230, 40, 40)
MAX_LABEL_CHARS = 48


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts only draw ASCII; other characters would come out as '?' glyph soup.
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def label_of(detection: DetectionResult) -> str:
    if not detection.valid:
        text = f"rejected: {detection.rejected_reason}"
    elif detection.best_index < 0:
        text = f"no match ({detection.score:.2f})"
    else:
        text = f"{detection.best_query} {detection.probability:.2f}"
    text = _ascii(text)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 3] + "..."


def draw_overlay(
    image_rgb: np.ndarray, detections: list[DetectionResult], box_scale: float = 1.0
) -> np.ndarray:
    """A new RGB image with each detection's box (clamped to the image; non-finite ones skipped) and label.

    ``box_scale``: how much larger the image is than the one the boxes are in (a magnified copy).
    """
    canvas = np.ascontiguousarray(image_rgb).copy()
    height, width = canvas.shape[:2]
    scale = max(0.35, min(1.0, width / 1280))
    thickness = 1 if width < 640 else 2
    for detection in detections:
        box = np.asarray(detection.box_xyxy, dtype=np.float64) * box_scale
        if not np.all(np.isfinite(box)):
            continue
        x1, y1, x2, y2 = (
            int(round(v))
            for v in (
                np.clip(box[0], 0, width - 1),
                np.clip(box[1], 0, height - 1),
                np.clip(box[2], 0, width - 1),
                np.clip(box[3], 0, height - 1),
            )
        )
        status = detection.status
        colour = REJECTED_RGB if status == REJECTED else (MATCHED_RGB if status == MATCHED else UNMATCHED_RGB)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = label_of(detection)
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y1 - text_h - baseline - 2 if y1 - text_h - baseline - 2 >= 0 else min(y2 + 1, height - 1)
        cv2.rectangle(
            canvas, (x1, top), (min(x1 + text_w + 2, width - 1), top + text_h + baseline + 2), colour, -1
        )
        cv2.putText(
            canvas,
            text,
            (x1 + 1, top + text_h + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas
