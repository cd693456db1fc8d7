# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The Fast DDS profile for camera-sized samples (config/fastdds_large_samples.xml), unless one is set.

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE when a process creates its first participant, so the
variable must be in the environment before rclpy.init (bringup, bag player) or in the environment a
child process starts with (the private graph of the demo and the tests).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from fgclip_ros.core.paths import config_dir

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_FILE_NAME = "fastdds_large_samples.xml"
FAST_DDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def large_sample_profile() -> Path:
    return config_dir() / PROFILE_FILE_NAME


def use_large_sample_profile(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Point `env` (default: this process's environment) at the shipped profile; a user's choice stays."""
    env = os.environ if env is None else env
    uses_fast_dds = env.get("RMW_IMPLEMENTATION", "") in FAST_DDS_RMWS
    if uses_fast_dds and not any(env.get(name) for name in PROFILE_VARIABLES):
        profile = large_sample_profile()
        if profile.is_file():
            env[PROFILE_VARIABLES[0]] = str(profile)
    return env
