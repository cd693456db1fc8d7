# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's parameter YAML read as rclpy reads it, without rclpy (for the tools and the demo).

A ROS 2 parameter file maps node names to ``ros__parameters``; the node gets the ``/**`` section
first, then its own (``fgclip_perception`` or ``/fgclip_perception``) on top. Dotted parameter
names nest in the file (``sync: {tolerance_s: 0.0}``).
"""

from pathlib import Path

NODE_NAME = "fgclip_perception"


def read_node_params(params_file: Path | str, node_name: str = NODE_NAME) -> dict:
    """The parameters a node named ``node_name`` gets from ``params_file`` (nested as in the file)."""
    import yaml

    data = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    params: dict = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key) if isinstance(data, dict) else None
        params.update((section or {}).get("ros__parameters") or {})
    return params


def installed_node_params() -> dict:
    """The parameters of the installed config/perception.yaml ({} when it is not installed)."""
    from fgclip_ros.core.paths import config_dir

    path = config_dir() / "perception.yaml"
    return read_node_params(path) if path.is_file() else {}


def nested(params: dict, dotted: str, default=None):
    """``params["sync"]["tolerance_s"]`` for "sync.tolerance_s"; ``default`` when a level is missing."""
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
