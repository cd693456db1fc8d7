# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Launch the fgclip_perception lifecycle node with config/perception.yaml.

    ros2 launch fgclip_ros perception.launch.py image_topic:=/camera/image_raw detections_topic:=/detections
    ros2 launch fgclip_ros perception.launch.py model:=openai-vit-b-16 device:=cuda dtype:=fp16 \
        namespace:=robot1 params_file:=/path/to/my_perception.yaml autostart:=false use_sim_time:=true

Arguments left empty (model, device, dtype, backend) keep the value from the parameter file.
autostart (default true, as the node's parameter) is passed to the node's `autostart` parameter:
the node configures and activates itself, as under `ros2 run` and `fgclip-perception`. With
autostart:=false the node waits in 'unconfigured' for `ros2 lifecycle set /fgclip_perception
configure` (then activate).
image_topic and detections_topic remap the node's inputs (image_transport naming: with
`image_transport: compressed` the node subscribes to `<image_topic>/compressed`); use_sim_time
sets the node's parameter of that name (replaying a bag with a /clock).
The pip world has no `ros2 launch`; `fgclip-perception --params-file ... --image-topic T
--detections-topic T [--use-sim-time]` does the same there.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

PACKAGE = "fgclip_ros"
EXECUTABLE = "fgclip-perception"
NODE_NAME = "fgclip_perception"
# Launch arguments that, when not empty, override the parameter of the same name.
OVERRIDABLE = {
    "model": "Model manifest name or path (empty: the parameter file's value).",
    "device": "auto | cpu | cuda | cuda:N (empty: the parameter file's value).",
    "dtype": "fp32 | fp16 | bf16 (empty: the parameter file's value).",
    "backend": "auto | torch | onnx (empty: the parameter file's value).",
}


def _is_true(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _node(context):
    params_file = LaunchConfiguration("params_file").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    remappings = [
        ("image", LaunchConfiguration("image_topic").perform(context)),
        ("detections", LaunchConfiguration("detections_topic").perform(context)),
    ]
    overrides = {
        "autostart": _is_true(LaunchConfiguration("autostart").perform(context)),
        "use_sim_time": _is_true(LaunchConfiguration("use_sim_time").perform(context)),
    }
    for name in OVERRIDABLE:
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value

    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=namespace,
        remappings=remappings,
        output="screen",
        emulate_tty=True,
        parameters=[params_file, overrides],
    )
    return [node]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "perception.yaml")
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=default_params,
            description="Parameter YAML of the node (THE parameter file by default).",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node."),
        DeclareLaunchArgument(
            "image_topic",
            default_value="image",
            description="Input image topic (image_transport base; compressed: <image_topic>/compressed).",
        ),
        DeclareLaunchArgument(
            "detections_topic",
            default_value="detections",
            description="Input vision_msgs/Detection2DArray topic.",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="Use the /clock topic as time (true | false)."
        ),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            description="The node's autostart parameter: configure and activate after start (true | false).",
        ),
    ]
    arguments += [
        DeclareLaunchArgument(name, default_value="", description=text) for name, text in OVERRIDABLE.items()
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_node)])
