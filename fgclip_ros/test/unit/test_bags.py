# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Sample bags in both storages, bags from another writer (mcap_ros2), and the errors of bad bags."""

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from fgclip_ros.bags import messages
from fgclip_ros.bags.ground_truth import GROUND_TRUTH_TOPIC, FrameTruth, GroundTruthError
from fgclip_ros.bags.reader import (
    BagCorruptError,
    BagNotFoundError,
    BagReader,
    BagTopicError,
    BagTypeError,
)
from fgclip_ros.bags.sample import (
    COMPRESSED_IMAGE_TOPIC,
    DETECTIONS_TOPIC,
    IMAGE_TOPIC,
    SCENE_SEED_BASE,
    SampleBagConfig,
    write_sample_bag,
)
from fgclip_ros.bags.typestore import project_typestore
from fgclip_ros.bags.writer import BagWriter
from fgclip_ros.synth.render import render_scene

REPO = Path(__file__).resolve().parents[3]
SMALL = {"frames": 3, "width": 128, "height": 96, "rate_hz": 5.0}


def _sample(tmp_path, name="bag", **overrides) -> Path:
    path = tmp_path / name
    write_sample_bag(path, SampleBagConfig(**{**SMALL, **overrides}))
    return path


def _read_all(path) -> tuple[dict, list]:
    with BagReader(path) as bag:
        topics = {t.name: (t.msgtype, t.count) for t in bag.topics.values()}
        return topics, list(bag.messages(bag.topics))


def _storage_file(path: Path) -> Path:
    return next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))


def test_typestore_has_project_and_ros_types():
    store = project_typestore()
    for msgtype in (
        "sensor_msgs/msg/Image",
        "sensor_msgs/msg/CompressedImage",
        "vision_msgs/msg/Detection2DArray",
        "fgclip_msgs/msg/FineGrainedDetections",
        "std_msgs/msg/String",
    ):
        assert msgtype in store.types
    fields = [name for name, _ in store.fielddefs["vision_msgs/msg/Detection2D"][1]]
    assert fields == ["header", "results", "bbox", "id"]  # vision_msgs 4.1.x field order


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_sample_bag_holds_the_rendered_world(tmp_path, storage):
    path = _sample(tmp_path, storage=storage)
    topics, msgs = _read_all(path)
    assert topics == {
        IMAGE_TOPIC: ("sensor_msgs/msg/Image", 3),
        DETECTIONS_TOPIC: ("vision_msgs/msg/Detection2DArray", 3),
        GROUND_TRUTH_TOPIC: ("std_msgs/msg/String", 3),
    }
    assert [m.log_time_ns for m in msgs] == sorted(m.log_time_ns for m in msgs)
    images = [m for m in msgs if m.topic == IMAGE_TOPIC]
    stamps = [messages.stamp_ns(m.msg.header) for m in images]
    assert np.diff(stamps).tolist() == [200_000_000, 200_000_000]  # 5 Hz
    for frame, image_msg in enumerate(images):
        scene = render_scene(SCENE_SEED_BASE + frame, 128, 96)
        assert image_msg.msg.encoding == "rgb8"
        assert np.array_equal(messages.image_to_rgb(image_msg.msg, image_msg.msgtype), scene.image)
        dets = messages.detections_from_msg(
            next(
                m.msg
                for m in msgs
                if m.topic == DETECTIONS_TOPIC and messages.stamp_ns(m.msg.header) == stamps[frame]
            )
        )
        truth = FrameTruth.from_json(
            next(
                m.msg.data
                for m in msgs
                if m.topic == GROUND_TRUTH_TOPIC and json.loads(m.msg.data)["stamp_ns"] == stamps[frame]
            )
        )
        assert [o.caption for o in truth.objects] == [o.spec.caption() for o in scene.objects]
        assert [o.id for o in truth.objects] == dets.ids
        assert dets.class_ids == [o.spec.category for o in scene.objects]
        exact = np.array([o.box for o in scene.objects])
        assert np.allclose([o.box_xyxy for o in truth.objects], exact)
        # jittered like a detector: close to the exact box, not equal to it
        sizes = np.tile(exact[:, 2:] - exact[:, :2], 2)
        assert not np.allclose(dets.boxes, exact) and (np.abs(dets.boxes - exact) < 0.25 * sizes).all()


def test_sqlite3_and_mcap_samples_read_back_identically(tmp_path):
    sq_topics, sq = _read_all(_sample(tmp_path, "sq", storage="sqlite3"))
    mc_topics, mc = _read_all(_sample(tmp_path, "mc", storage="mcap", compress=True))
    assert sq_topics == mc_topics
    assert [(m.topic, m.log_time_ns, m.raw) for m in sq] == [(m.topic, m.log_time_ns, m.raw) for m in mc]


def test_compressed_image_sample_and_single_file_reading(tmp_path):
    path = _sample(tmp_path, storage="mcap", image_format="png")
    with BagReader(_storage_file(path)) as bag:  # a bare .mcap file, no metadata.yaml
        assert bag.storage == "mcap"
        assert bag.topic_type(COMPRESSED_IMAGE_TOPIC) == messages.COMPRESSED_IMAGE
        first = next(iter(bag.messages([COMPRESSED_IMAGE_TOPIC])))
    assert np.array_equal(
        messages.image_to_rgb(first.msg, first.msgtype), render_scene(SCENE_SEED_BASE, 128, 96).image
    )  # PNG is lossless


def test_folder_without_metadata_reads_its_storage_file(tmp_path):
    path = _sample(tmp_path, storage="sqlite3")
    (path / "metadata.yaml").unlink()
    topics, msgs = _read_all(path)
    assert topics[IMAGE_TOPIC] == ("sensor_msgs/msg/Image", 3) and len(msgs) == 9


# --- a bag written by another tool: mcap + mcap_ros2 with the .msg schema text -----------------------------
def _msg_text(package: str, name: str) -> str:
    folder = REPO / ("compat/vision_msgs/msg" if package == "vision_msgs" else f"{package}/msg")
    return (folder / f"{name}.msg").read_text()


# Definitions of the ROS 2 core types used (not in this repository), as the ROS documentation gives them.
CORE_MSGS = {
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec\n",
    "geometry_msgs/PoseWithCovariance": "Pose pose\nfloat64[36] covariance\n",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation\n",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
}
IMAGE_MSG = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
    "uint32 step\nuint8[] data\n"
)


def _schema(main: str, deps: dict[str, str]) -> str:
    sep = "=" * 80 + "\n"
    return main + "".join(f"{sep}MSG: {name}\n{text}" for name, text in deps.items())


def write_foreign_mcap(path: Path, frames: int = 3, width: int = 64, height: int = 48) -> list[dict]:
    """A bare .mcap as another recorder writes it (mcap_ros2, zstd chunks); returns what was written."""
    from mcap_ros2.writer import Writer

    vision = {
        f"vision_msgs/{n}": _msg_text("vision_msgs", n)
        for n in (
            "Detection2D",
            "ObjectHypothesisWithPose",
            "ObjectHypothesis",
            "BoundingBox2D",
            "Pose2D",
            "Point2D",
        )
    }
    rng = np.random.default_rng(3)
    written = []
    with path.open("wb") as stream:
        writer = Writer(stream)
        image_schema = writer.register_msgdef(
            "sensor_msgs/msg/Image",
            _schema(IMAGE_MSG, {k: CORE_MSGS[k] for k in ("std_msgs/Header", "builtin_interfaces/Time")}),
        )
        det_schema = writer.register_msgdef(
            "vision_msgs/msg/Detection2DArray",
            _schema(_msg_text("vision_msgs", "Detection2DArray"), {**CORE_MSGS, **vision}),
        )
        for i in range(frames):
            stamp = {"sec": 100 + i, "nanosec": 5}
            header = {"stamp": stamp, "frame_id": "cam"}
            image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            box = (8.0 + i, 6.0, 40.0, 30.0 + i)
            t = (100 + i) * 1_000_000_000 + 5
            writer.write_message(
                "/cam/image",
                image_schema,
                {
                    "header": header,
                    "height": height,
                    "width": width,
                    "encoding": "rgb8",
                    "is_bigendian": 0,
                    "step": width * 3,
                    "data": image.tobytes(),
                },
                log_time=t,
            )
            det = {
                "header": header,
                "id": f"d{i}",
                "results": [
                    {
                        "hypothesis": {"class_id": "thing", "score": 0.5},
                        "pose": {"pose": {}, "covariance": [0.0] * 36},
                    }
                ],
                "bbox": {
                    "center": {
                        "position": {"x": (box[0] + box[2]) / 2, "y": (box[1] + box[3]) / 2},
                        "theta": 0.0,
                    },
                    "size_x": box[2] - box[0],
                    "size_y": box[3] - box[1],
                },
            }
            writer.write_message(
                "/det", det_schema, {"header": header, "detections": [det]}, log_time=t + 1000
            )
            written.append({"stamp_ns": t, "image": image, "box": box, "id": f"d{i}"})
        writer.finish()
    return written


def test_bag_written_by_mcap_ros2_is_read(tmp_path):
    path = tmp_path / "foreign.mcap"
    written = write_foreign_mcap(path)
    with BagReader(path) as bag:
        assert bag.storage == "mcap"
        assert {t.name: t.msgtype for t in bag.topics.values()} == {
            "/cam/image": "sensor_msgs/msg/Image",
            "/det": "vision_msgs/msg/Detection2DArray",
        }
        msgs = list(bag.messages(["/det", "/cam/image"]))
    assert [m.topic for m in msgs] == ["/cam/image", "/det"] * 3  # log-time order across topics
    for expected, image_msg, det_msg in zip(written, msgs[0::2], msgs[1::2], strict=True):
        assert messages.stamp_ns(image_msg.msg.header) == expected["stamp_ns"]
        assert np.array_equal(messages.image_to_rgb(image_msg.msg, image_msg.msgtype), expected["image"])
        dets = messages.detections_from_msg(det_msg.msg)
        assert dets.ids == [expected["id"]] and np.allclose(dets.boxes[0], expected["box"])
        assert dets.class_ids == ["thing"]


# --- bad bags ----------------------------------------------------------------------------------------------
def test_missing_topic_names_it_and_lists_the_topics(tmp_path):
    path = _sample(tmp_path)
    with BagReader(path) as bag, pytest.raises(BagTopicError) as err:
        list(bag.messages(["/camera/does_not_exist"]))
    text = str(err.value)
    assert "/camera/does_not_exist" in text and str(path) in text and IMAGE_TOPIC in text
    with BagReader(path) as bag, pytest.raises(BagTopicError, match="expected sensor_msgs/msg/Image"):
        bag.topic_type(DETECTIONS_TOPIC, ["sensor_msgs/msg/Image"], role="image topic")


def test_type_without_definition_falls_back_or_is_named(tmp_path):
    """A Humble-era sqlite3 bag stores no definitions: known types still read, unknown ones are named."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = tmp_path / "humble"
    store = project_typestore()
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3)
    writer.open()
    text = writer.add_connection("/text", "std_msgs/msg/String", typestore=store)
    writer.write(text, 1, store.serialize_cdr(messages.make_string(store, "hello"), "std_msgs/msg/String"))
    widget = writer.add_connection(
        "/widget", "acme_msgs/msg/Widget", msgdef="int32 x", rihs01="RIHS01_" + "0" * 64
    )
    writer.write(widget, 2, bytes([0, 1, 0, 0, 5, 0, 0, 0]))
    writer.close()
    with sqlite3.connect(_storage_file(path)) as db:  # schema 3: the definitions table did not exist yet
        db.execute("DROP TABLE message_definitions")
        db.execute("UPDATE schema SET schema_version = 3")
    with BagReader(path) as bag:
        assert [m.msg.data for m in bag.messages(["/text"])] == ["hello"]
        with pytest.raises(BagTypeError) as err:
            list(bag.messages(["/widget"]))
    assert "acme_msgs/msg/Widget" in str(err.value) and "/widget" in str(err.value)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_is_reported_with_the_file_and_a_repair_hint(tmp_path, storage):
    path = _sample(tmp_path, storage=storage)
    storage_file = _storage_file(path)
    os.truncate(storage_file, storage_file.stat().st_size // 2)
    with pytest.raises(BagCorruptError) as err, BagReader(path) as bag:
        list(bag.messages(bag.topics))
    text = str(err.value)
    assert str(path) in text and "truncated or corrupt" in text
    assert ("mcap recover" if storage == "mcap" else ".recover") in text


def test_missing_bag_and_non_bag_folder(tmp_path):
    with pytest.raises(BagNotFoundError, match="does not exist"):
        BagReader(tmp_path / "nope").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagNotFoundError, match="no metadata.yaml"):
        BagReader(tmp_path / "empty").open()


def test_ground_truth_round_trip_and_bad_documents():
    truth = FrameTruth.from_json(
        json.dumps({"stamp_ns": 7, "objects": [{"id": "a", "caption": "a red mug"}]})
    )
    assert truth.objects[0].caption == "a red mug" and truth.objects[0].attributes == {}
    assert FrameTruth.from_json(truth.to_json()) == truth
    with pytest.raises(GroundTruthError, match="no 'caption'"):
        FrameTruth.from_json(json.dumps({"stamp_ns": 7, "objects": [{"id": "a"}]}))
    with pytest.raises(GroundTruthError, match="not a"):
        FrameTruth.from_json("{not json")


def test_writer_refuses_to_overwrite(tmp_path):
    path = _sample(tmp_path)
    from fgclip_ros.bags.writer import BagWriteError

    with pytest.raises(BagWriteError, match="exists"):
        BagWriter(path)
    shutil.rmtree(path)


def test_definitions_are_found_in_an_installed_share_folder(tmp_path, monkeypatch):
    """Outside the source tree (pip or colcon install) the .msg files come from <prefix>/share/<pkg>/msg."""
    from fgclip_ros.bags import typestore

    for package, source in typestore.SOURCE_MSG_DIRS.items():
        shutil.copytree(REPO / source, tmp_path / "share" / package / "msg")
    monkeypatch.setattr(typestore, "_repository_root", lambda: tmp_path / "not_a_checkout")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert typestore.find_msg_dir("fgclip_msgs") == tmp_path / "share" / "fgclip_msgs" / "msg"
    assert "fgclip_msgs/msg/FineGrainedDetections" in typestore.build_typestore().types

    monkeypatch.setattr(typestore, "_installed_share_dirs", lambda package: [tmp_path / "empty" / package])
    with pytest.raises(typestore.MessageDefinitionError, match="no .msg files of vision_msgs"):
        typestore.build_typestore()


def test_detector_jitter_scales_each_edge_with_its_own_side():
    from fgclip_ros.bags.sample import jitter_boxes

    wide = np.tile([[100.0, 100.0, 300.0, 110.0]], (4000, 1))  # 200 px wide, 10 px tall
    noise = jitter_boxes(wide, np.random.default_rng(0), 0.05, 400, 400) - wide
    assert np.allclose(noise.std(axis=0), [10.0, 0.5, 10.0, 0.5], rtol=0.1)
    assert np.array_equal(jitter_boxes(wide, np.random.default_rng(0), 0.0, 400, 400), wide)
