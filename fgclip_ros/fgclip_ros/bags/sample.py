# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Write a sample rosbag2 of the project's synthetic world (`core.synth`): camera, detector, ground truth.

Per frame, all with the same header stamp (frames `1/rate_hz` apart from a fixed start time, so
every message of a bag is reproducible byte for byte):

- IMAGE_TOPIC `sensor_msgs/Image` rgb8 (or COMPRESSED_IMAGE_TOPIC `sensor_msgs/CompressedImage`),
- DETECTIONS_TOPIC `vision_msgs/Detection2DArray`: the renderer's boxes, each edge jittered with a
  seeded Gaussian (`jitter` x box size) like a real detector, class_id = the category with a
  detector-like score, id = "f<frame>-<object>",
- GROUND_TRUTH_TOPIC `std_msgs/String`: the per-frame JSON of `ground_truth.py` (caption, category,
  attributes and exact box per detection id).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgclip_ros.bags import messages
from fgclip_ros.bags.ground_truth import GROUND_TRUTH_TOPIC, FrameTruth, ObjectTruth
from fgclip_ros.bags.writer import BagWriter

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_IMAGE_TOPIC = "/camera/image_raw/compressed"
DETECTIONS_TOPIC = "/detections"
FRAME_ID = "camera"
# 2026-01-01T00:00:00Z: a fixed start keeps samples reproducible.
START_NS = 1_767_225_600 * 1_000_000_000
# Scene seeds of sample frames start here, away from the small seeds tests and training sets use.
SCENE_SEED_BASE = 600_000
IMAGE_FORMATS = ("raw", "jpeg", "png")


@dataclass
class SampleBagConfig:
    frames: int = 24
    rate_hz: float = 5.0
    width: int = 320
    height: int = 240
    seed: int = 0  # frame i shows render_scene(SCENE_SEED_BASE + 1000 * seed + i)
    n_objects: tuple[int, int] = (2, 5)
    jitter: float = 0.03  # std of each box edge's noise, as a fraction of the box size
    drop_detections: float = 0.0  # probability that the detector skips a frame (unpaired image)
    image_format: str = "raw"  # raw (sensor_msgs/Image rgb8) | jpeg | png (CompressedImage)
    storage: str = "mcap"  # mcap | sqlite3
    compress: bool = False  # zstd (mcap chunks / sqlite3 messages)


@dataclass
class SampleBagSummary:
    path: Path
    storage: str
    frames: int
    detection_frames: int
    objects: int
    topics: dict[str, str] = field(default_factory=dict)  # topic -> type
    size_bytes: int = 0


def jitter_boxes(
    boxes: np.ndarray, rng: np.random.Generator, jitter: float, width: int, height: int
) -> np.ndarray:
    """Detector-like boxes: each edge moved by N(0, jitter * box size), clamped to the image, >= 2 px."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if jitter <= 0 or len(boxes) == 0:
        return boxes.copy()
    size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)  # (w, h, w, h): x edges scale with w, y edges with h
    noisy = boxes + rng.normal(0.0, 1.0, boxes.shape) * jitter * size
    noisy[:, [0, 2]] = np.clip(noisy[:, [0, 2]], 0, width)
    noisy[:, [1, 3]] = np.clip(noisy[:, [1, 3]], 0, height)
    noisy[:, 2:] = np.maximum(noisy[:, 2:], noisy[:, :2] + 2.0)
    return noisy


def write_sample_bag(
    path: str | Path, config: SampleBagConfig | None = None, progress: bool | None = False
) -> SampleBagSummary:
    """Render `config.frames` scenes and write them as a rosbag2 at `path` (must not exist).

    progress: True/False force the bar on/off; None shows it when stderr is a terminal.
    """
    from tqdm import tqdm

    from fgclip_ros.synth.render import render_scene

    config = config or SampleBagConfig()
    if config.image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format {config.image_format!r}: use one of {', '.join(IMAGE_FORMATS)}")
    path = Path(path)
    compressed = config.image_format != "raw"
    image_topic = COMPRESSED_IMAGE_TOPIC if compressed else IMAGE_TOPIC
    image_type = messages.COMPRESSED_IMAGE if compressed else messages.IMAGE
    topics = {
        image_topic: image_type,
        DETECTIONS_TOPIC: messages.DETECTION_ARRAY,
        GROUND_TRUTH_TOPIC: messages.STRING,
    }
    rng = np.random.default_rng([config.seed, 6])  # detector noise, separate from the scenes' streams
    period_ns = int(round(1e9 / config.rate_hz))
    summary = SampleBagSummary(path, config.storage, 0, 0, 0, topics)

    with BagWriter(path, storage=config.storage, compress=config.compress) as bag:
        store = bag.typestore
        for topic, msgtype in topics.items():
            bag.add_topic(topic, msgtype)
        for frame in tqdm(
            range(config.frames),
            desc="sample bag",
            unit="frame",
            disable=None if progress is None else not progress,
        ):
            stamp = START_NS + frame * period_ns
            scene = render_scene(
                SCENE_SEED_BASE + 1000 * config.seed + frame,
                config.width,
                config.height,
                n_objects=config.n_objects,
            )
            if compressed:
                image_msg = messages.make_compressed_image(
                    store, scene.image, stamp, FRAME_ID, config.image_format
                )
            else:
                image_msg = messages.make_image(store, scene.image, stamp, FRAME_ID)
            bag.write(image_topic, image_msg, stamp)

            ids = [f"f{frame:04d}-{k}" for k in range(len(scene.objects))]
            exact = np.asarray([o.box for o in scene.objects], np.float64).reshape(-1, 4)
            boxes = jitter_boxes(exact, rng, config.jitter, config.width, config.height)
            scores = rng.uniform(0.55, 0.98, len(ids))
            if rng.random() >= config.drop_detections:
                hypotheses = [
                    [(o.spec.category, float(s))] for o, s in zip(scene.objects, scores, strict=True)
                ]
                bag.write(
                    DETECTIONS_TOPIC,
                    messages.make_detection_array(store, stamp, FRAME_ID, boxes, ids, hypotheses),
                    stamp,
                )
                summary.detection_frames += 1

            truth = FrameTruth(
                stamp,
                [
                    ObjectTruth(
                        id=i,
                        caption=o.spec.caption(),
                        category=o.spec.category,
                        attributes=o.spec.attributes(),
                        box_xyxy=tuple(float(v) for v in o.box),
                    )
                    for i, o in zip(ids, scene.objects, strict=True)
                ],
                frame_id=FRAME_ID,
            )
            bag.write(GROUND_TRUTH_TOPIC, messages.make_string(store, truth.to_json()), stamp)
            summary.frames += 1
            summary.objects += len(scene.objects)
    summary.size_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return summary
