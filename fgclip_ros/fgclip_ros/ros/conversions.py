# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Message <-> NumPy/core conversions for the perception node (sensor_msgs, vision_msgs, fgclip_msgs)."""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from fgclip_msgs.msg import FineGrainedDetection, FineGrainedDetections
from fgclip_ros.core.detection import DetectionResult
from fgclip_ros.core.image_codec import DEFAULT_MAX_IMAGE_PIXELS, decode_compressed, decode_raw, encode_rgb8
from fgclip_ros.core.msg_fields import bbox_xyxy, stamp_ns  # noqa: F401 - stamp_ns: the node calls it here
from fgclip_ros.core.perception import FrameOutput


def image_to_rgb(msg: Image | CompressedImage, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """RGB HxWx3 uint8 (a view on ``msg.data`` where the encoding allows); raises ImageDecodeError."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.format, msg.data, max_pixels)
    return decode_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian, max_pixels)


def rgb_to_image(image_rgb: np.ndarray, header) -> Image:
    height, width, encoding, step, data = encode_rgb8(image_rgb)
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    msg.data = data
    return msg


def detections_to_boxes(msg: Detection2DArray) -> np.ndarray:
    """(N, 4) float64 xyxy pixel boxes from vision_msgs 4.x centre/size boxes.

    NaN stays NaN: the crop validation rejects such a box with a reason.
    """
    boxes = np.empty((len(msg.detections), 4), np.float64)
    for row, detection in enumerate(msg.detections):
        boxes[row] = bbox_xyxy(detection.bbox)
    return boxes


def _fine_grained(detection: DetectionResult, source: Detection2D) -> FineGrainedDetection:
    msg = FineGrainedDetection(
        id=source.id,
        bbox=source.bbox,
        valid=detection.valid,
        rejected_code=int(detection.rejected_code),
        rejected_reason=detection.rejected_reason,
        best_index=detection.best_index,
        best_query=detection.best_query,
        score=_f32(detection.score),
        probability=_f32(detection.probability),
        margin=_f32(detection.margin),
    )
    # array('f') skips rclpy's per-element range check (1,000 queries x 100 boxes per frame add up).
    scores = array.array("f")
    scores.frombytes(np.ascontiguousarray(detection.scores, dtype=np.float32).tobytes())
    msg.scores = scores
    return msg


def _f32(value: float) -> float:
    # float32 fields reject values outside the float32 range; NaN/inf pass through unchanged.
    return float(np.float32(value))


def fine_grained_list(output: FrameOutput, source: Detection2DArray) -> list[FineGrainedDetection]:
    return [_fine_grained(d, s) for d, s in zip(output.detections, source.detections)]


def to_fine_grained_detections(
    output: FrameOutput, image_header, source: Detection2DArray, model: str
) -> FineGrainedDetections:
    return FineGrainedDetections(
        header=image_header,
        model=model,
        queries=list(output.queries),
        detections=fine_grained_list(output, source),
    )


def to_labeled(output: FrameOutput, source: Detection2DArray, top_k: int) -> Detection2DArray:
    """The input detections, each with ``results`` = its matching queries, most probable first.

    class_id = the query text, score = its probability; header, bbox and id are copied. Rejected
    boxes keep their place with no results, so the output lines up with the input.
    """
    labeled = Detection2DArray(header=source.header)
    for detection, original in zip(output.detections, source.detections):
        out = Detection2D(header=original.header, bbox=original.bbox, id=original.id)
        for index, probability in detection.ranked(output.min_score, top_k):
            hypothesis = ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id = output.queries[index]
            hypothesis.hypothesis.score = probability
            out.results.append(hypothesis)
        labeled.detections.append(out)
    return labeled
