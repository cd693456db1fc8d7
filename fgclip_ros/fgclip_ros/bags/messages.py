# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Build and take apart the rosbags message objects fgclip_ros reads and writes in bags.

ROS-free: these are rosbags dataclasses (`typestore.types[...]`), not rclpy messages. Reading
works on any dataclass with the ROS field names, so a bag's own definitions are fine as well.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from rosbags.typesys.store import Typestore

from fgclip_ros.core.detection import DetectionResult
from fgclip_ros.core.image_codec import decode_compressed, decode_raw
from fgclip_ros.core.msg_fields import bbox_xyxy, center_size, stamp_ns

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"
FINE_GRAINED_DETECTIONS = "fgclip_msgs/msg/FineGrainedDetections"
STRING = "std_msgs/msg/String"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


def make_header(store: Typestore, stamp: int, frame_id: str):
    time_cls = store.types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(int(stamp), 1_000_000_000)
    return store.types["std_msgs/msg/Header"](stamp=time_cls(sec=sec, nanosec=nanosec), frame_id=frame_id)


# --- images ------------------------------------------------------------------------------------
def make_image(store: Typestore, image_rgb: np.ndarray, stamp: int, frame_id: str):
    height, width = image_rgb.shape[:2]
    return store.types[IMAGE](
        header=make_header(store, stamp, frame_id),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(image_rgb, dtype=np.uint8).reshape(-1),
    )


def make_compressed_image(store: Typestore, image_rgb: np.ndarray, stamp: int, frame_id: str, fmt: str):
    """JPEG (quality 90) or PNG, `format` as image_transport writes it ("rgb8; jpeg compressed bgr8")."""
    ext = {"jpeg": ".jpg", "png": ".png"}[fmt]
    ok, encoded = cv2.imencode(
        ext,
        cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpeg" else [],
    )
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image_rgb.shape} image as {fmt}")
    return store.types[COMPRESSED_IMAGE](
        header=make_header(store, stamp, frame_id),
        format=f"rgb8; {fmt} compressed bgr8",
        data=encoded.reshape(-1).astype(np.uint8),
    )


def image_to_rgb(msg, msgtype: str) -> np.ndarray:
    """Image or CompressedImage -> HxWx3 uint8 RGB (ImageDecodeError for what cannot be decoded)."""
    if msgtype == COMPRESSED_IMAGE:
        return decode_compressed(msg.format, msg.data)
    return decode_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian)


# --- detections --------------------------------------------------------------------------------
@dataclass
class Detections:
    """A Detection2DArray as arrays: boxes (N, 4) xyxy pixels, ids, detector labels and scores."""

    stamp_ns: int
    frame_id: str
    boxes: np.ndarray
    ids: list[str]
    class_ids: list[str]
    class_scores: list[float]


def detections_from_msg(msg) -> Detections:
    boxes, ids, class_ids, class_scores = [], [], [], []
    for det in msg.detections:
        boxes.append(bbox_xyxy(det.bbox))
        ids.append(det.id)
        top = det.results[0].hypothesis if len(det.results) else None
        class_ids.append(top.class_id if top else "")
        class_scores.append(float(top.score) if top else float("nan"))
    return Detections(
        stamp_ns(msg.header),
        msg.header.frame_id,
        np.asarray(boxes, np.float64).reshape(-1, 4),
        ids,
        class_ids,
        class_scores,
    )


def make_bbox(store: Typestore, box_xyxy) -> object:
    cx, cy, width, height = center_size(box_xyxy)
    point = store.types["vision_msgs/msg/Point2D"](x=cx, y=cy)
    pose = store.types["vision_msgs/msg/Pose2D"](position=point, theta=0.0)
    return store.types["vision_msgs/msg/BoundingBox2D"](center=pose, size_x=width, size_y=height)


def _pose_with_covariance(store: Typestore):
    t = store.types
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
        orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
    )
    return t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36, np.float64))


def make_detection_array(
    store: Typestore, stamp: int, frame_id: str, boxes, ids, hypotheses: list[list[tuple[str, float]]]
):
    """Detection2DArray; `hypotheses[i]` = (class_id, score) pairs of box i, best first (may be empty)."""
    t = store.types
    header = make_header(store, stamp, frame_id)
    detections = []
    for box, det_id, pairs in zip(boxes, ids, hypotheses, strict=True):
        results = [
            t["vision_msgs/msg/ObjectHypothesisWithPose"](
                hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=label, score=float(score)),
                pose=_pose_with_covariance(store),
            )
            for label, score in pairs
        ]
        detections.append(
            t["vision_msgs/msg/Detection2D"](
                header=header, results=results, bbox=make_bbox(store, box), id=det_id
            )
        )
    return t[DETECTION_ARRAY](header=header, detections=detections)


def make_string(store: Typestore, text: str):
    return store.types[STRING](data=text)


# --- fgclip_ros outputs ------------------------------------------------------------------------
def make_fine_grained(
    store: Typestore,
    stamp: int,
    frame_id: str,
    model: str,
    queries: list[str],
    detections: list[DetectionResult],
):
    t = store.types
    items = [
        t["fgclip_msgs/msg/FineGrainedDetection"](
            id=d.id, bbox=make_bbox(store, d.box_xyxy), scores=np.asarray(d.scores, np.float32), **d.summary()
        )
        for d in detections
    ]
    return t[FINE_GRAINED_DETECTIONS](
        header=make_header(store, stamp, frame_id), model=model, queries=list(queries), detections=items
    )
