# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's `autostart` parameter is the one start-up mechanism, honoured by the node itself.

Every start path (ros2 run, ros2 launch, fgclip-perception) runs the same executable, which builds
the node from the ROS arguments (`--params-file`, `-p autostart:=...`) and spins it. Here the node is
built the same way in-process on a private graph; its lifecycle transitions are counted.
"""

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("fgclip_msgs.msg")

from graph_harness import NODE, build_known_answer_model, in_process_node, wait_started, write_params  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402

START_TIMEOUT_S = 120.0  # model load on a busy 2-core machine


@pytest.fixture
def transitions(monkeypatch):
    """How often the node ran each transition (patched before the node binds its callbacks)."""
    from fgclip_ros.ros.perception_node import PerceptionNode

    counts = {"configure": 0, "activate": 0}
    for name in counts:
        original = getattr(PerceptionNode, f"on_{name}")

        def counted(self, state, _original=original, _name=name):
            counts[_name] += 1
            return _original(self, state)

        monkeypatch.setattr(PerceptionNode, f"on_{name}", counted)
    return counts


def test_the_node_starts_itself_once_with_the_shipped_default(tmp_path, transitions):
    manifest = build_known_answer_model(tmp_path / "model")
    params = write_params(tmp_path / "params.yaml", manifest)

    with in_process_node("fgclip_autostart_test", ("--params-file", str(params))) as (node, client):
        assert wait_started(node, START_TIMEOUT_S), node.last_error
        assert client.lifecycle_state() == "active"
        assert transitions == {"configure": 1, "activate": 1}


def test_with_autostart_false_the_node_waits_for_lifecycle_calls(tmp_path, transitions):
    manifest = build_known_answer_model(tmp_path / "model")
    params = write_params(tmp_path / "params.yaml", manifest)

    ros_args = ("--params-file", str(params), "-p", "autostart:=false")
    with in_process_node("fgclip_autostart_test", ros_args) as (node, client):
        assert node.autostart_result is None
        assert client.lifecycle_state() == "unconfigured"
        assert transitions == {"configure": 0, "activate": 0}
        # `ros2 lifecycle set /fgclip_perception configure` / `activate`
        assert client.change_state(Transition.TRANSITION_CONFIGURE, NODE, START_TIMEOUT_S)
        assert client.change_state(Transition.TRANSITION_ACTIVATE)
        assert client.lifecycle_state() == "active"
        assert transitions == {"configure": 1, "activate": 1}
