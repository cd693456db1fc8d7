# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The shipped Fast DDS profile: camera-sized images fit its shared-memory segments, and it is used.

Fast DDS's built-in shared-memory segments are 512 KiB (Fast DDS documentation, SHM transport); a
640x480 rgb8 image is 921,600 bytes, so best-effort readers lost most camera frames. The soak
figures before and after are in docs/node.md.
"""

import xml.etree.ElementTree as ET

from fgclip_ros.ros.dds_profile import PROFILE_VARIABLES, large_sample_profile, use_large_sample_profile
from fgclip_ros.ros.private_graph import isolated_env

FAST_DDS_NS = {"dds": "http://www.eprosima.com"}
FAST_DDS_BUILTIN_SEGMENT = 512 * 1024
FRAME_1280x720_RGB8 = 1280 * 720 * 3


def test_profile_segments_hold_several_hd_frames_and_replace_the_builtin_transports():
    root = ET.parse(large_sample_profile()).getroot()
    shm = [d for d in root.iterfind(".//dds:transport_descriptor", FAST_DDS_NS)
           if d.findtext("dds:type", namespaces=FAST_DDS_NS) == "SHM"]
    assert len(shm) == 1
    segment = int(shm[0].findtext("dds:segment_size", namespaces=FAST_DDS_NS))
    assert FAST_DDS_BUILTIN_SEGMENT < 640 * 480 * 3 and segment >= 4 * FRAME_1280x720_RGB8
    participant = root.find(".//dds:participant", FAST_DDS_NS)
    assert participant.get("is_default_profile") == "true"
    # Without this, Fast DDS adds its own 512 KiB shared-memory transport beside ours.
    assert participant.findtext(".//dds:useBuiltinTransports", namespaces=FAST_DDS_NS) == "false"
    used = {t.text for t in participant.iterfind(".//dds:userTransports/dds:transport_id", FAST_DDS_NS)}
    descriptors = list(root.iterfind(".//dds:transport_descriptor", FAST_DDS_NS))
    declared = {d.findtext("dds:transport_id", namespaces=FAST_DDS_NS) for d in descriptors}
    assert used == declared
    assert "UDPv4" in {d.findtext("dds:type", namespaces=FAST_DDS_NS) for d in descriptors}  # other hosts


def test_processes_of_the_private_graph_start_with_the_profile():
    env = isolated_env(7, {"PATH": "/bin"})
    assert env[PROFILE_VARIABLES[0]] == str(large_sample_profile())


def test_a_profile_the_user_chose_is_kept_and_other_rmws_are_left_alone():
    for variable in PROFILE_VARIABLES:
        env = use_large_sample_profile({variable: "/etc/my_profile.xml"})
        assert env == {variable: "/etc/my_profile.xml"}
    assert use_large_sample_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {
        "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"
    }
