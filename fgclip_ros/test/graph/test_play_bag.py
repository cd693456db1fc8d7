# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-play-bag: the pip world's `ros2 bag play` replays every message into a live graph."""

import subprocess
import sys

import pytest
from cli_examples import CLI_DIR, console_scripts, docstring_commands
from graph_harness import GraphClient, graph_domain_id, isolated_env, wait_until

from fgclip_ros.bags.sample import SampleBagConfig, write_sample_bag


@pytest.fixture(scope="module")
def sample_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("play") / "sample_mcap"
    write_sample_bag(path, SampleBagConfig(frames=4, storage="mcap"))
    return path


def run_player(args, domain_id, timeout_s=60):
    return subprocess.run(
        [sys.executable, "-m", "fgclip_ros.cli.play_bag", *args],
        env=isolated_env(domain_id), capture_output=True, text=True, timeout=timeout_s,
    )


def test_every_image_and_detection_reaches_a_subscriber(sample_bag):
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    domain_id = graph_domain_id()
    client = GraphClient(domain_id, "fgclip_play_bag_test")
    try:
        client.subscribe(Image, "/camera/image_raw", key="images")
        client.subscribe(Detection2DArray, "/robot/detections", key="detections")
        result = run_player(
            [str(sample_bag), "--remap", "/detections:=/robot/detections",
             "--wait-for", "/camera/image_raw", "/detections", "--rate", "4"],
            domain_id,
        )
        assert result.returncode == 0, result.stderr
        # --remap is the tool's own option: rcl must not see it (it warns "This syntax is deprecated").
        assert "deprecated" not in result.stderr, result.stderr
        # The player exits only after its last messages were acknowledged: none may be missing.
        wait_until(lambda: len(client.messages("images")) == 4 and len(client.messages("detections")) == 4,
                   timeout_s=20, what="4 images and 4 detection arrays")
        images, detections = client.messages("images"), client.messages("detections")
        # Each frame's detections carry its image's stamp: a stamp-pairing consumer can match them.
        assert [m.header.stamp for m in images] == [m.header.stamp for m in detections]
        assert images[0].encoding == "rgb8" and len(images[0].data) == images[0].step * images[0].height
        assert "played" in result.stdout
    finally:
        client.close()


def test_a_missing_bag_is_one_clear_line(tmp_path):
    result = run_player([str(tmp_path / "nope")], graph_domain_id())
    assert result.returncode == 2
    assert str(tmp_path / "nope") in result.stderr and "Traceback" not in result.stderr


def test_the_docstring_example_plays_the_sample_bag_as_written(tmp_path):
    # fgclip-play-bag's own example (what --help shows), with its /tmp folder moved into tmp_path,
    # into a subscriber standing in for the running fgclip-perception.
    from sensor_msgs.msg import Image

    scripts = console_scripts()
    commands = docstring_commands(CLI_DIR / "play_bag.py")
    assert [c[0] for c in commands] == ["fgclip-make-sample-bag", "fgclip-play-bag"]
    domain_id = graph_domain_id()
    client = GraphClient(domain_id, "fgclip_play_bag_example")
    try:
        client.subscribe(Image, "/camera/image_raw", key="images")
        for program, *args in commands:
            args = [arg.replace("/tmp/", f"{tmp_path}/") for arg in args]
            result = subprocess.run(
                [sys.executable, "-m", scripts[program], *args],
                env=isolated_env(domain_id), capture_output=True, text=True, timeout=180,
            )
            assert result.returncode == 0, f"{program} {' '.join(args)}:\n{result.stdout}{result.stderr}"
        assert "played" in result.stdout
        wait_until(lambda: client.messages("images"), timeout_s=20, what="the sample bag's images")
    finally:
        client.close()
