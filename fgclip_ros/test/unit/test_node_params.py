# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The parameter file, the declared parameters, the launch file and the bringup's arguments agree."""

import ast
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from fgclip_ros.ros.bringup import build_parser, ros_arguments, split_ros_args  # noqa: E402
from fgclip_ros.ros.param_file import read_node_params  # noqa: E402
from fgclip_ros.ros.params import SPEC_BY_NAME, SPECS, check_value, descriptor_of  # noqa: E402

PACKAGE_DIR = Path(__file__).resolve().parents[2]
# docs/node.md's launch arguments; the pip bringup offers each as --<name with dashes>.
LAUNCH_ARGUMENTS = (
    "model",
    "device",
    "dtype",
    "backend",
    "params_file",
    "namespace",
    "autostart",
    "image_topic",
    "detections_topic",
    "use_sim_time",
)


def flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def test_parameter_file_documents_exactly_the_declared_parameters():
    values = flatten(read_node_params(PACKAGE_DIR / "config" / "perception.yaml"))
    assert set(values) == {spec.name for spec in SPECS}
    for spec in SPECS:
        value = values[spec.name]
        # rclpy refuses an int for a double parameter: the file must write 1.0, not 1.
        assert type(value) is type(spec.default), spec.name
        assert check_value(spec.name, value) is None, spec.name


def test_the_tools_default_to_the_nodes_parameters():
    # One source per default: what the bag evaluator does when nobody says otherwise is what the node does.
    from fgclip_ros.cli.eval_bag import build_parser as eval_bag_parser
    from fgclip_ros.evaluation.bag import EvalBagOptions

    options = EvalBagOptions()
    assert options.tolerance_s == SPEC_BY_NAME["sync.tolerance_s"].default
    assert options.min_score == SPEC_BY_NAME["min_score"].default
    assert options.max_detections == SPEC_BY_NAME["max_detections"].default
    args = eval_bag_parser({}).parse_args(["bag"])  # no parameter file: the node's code defaults
    assert args.tolerance == SPEC_BY_NAME["sync.tolerance_s"].default
    assert args.device == SPEC_BY_NAME["device"].default == "auto"
    assert args.min_score == SPEC_BY_NAME["min_score"].default


def _launch_argument_default(name: str) -> str:
    """default_value of the launch file's DeclareLaunchArgument(name, ...) (launch is not on PyPI)."""
    tree = ast.parse((PACKAGE_DIR / "launch" / "perception.launch.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "DeclareLaunchArgument"
            and node.args
            and ast.literal_eval(node.args[0]) == name
        ):
            return next(ast.literal_eval(k.value) for k in node.keywords if k.arg == "default_value")
    raise AssertionError(f"the launch file declares no argument {name!r}")


def test_autostart_has_one_default_in_the_code_the_parameter_file_and_the_launch_file():
    # ros2 run, ros2 launch and fgclip-perception start the node the same way when nobody says otherwise.
    in_file = flatten(read_node_params(PACKAGE_DIR / "config" / "perception.yaml"))["autostart"]
    in_launch = _launch_argument_default("autostart")
    assert in_launch in ("true", "false")
    assert SPEC_BY_NAME["autostart"].default is in_file is (in_launch == "true")


def test_every_parameter_has_a_description():
    for spec in SPECS:
        descriptor = descriptor_of(spec)
        assert descriptor.description.strip() and descriptor.name == spec.name


def test_check_value_rejects_bad_choices_and_ranges():
    assert check_value("backend", "tensorrt")
    assert check_value("min_score", 2.0)
    assert check_value("prompt_template", "no slot")
    assert check_value("prompt_template", "") is None
    assert check_value("image_transport", "compressed") is None and check_value("image_transport", "jpeg")
    assert check_value("image_size", [1280, 720]) is None and check_value("image_size", [0, 0]) is None
    for bad in ([1280], [1280, 0], [-1, 720], [1280, 720, 3]):
        assert check_value("image_size", bad), bad


def test_launch_file_mirrors_the_main_parameters():
    source = (PACKAGE_DIR / "launch" / "perception.launch.py").read_text()
    tree = ast.parse(source)  # launch/launch_ros are not on PyPI: check what can be checked here
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    for argument in LAUNCH_ARGUMENTS:
        assert argument in strings, argument
    assert "generate_launch_description" in source
    assert "fgclip-perception" in strings and "fgclip_perception" in strings
    # The node is a LifecycleNode given the parameter file and the input remappings; it starts itself
    # (its `autostart` parameter), so the launch file emits no lifecycle transitions of its own.
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "LifecycleNode"
    ]
    keywords = {keyword.arg: keyword.value for keyword in call.keywords}
    assert {"parameters", "remappings"} <= set(keywords)
    assert "params_file" in ast.unparse(keywords["parameters"])
    assert "ChangeState" not in source and "OnStateTransition" not in source


def test_bringup_arguments():
    ours, ros = split_ros_args(["--model", "m", "--ros-args", "-r", "image:=/cam/image"])
    assert ours == ["--model", "m"] and ros == ["-r", "image:=/cam/image"]
    options = build_parser().parse_args(
        ["--model", "m", "--query", "a red mug", "--query", "赤い物体", "--no-autostart"]
    )
    args = ros_arguments(options, Path("/p.yaml"), ros)
    assert args[:3] == ["--ros-args", "--params-file", "/p.yaml"]
    assert 'model:="m"' in args and "autostart:=false" in args
    assert 'queries:=["a red mug", "赤い物体"]' in args
    old_spelling = build_parser().parse_args(["--queries", "a red mug", "赤い物体"])
    assert 'queries:=["a red mug", "赤い物体"]' in ros_arguments(old_spelling, Path("/p.yaml"), [])
    assert args[-2:] == ["-r", "image:=/cam/image"]  # the user's ROS arguments come last and win
    # Under ros2 launch the parameter files arrive after --ros-args: no default file is added.
    assert ros_arguments(build_parser().parse_args([]), None, ["--params-file", "/l.yaml"]) == [
        "--ros-args",
        "--params-file",
        "/l.yaml",
    ]


def test_bringup_mirrors_the_launch_arguments():
    options = set(vars(build_parser().parse_args([])))  # every option's destination
    for argument in LAUNCH_ARGUMENTS:
        assert {argument, f"no_{argument}"} & options, (
            f"fgclip-perception has no --{argument.replace('_', '-')}"
        )
    args = ros_arguments(
        build_parser().parse_args(
            [
                "--image-topic",
                "/camera/image_raw",
                "--detections-topic",
                "/det",
                "--use-sim-time",
                "--namespace",
                "robot1",
            ]
        ),
        None,
        [],
    )
    flat = " ".join(args)
    assert "-r image:=/camera/image_raw" in flat and "-r detections:=/det" in flat
    assert "-p use_sim_time:=true" in flat and "-r __ns:=/robot1" in flat
    assert "image:=" not in " ".join(ros_arguments(build_parser().parse_args([]), None, []))
