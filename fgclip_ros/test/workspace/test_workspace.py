# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The installable workspace: ROS-free core, package manifests, generated interfaces, colcon view.

These are the promises of README and docs/design.md that do not belong to one module:
`fgclip_ros.core` works without ROS, both packages are valid ROS packages that colcon finds (and
colcon ignores compat/), the interfaces are built with the vision_msgs 4.1.x layout and wire names.
"""

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fgclip_ros.ros.private_graph import domain_candidates

REPO = Path(__file__).resolve().parents[3]
SUBPROCESS_TIMEOUT_S = 180

# Field order and types of vision_msgs 4.1.x as documented (shared/ROS-PIP.md), in rosidl's notation.
VISION_MSGS_LAYOUT = {
    "Point2D": {"x": "double", "y": "double"},
    "Pose2D": {"position": "vision_msgs/Point2D", "theta": "double"},
    "BoundingBox2D": {"center": "vision_msgs/Pose2D", "size_x": "double", "size_y": "double"},
    "ObjectHypothesis": {"class_id": "string", "score": "double"},
    "ObjectHypothesisWithPose": {
        "hypothesis": "vision_msgs/ObjectHypothesis",
        "pose": "geometry_msgs/PoseWithCovariance",
    },
    "Detection2D": {
        "header": "std_msgs/Header",
        "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
        "bbox": "vision_msgs/BoundingBox2D",
        "id": "string",
    },
    "Detection2DArray": {"header": "std_msgs/Header", "detections": "sequence<vision_msgs/Detection2D>"},
}

# The fgclip_msgs contract of docs/design.md.
FGCLIP_MSGS_LAYOUT = {
    "FineGrainedDetection": {
        "id": "string",
        "bbox": "vision_msgs/BoundingBox2D",
        "valid": "boolean",
        "rejected_code": "uint8",
        "rejected_reason": "string",
        "best_index": "int32",
        "best_query": "string",
        "score": "float",
        "probability": "float",
        "margin": "float",
        "scores": "sequence<float>",
    },
    "FineGrainedDetections": {
        "header": "std_msgs/Header",
        "model": "string",
        "queries": "sequence<string>",
        "detections": "sequence<fgclip_msgs/FineGrainedDetection>",
    },
}
QUERY_SRV_LAYOUT = {
    "Request": {
        "queries": "sequence<string>",
        "min_score": "float",
        "wait_for_next_frame": "boolean",
        "timeout_s": "float",
    },
    "Response": {
        "success": "boolean",
        "message": "string",
        "header": "std_msgs/Header",
        "queries": "sequence<string>",
        "detections": "sequence<fgclip_msgs/FineGrainedDetection>",
    },
}


def _run_python(code: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter outside the repository root.

    In the root, the fgclip_msgs/ source folder would import as an empty namespace package.
    """
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def test_core_imports_without_ros(tmp_path):
    # Every module of the engine and the tools must import with rclpy and all ROS interface
    # packages unimportable, as in a plain Python environment.
    result = _run_python(
        """
        import importlib, pkgutil, sys

        class BlockRos:
            def find_spec(self, name, path=None, target=None):
                top = name.partition(".")[0]
                if top in ("rclpy", "rosidl_runtime_py", "launch", "launch_ros") or top.endswith(
                    ("_msgs", "_srvs", "_interfaces")
                ):
                    raise ImportError(f"{name} is blocked: fgclip_ros.core must not need ROS")
                return None

        sys.meta_path.insert(0, BlockRos())

        def fail(name):
            raise ImportError(f"cannot import {name}")

        names = []
        # The engine and every tool beside it; only ros/, demo/ and cli/ may need ROS.
        for part in ("core", "bags", "evaluation", "synth", "training", "export", "benchmark"):
            package = importlib.import_module(f"fgclip_ros.{part}")
            names.append(package.__name__)
            for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.", onerror=fail):
                importlib.import_module(info.name)
                names.append(info.name)
        assert "rclpy" not in sys.modules
        print("\\n".join(names))
        """,
        tmp_path,
    )
    assert result.returncode == 0, f"the engine or a tool needs ROS or fails to import:\n{result.stderr}"
    imported = set(result.stdout.split())
    assert {"fgclip_ros.core.errors", "fgclip_ros.bags.reader", "fgclip_ros.export.onnx"} <= imported


def _parse(package_dir: Path):
    from catkin_pkg.package import parse_package

    return parse_package(str(package_dir / "package.xml"))


def test_package_manifests_describe_the_two_packages():
    ros = _parse(REPO / "fgclip_ros")
    msgs = _parse(REPO / "fgclip_msgs")
    assert (ros.name, ros.get_build_type()) == ("fgclip_ros", "ament_python")
    assert (msgs.name, msgs.get_build_type()) == ("fgclip_msgs", "ament_cmake")
    assert "rosidl_interface_packages" in [group.name for group in msgs.member_of_groups]
    ros_exec = {dep.name for dep in ros.exec_depends}
    assert {"rclpy", "fgclip_msgs", "vision_msgs", "sensor_msgs", "lifecycle_msgs"} <= ros_exec
    msgs_deps = {dep.name for dep in msgs.build_depends} | {dep.name for dep in msgs.exec_depends}
    assert {"std_msgs", "vision_msgs"} <= msgs_deps


def test_versions_agree():
    import fgclip_ros

    version = _parse(REPO / "fgclip_ros").version
    assert fgclip_ros.__version__ == version
    assert importlib.metadata.version("fgclip_ros") == version, "re-run scripts/setup.sh"


def _fields(message_class) -> dict:
    return dict(message_class.get_fields_and_field_types())


def test_vision_msgs_has_the_4_1_layout():
    import vision_msgs.msg

    for name, layout in VISION_MSGS_LAYOUT.items():
        message_class = getattr(vision_msgs.msg, name)
        fields = _fields(message_class)
        assert list(fields.items()) == list(layout.items()), f"vision_msgs/{name} differs from 4.1.x"
        message_class.__class__.__import_type_support__()  # the compiled type support loads


def test_fgclip_msgs_match_the_design():
    import fgclip_msgs.msg
    import fgclip_msgs.srv

    for name, layout in FGCLIP_MSGS_LAYOUT.items():
        message_class = getattr(fgclip_msgs.msg, name)
        assert list(_fields(message_class).items()) == list(layout.items()), f"fgclip_msgs/msg/{name}"
        message_class.__class__.__import_type_support__()
    for part, layout in QUERY_SRV_LAYOUT.items():
        message_class = getattr(fgclip_msgs.srv, f"Query_{part}")
        assert list(_fields(message_class).items()) == list(layout.items()), f"fgclip_msgs/srv/Query {part}"
    fgclip_msgs.srv.Query.__class__.__import_type_support__()


def test_rejection_codes_are_the_message_constants():
    # The node fills rejected_code from core.rejection; a client compares it with the REJECTED_* constants.
    from fgclip_msgs.msg import FineGrainedDetection
    from fgclip_ros.core.rejection import Rejection

    constants = {
        name.removeprefix("REJECTED_"): getattr(FineGrainedDetection, name)
        for name in dir(FineGrainedDetection)
        if name.startswith("REJECTED_")
    }
    assert constants == {code.name: code.value for code in Rejection}


def test_wire_type_names(tmp_path):
    # The names DDS sees, read back from the ROS graph: a real vision_msgs publisher matches on these.
    result = _run_python(
        """
        import json, time
        import rclpy
        from fgclip_msgs.msg import FineGrainedDetections
        from fgclip_msgs.srv import Query
        from vision_msgs.msg import Detection2DArray

        rclpy.init()
        node = rclpy.create_node("fgclip_workspace_test")
        node.create_publisher(Detection2DArray, "detections", 1)
        node.create_publisher(FineGrainedDetections, "fine_grained", 1)
        node.create_service(Query, "query", lambda request, response: response)
        for _ in range(50):
            topics = dict(node.get_publisher_names_and_types_by_node("fgclip_workspace_test", "/"))
            services = dict(node.get_service_names_and_types_by_node("fgclip_workspace_test", "/"))
            if "/detections" in topics and "/fine_grained" in topics and "/query" in services:
                break
            time.sleep(0.1)
        print(json.dumps({"topics": topics, "services": services}))
        node.destroy_node()
        rclpy.shutdown()
        """,
        tmp_path,
        # A domain of its own (the private graph's rule) and localhost-only discovery.
        env={
            "ROS_DOMAIN_ID": str(domain_candidates(os.getpid())[0]),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        },
    )
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout.strip().splitlines()[-1])
    assert graph["topics"]["/detections"] == ["vision_msgs/msg/Detection2DArray"]
    assert graph["topics"]["/fine_grained"] == ["fgclip_msgs/msg/FineGrainedDetections"]
    assert graph["services"]["/query"] == ["fgclip_msgs/srv/Query"]


def test_compat_is_hidden_from_colcon():
    assert (REPO / "compat" / "COLCON_IGNORE").is_file()


def _colcon(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("colcon_core", reason="colcon is pinned in requirements.txt")
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from colcon_core.command import main; sys.exit(main())",
            "--log-base",
            os.devnull,
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def test_colcon_lists_both_packages_and_not_compat(tmp_path):
    result = _colcon("list", "--base-paths", str(REPO), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    packages = {line.split("\t")[0]: line.split("\t")[2] for line in result.stdout.splitlines() if line}
    assert packages == {"fgclip_msgs": "(ros.ament_cmake)", "fgclip_ros": "(ros.ament_python)"}


def test_colcon_builds_the_ament_python_package(tmp_path):
    # What `colcon build` installs on a ROS 2 machine: the ament index marker, the share files
    # (package.xml, launch/, config/, models/), the module, and console scripts under lib/fgclip_ros.
    result = _colcon(
        "build",
        "--base-paths",
        str(REPO / "fgclip_ros"),
        "--build-base",
        str(tmp_path / "build"),
        "--install-base",
        str(tmp_path / "install"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "fgclip_ros"
    assert (prefix / "share/ament_index/resource_index/packages/fgclip_ros").is_file()
    share = prefix / "share" / "fgclip_ros"
    assert (share / "package.xml").read_text() == (REPO / "fgclip_ros" / "package.xml").read_text()
    for folder in ("launch", "config", "models"):
        # Recursive: a model's files live in a sub-folder (models/fgsynth/).
        source_root = REPO / "fgclip_ros" / folder
        installed_root = share / folder
        source_files = sorted(str(p.relative_to(source_root)) for p in source_root.rglob("*") if p.is_file())
        installed = sorted(
            str(p.relative_to(installed_root)) for p in installed_root.rglob("*") if p.is_file())
        assert installed == source_files, f"share/fgclip_ros/{folder}"
    assert (prefix / "lib" / "fgclip_ros" / "fgclip-match").is_file()
    site_packages = next(prefix.glob("lib/python3*/site-packages"))
    assert (site_packages / "fgclip_ros" / "core" / "__init__.py").is_file()
    assert not (site_packages / "test").exists()


def test_console_scripts_are_installed():
    scripts = {
        ep.name: ep
        for ep in importlib.metadata.distribution("fgclip_ros").entry_points
        if ep.group == "console_scripts"
    }
    assert scripts["fgclip-match"].value == "fgclip_ros.cli.match:main"
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "fgclip-match").is_file(), "re-run scripts/setup.sh (pip install -e fgclip_ros)"
    for name, entry_point in scripts.items():
        module = entry_point.value.partition(":")[0]
        assert module.startswith("fgclip_ros.cli."), name
        if importlib.util.find_spec(module) is not None:  # later issues add the others
            assert callable(entry_point.load()), f"{name}: {entry_point.value} is not callable"


def test_every_cli_module_has_a_console_script():
    # A command-line module nobody can call is a forgotten entry in setup.py's CONSOLE_SCRIPTS
    # (shared helpers in cli/ start with an underscore).
    installed = {
        ep.value
        for ep in importlib.metadata.distribution("fgclip_ros").entry_points
        if ep.group == "console_scripts"
    }
    cli_dir = REPO / "fgclip_ros" / "fgclip_ros" / "cli"
    expected = {f"fgclip_ros.cli.{p.stem}:main" for p in cli_dir.glob("*.py") if not p.stem.startswith("_")}
    missing = sorted(expected - installed)
    assert not missing, (
        f"add to CONSOLE_SCRIPTS in fgclip_ros/setup.py, then re-run scripts/setup.sh: {missing}"
    )


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (REPO / ".venv").resolve(),
    reason="checks the repository's own .venv only",
)
def test_venv_matches_requirements():
    from packaging.requirements import Requirement

    wrong = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            wrong.append(f"{requirement}: installed {installed}")
    assert not wrong, "re-run scripts/setup.sh; .venv differs from requirements.txt:\n" + "\n".join(wrong)
