# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""compat/vision_msgs is a wire-identical copy of vision_msgs 4.1.1, and setup never replaces another one.

Facts from shared/ROS-PIP.md ("vision_msgs 4.1.1 facts"): the release has 16 messages, and the
RIHS01 hash rosidl computes for its Detection2DArray (which covers Detection2D, BoundingBox2D,
Pose2D, Point2D, ObjectHypothesisWithPose and ObjectHypothesis, the types it refers to).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COMPAT = REPO / "compat" / "vision_msgs"
RELEASE_MESSAGES = {
    "BoundingBox2D",
    "BoundingBox2DArray",
    "BoundingBox3D",
    "BoundingBox3DArray",
    "Classification",
    "Detection2D",
    "Detection2DArray",
    "Detection3D",
    "Detection3DArray",
    "LabelInfo",
    "ObjectHypothesis",
    "ObjectHypothesisWithPose",
    "Point2D",
    "Pose2D",
    "VisionClass",
    "VisionInfo",
}
RELEASE_DETECTION2D_ARRAY_HASH = "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968"
SETUP_TIMEOUT_S = 900


def test_the_copy_has_every_message_of_the_release():
    sources = {path.stem for path in (COMPAT / "msg").glob("*.msg")}
    assert sources == RELEASE_MESSAGES
    cmake = (COMPAT / "CMakeLists.txt").read_text()
    assert {name for name in RELEASE_MESSAGES if f'"msg/{name}.msg"' in cmake} == RELEASE_MESSAGES
    import vision_msgs.msg

    missing = sorted(name for name in RELEASE_MESSAGES if not hasattr(vision_msgs.msg, name))
    assert not missing, f"the installed vision_msgs lacks {missing}: re-run scripts/setup.sh"


def _share(package: str) -> Path:
    return Path(sys.prefix) / "share" / package


def test_detection2d_array_hashes_like_the_release(tmp_path):
    # rosidl's own pipeline on the source files: .msg -> .idl (rosidl_adapter) -> type description
    # and RIHS01 hash (rosidl_generator_type_description), against the installed std_msgs/geometry_msgs.
    from rosidl_adapter import convert_to_idl
    from rosidl_generator_type_description import generate_type_hash

    idl_dir = tmp_path / "idl"
    idl_tuples = []
    for msg in sorted((COMPAT / "msg").glob("*.msg")):
        convert_to_idl(COMPAT, "vision_msgs", Path("msg") / msg.name, idl_dir)
        idl_tuples.append(f"{idl_dir}:msg/{msg.stem}.idl")
    arguments = tmp_path / "arguments.json"
    arguments.write_text(
        json.dumps(
            {
                "package_name": "vision_msgs",
                "output_dir": str(tmp_path / "out"),
                "idl_tuples": idl_tuples,
                "include_paths": [
                    f"{pkg}:{_share(pkg)}" for pkg in ("std_msgs", "geometry_msgs", "builtin_interfaces")
                ],
            }
        )
    )
    generate_type_hash(str(arguments))
    generated = json.loads((tmp_path / "out" / "msg" / "Detection2DArray.json").read_text())
    assert generated["type_hashes"][0] == {
        "type_name": "vision_msgs/msg/Detection2DArray",
        "hash_string": RELEASE_DETECTION2D_ARRAY_HASH,
    }
    # The build in this environment carries the same hash (a stale 2D-subset build would too, but a
    # layout change since the last setup would not).
    installed = json.loads((_share("vision_msgs") / "msg" / "Detection2DArray.json").read_text())
    assert installed["type_hashes"][0]["hash_string"] == RELEASE_DETECTION2D_ARRAY_HASH


def test_the_bag_typestore_knows_all_16_with_the_release_hash():
    from fgclip_ros.bags.typestore import build_typestore

    store = build_typestore()
    assert {
        name.rpartition("/")[2] for name in store.types if name.startswith("vision_msgs/")
    } == RELEASE_MESSAGES
    assert store.hash_rihs01("vision_msgs/msg/Detection2DArray") == RELEASE_DETECTION2D_ARRAY_HASH
    t = store.types
    label_info = t["vision_msgs/msg/LabelInfo"](
        header=t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam"
        ),
        class_map=[t["vision_msgs/msg/VisionClass"](class_id=7, class_name="mug")],
        threshold=0.5,
    )
    back = store.deserialize_cdr(
        store.serialize_cdr(label_info, "vision_msgs/msg/LabelInfo"), "vision_msgs/msg/LabelInfo"
    )
    assert (back.class_map[0].class_id, back.class_map[0].class_name, back.threshold) == (7, "mug", 0.5)


# A vision_msgs installed by other means than compat/vision_msgs: the release's package.xml.
RELEASE_PACKAGE_XML = textwrap.dedent("""\
    <?xml version="1.0"?>
    <package format="3">
      <name>vision_msgs</name>
      <version>4.1.1</version>
      <description>Messages for interfacing with computer vision pipelines.</description>
      <maintainer email="adam.d.allevato@gmail.com">Adam Allevato</maintainer>
      <license>Apache License 2.0</license>
      <buildtool_depend>ament_cmake</buildtool_depend>
      <member_of_group>rosidl_interface_packages</member_of_group>
      <export><build_type>ament_cmake</build_type></export>
    </package>
    """)


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (REPO / ".venv").resolve(),
    reason="runs scripts/setup.sh --force on the repository's own .venv only",
)
def test_setup_force_keeps_a_vision_msgs_it_did_not_build(tmp_path):
    # A real vision_msgs installed into the venv over the copy replaces its package.xml; setup must
    # then leave the whole install alone (before, it rebuilt the copy over it: a mixed install).
    import vision_msgs.msg

    package_xml = _share("vision_msgs") / "package.xml"
    generated_module = Path(vision_msgs.msg.__file__).parent / "_detection2_d_array.py"
    saved = tmp_path / "package.xml"
    shutil.copy2(package_xml, saved)
    module_mtime = generated_module.stat().st_mtime_ns
    try:
        package_xml.unlink()  # it may be a hard link or read-only copy: never write through it
        package_xml.write_text(RELEASE_PACKAGE_XML)
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "setup.sh"), "--force"],
            cwd=REPO,
            env={**os.environ, "FGCLIP_VENV": sys.prefix},
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "building vision_msgs" not in result.stdout
        assert "leaving it alone" in result.stdout
        assert package_xml.read_text() == RELEASE_PACKAGE_XML
        assert generated_module.stat().st_mtime_ns == module_mtime
    finally:
        package_xml.unlink()
        shutil.copy2(saved, package_xml)
