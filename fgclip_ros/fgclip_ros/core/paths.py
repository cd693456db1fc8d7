# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Where the package's data (models/, config/, launch/) and the download cache live."""

import os
import sys
from pathlib import Path

PACKAGE_NAME = "fgclip_ros"


def share_dir() -> Path:
    """Return the folder holding models/, config/ and launch/.

    Order: $FGCLIP_ROS_SHARE, the source tree (editable pip install), the ament index
    (colcon install), then <prefix>/share/fgclip_ros.
    """
    override = os.environ.get("FGCLIP_ROS_SHARE")
    if override:
        return Path(override)
    source_root = Path(__file__).resolve().parents[2]
    if (source_root / "package.xml").is_file() and (source_root / "models").is_dir():
        return source_root
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE_NAME))
    except Exception:  # noqa: BLE001 - ament index absent or package not registered
        return Path(sys.prefix) / "share" / PACKAGE_NAME


def models_dir() -> Path:
    return share_dir() / "models"


def config_dir() -> Path:
    return share_dir() / "config"


def cache_dir() -> Path:
    """Download cache: $FGCLIP_ROS_CACHE, else $XDG_CACHE_HOME/fgclip_ros, else ~/.cache/fgclip_ros."""
    override = os.environ.get("FGCLIP_ROS_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / PACKAGE_NAME
