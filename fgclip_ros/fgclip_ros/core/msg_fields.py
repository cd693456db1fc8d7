# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Field conversions shared by rclpy and rosbags messages (both have the same field names).

Duck-typed on the ROS message layouts (std_msgs/Header, vision_msgs 4.x BoundingBox2D,
fgclip_msgs/FineGrainedDetection), so core stays free of rclpy and of any *_msgs package.
"""

import numpy as np

from fgclip_ros.core.detection import DetectionResult

NS_PER_S = 1_000_000_000


def stamp_ns(header) -> int:
    """A std_msgs/Header's stamp as integer nanoseconds."""
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)


def bbox_xyxy(bbox) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of a vision_msgs/BoundingBox2D (centre + size; NaN stays NaN)."""
    cx, cy = bbox.center.position.x, bbox.center.position.y
    half_w, half_h = bbox.size_x / 2.0, bbox.size_y / 2.0
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def center_size(box_xyxy) -> tuple[float, float, float, float]:
    """(cx, cy, width, height) of an xyxy box: the fields of a BoundingBox2D."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return ((x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1)


def detection_from_message(det) -> DetectionResult:
    """A FineGrainedDetection (rosbags or rclpy message: same field names) as the engine's record.

    ``probs`` stays empty (the message does not carry them); ``rejected_code`` follows from the
    reason, as the node derives it, so bags recorded before the field existed read the same.
    """
    return DetectionResult(
        valid=bool(det.valid),
        rejected_reason=det.rejected_reason,
        best_index=int(det.best_index),
        best_query=det.best_query,
        score=float(det.score),
        probability=float(det.probability),
        margin=float(det.margin),
        scores=np.asarray(det.scores, np.float32),
        id=det.id,
        box_xyxy=bbox_xyxy(det.bbox),
    )
