# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The pip world is a ROS prefix: what ROS 2 tools look up for a package resolves in the activated venv.

Facts (shared/ROS-PIP.md, "What real ROS 2 tools need from a package"): `ros2 launch/run`,
`ros2 pkg prefix` and `get_package_share_directory` find packages only through the ament index
under AMENT_PREFIX_PATH (`share/ament_index/resource_index/packages/<pkg>`, `share/<pkg>/`), and
launch_ros runs `<prefix>/lib/<pkg>/<executable>`. The checks run in a fresh shell that only
sources the venv's activate script, as a user does.
"""

import ast
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGE_DIR = REPO / "fgclip_ros"
LAUNCH_FILE = "perception.launch.py"
TIMEOUT_S = 120

# The launch arguments docs/node.md documents.
DOCUMENTED_LAUNCH_ARGUMENTS = {
    "params_file",
    "namespace",
    "autostart",
    "model",
    "device",
    "dtype",
    "backend",
    "image_topic",
    "detections_topic",
    "use_sim_time",
}


def _in_activated_venv(code: str, tmp_path: Path) -> dict:
    """Run python `code` (printing one JSON line) in bash after `source <venv>/bin/activate`."""
    activate = Path(sys.prefix) / "bin" / "activate"
    env = {key: value for key, value in os.environ.items() if key not in ("AMENT_PREFIX_PATH", "VIRTUAL_ENV")}
    script = f"source {shlex.quote(str(activate))} && python -c {shlex.quote(textwrap.dedent(code))}"
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _launch_file_constant(name: str):
    tree = ast.parse((PACKAGE_DIR / "launch" / LAUNCH_FILE).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{LAUNCH_FILE} has no module constant {name}")


def test_the_activated_venv_resolves_the_package_its_launch_file_and_executable(tmp_path):
    found = _in_activated_venv(
        """
        import json, os, sys
        from ament_index_python import packages
        share = packages.get_package_share_directory("fgclip_ros")
        ours = ("fgclip_ros", "fgclip_msgs", "vision_msgs")
        print(json.dumps({
            "prefix": packages.get_package_prefix("fgclip_ros"),
            "share": share,
            "packages": sorted(p for p in packages.get_packages_with_prefixes() if p in ours),
            "ament_prefix_path": os.environ["AMENT_PREFIX_PATH"].split(os.pathsep),
            "sys_prefix": sys.prefix,
        }))
        """,
        tmp_path,
    )
    prefix = Path(found["sys_prefix"])
    assert found["ament_prefix_path"][0] == str(prefix)
    assert Path(found["prefix"]) == prefix
    assert found["packages"] == ["fgclip_msgs", "fgclip_ros", "vision_msgs"]
    share = Path(found["share"])
    assert (share / "package.xml").read_text() == (PACKAGE_DIR / "package.xml").read_text()
    assert (share / "launch" / LAUNCH_FILE).read_text() == (PACKAGE_DIR / "launch" / LAUNCH_FILE).read_text()
    assert (share / "config" / "perception.yaml").is_file()
    assert (share / "models" / "fgsynth.yaml").is_file()
    # What launch_ros.actions.LifecycleNode(package=..., executable=...) in the launch file runs.
    executable = prefix / "lib" / _launch_file_constant("PACKAGE") / _launch_file_constant("EXECUTABLE")
    assert os.access(executable, os.X_OK), f"{executable} missing or not executable"
    result = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0 and "--params-file" in result.stdout, result.stderr


def test_share_holds_every_data_file_of_setup_py():
    from distutils.core import run_setup

    cwd = os.getcwd()
    os.chdir(PACKAGE_DIR)
    try:
        dist = run_setup("setup.py", stop_after="init")
    finally:
        os.chdir(cwd)
    prefix = Path(sys.prefix)
    for folder, files in dist.data_files:
        for name in files:
            installed = prefix / folder / Path(name).name
            assert installed.is_file(), f"{installed} missing: re-run scripts/setup.sh"
            assert installed.read_bytes() == (PACKAGE_DIR / name).read_bytes(), installed
    for entry in dist.entry_points["console_scripts"]:
        script = entry.split("=")[0].strip()
        assert os.access(prefix / "lib" / dist.get_name() / script, os.X_OK), script


def test_the_launch_description_builds_with_its_documented_arguments(tmp_path):
    # launch and launch_ros are not on PyPI: this runs where a ROS 2 install provides them.
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(PACKAGE_DIR / "launch" / LAUNCH_FILE))
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == DOCUMENTED_LAUNCH_ARGUMENTS
    context = LaunchContext()
    arguments = {
        "image_topic": "/camera/image_raw",
        "detections_topic": "/detector/detections",
        "use_sim_time": "true",
        "namespace": "robot1",
        "model": "fgsynth",
    }
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = arguments.get(
                entity.name, "".join(s.perform(context) for s in entity.default_value)
            )
    opaque = next(e for e in description.entities if isinstance(e, OpaqueFunction))
    actions = opaque.execute(context)
    node = next(a for a in actions if type(a).__name__ == "LifecycleNode")
    remaps = {
        tuple("".join(s.perform(context) for s in part) for part in pair) for pair in node._Node__remappings
    }
    assert ("image", "/camera/image_raw") in remaps
    assert ("detections", "/detector/detections") in remaps
