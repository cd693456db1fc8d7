# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Pip-world bringup (no ``ros2 launch`` on PyPI): the perception node with THE parameter file, autostarted.

``fgclip-perception --params-file config/perception.yaml [--image-topic T] [--model M] [--ros-args ...]``
does what ``ros2 launch fgclip_ros perception.launch.py`` does on a ROS install, with the same
arguments (``image_topic:=T`` there is ``--image-topic T`` here): rclpy is initialised with
``--params-file`` (so the very same YAML applies) and a MultiThreadedExecutor spins the node until
SIGINT/SIGTERM, after which the model is released and rclpy shut down. The node configures and
activates itself when its ``autostart`` parameter is true; when that fails, the bringup exits 1.
Further SIGINT/SIGTERM during the cleanup are ignored (``ros2 launch`` and a terminal's Ctrl-C can
signal the whole process group twice), so the node still exits 0, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.paths import config_dir
from fgclip_ros.export.deploy import BACKENDS

EXECUTOR_THREADS = 8  # frames + waiting Query calls + lifecycle/parameter services + diagnostics
EXIT_OK, EXIT_CONFIGURE_FAILED = 0, 1  # a user error is 2 (cli._common.run_main)
SHUTDOWN_TIMEOUT_S = 1.0  # executor threads still running a callback after this are not waited for


def _ignore_stop_signals() -> None:
    """Cleanup has started: another SIGINT/SIGTERM must not interrupt it (it ends on its own)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def default_params_file() -> Path:
    return config_dir() / "perception.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-perception",
        description="Start the fgclip_perception lifecycle node with a parameter file and bring it to active "
        "(the pip-world equivalent of `ros2 launch fgclip_ros perception.launch.py`). "
        "Arguments after --ros-args go to ROS (remapping, -p name:=value, --log-level ...).",
    )
    parser.add_argument(
        "--params-file", type=Path, default=None, help=f"parameter YAML (default: {default_params_file()})"
    )
    parser.add_argument("--model", help="override the 'model' parameter (manifest name or path)")
    parser.add_argument("--device", help="override 'device' (cpu, cuda, cuda:1, auto)")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="override 'dtype'")
    parser.add_argument("--backend", choices=BACKENDS, help="override 'backend'")
    parser.add_argument(
        "--query", action="append", default=[], metavar="TEXT",
        help="a query, repeatable: together they override the 'queries' parameter",
    )
    # The old spelling `--queries Q1 Q2 ...`, still accepted, not shown.
    parser.add_argument("--queries", nargs="+", default=[], dest="old_queries", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help="namespace of the node (e.g. robot1)")
    parser.add_argument(
        "--image-topic",
        help="input image topic (image_transport base name; compressed input is <topic>/compressed)",
    )
    parser.add_argument("--detections-topic", help="input vision_msgs/Detection2DArray topic")
    parser.add_argument(
        "--use-sim-time", action="store_true", help="use the /clock topic as time (a replayed bag's clock)"
    )
    parser.add_argument(
        "--no-autostart",
        action="store_true",
        help="set the node's autostart parameter false: it waits unconfigured for `ros2 lifecycle set`",
    )
    return parser


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our arguments, ROS arguments from --ros-args on, without the final --ros-args marker)."""
    if "--ros-args" not in argv:
        return argv, []
    index = argv.index("--ros-args")
    return argv[:index], argv[index + 1 :]


def ros_arguments(
    options: argparse.Namespace, params_file: Path | None, user_ros_args: list[str]
) -> list[str]:
    """Rcl arguments: the params file, then our overrides, then the user's (later ones win)."""
    args = ["--ros-args"] + (["--params-file", str(params_file)] if params_file is not None else [])
    overrides = {
        "model": options.model,
        "device": options.device,
        "dtype": options.dtype,
        "backend": options.backend,
    }
    for name, value in overrides.items():
        if value is not None:
            args += ["-p", f"{name}:={json.dumps(value)}"]
    queries = options.query + options.old_queries
    if queries:
        args += ["-p", f"queries:={json.dumps(queries, ensure_ascii=False)}"]
    if options.no_autostart:
        args += ["-p", "autostart:=false"]
    if options.use_sim_time:
        args += ["-p", "use_sim_time:=true"]
    namespace = "/" + options.namespace.strip("/") if options.namespace else None  # launch_ros does the same
    remaps = {"__ns": namespace, "image": options.image_topic, "detections": options.detections_topic}
    for name, target in remaps.items():
        if target:
            args += ["-r", f"{name}:={target}"]
    return args + user_ros_args


def run(options: argparse.Namespace, user_ros_args: list[str]) -> int:
    """Run the node until it is stopped; `user_ros_args`: what followed --ros-args."""
    params_file = options.params_file
    # ros2 launch passes its parameter files after --ros-args; then the default file is not added.
    if params_file is None and "--params-file" not in user_ros_args:
        params_file = default_params_file()
    if params_file is not None and not params_file.is_file():
        raise FgclipError(f"parameter file {params_file} not found; give --params-file PATH")

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from fgclip_ros.ros.dds_profile import use_large_sample_profile
    from fgclip_ros.ros.perception_node import PerceptionNode

    use_large_sample_profile()  # before the first participant: camera-sized images fit in shared memory
    # rclpy installs SIGINT and SIGTERM handlers that shut the context down; spin() then returns/raises.
    rclpy.init(args=["fgclip-perception", *ros_arguments(options, params_file, user_ros_args)])
    node = None
    executor = None
    try:
        node = PerceptionNode()
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        started = node.autostart_result  # the node starts itself when its `autostart` parameter is true
        if started is not None:
            executor.spin_until_future_complete(started)
            if started.done() and not started.result():
                node.get_logger().error(f"not started: {node.last_error or 'see the log above'}")
                return EXIT_CONFIGURE_FAILED
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        _ignore_stop_signals()
        if node is not None:
            node.stop_processing()  # the frame worker ends, waiting Query calls are answered
        if executor is not None:
            executor.shutdown(timeout_sec=SHUTDOWN_TIMEOUT_S)
        if node is not None:
            node.destroy_node()  # releases the model
        rclpy.try_shutdown()
        _ignore_stop_signals()  # rclpy restores the handlers it replaced at init
    return EXIT_OK
