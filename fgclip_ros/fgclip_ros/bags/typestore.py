# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A rosbags Typestore that knows every message type fgclip_ros reads or writes.

Base: rosbags' built-in ROS 2 Kilted store (std_msgs, sensor_msgs, geometry_msgs, ...). On top:
vision_msgs (all 16 messages of 4.1.1, wire-identical copy) and fgclip_msgs, parsed from
the .msg files of this repository, so a bag written here carries exactly the definitions the node
publishes with. The .msg folders are found in the source tree, then in the installed share folders
(ament index / `<prefix>/share`), so the same code works from a clone, a pip install or colcon.
"""

import functools
import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from fgclip_ros.core.errors import FgclipError

BASE_STORE = Stores.ROS2_KILTED
# package name -> folder of that package inside the source checkout (repository root relative).
SOURCE_MSG_DIRS = {"vision_msgs": "compat/vision_msgs/msg", "fgclip_msgs": "fgclip_msgs/msg"}


class MessageDefinitionError(FgclipError):
    """The .msg definitions of vision_msgs / fgclip_msgs cannot be found or parsed."""


def _repository_root() -> Path:
    # fgclip_ros/fgclip_ros/bags/typestore.py -> the repository root is four levels up.
    return Path(__file__).resolve().parents[3]


def _installed_share_dirs(package: str) -> list[Path]:
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(package)))
    except Exception:  # noqa: BLE001 - ament index absent or package not registered there
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / package)
    candidates.append(Path(sys.prefix) / "share" / package)
    return candidates


def msg_dir_candidates(package: str) -> list[Path]:
    """Folders searched for `<package>`'s .msg files, in order."""
    candidates = []
    if package in SOURCE_MSG_DIRS:
        candidates.append(_repository_root() / SOURCE_MSG_DIRS[package])
    candidates += [share / "msg" for share in _installed_share_dirs(package)]
    return candidates


def find_msg_dir(package: str) -> Path:
    """The first folder holding `<package>`'s .msg files; MessageDefinitionError naming where it looked."""
    candidates = msg_dir_candidates(package)
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.msg")):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise MessageDefinitionError(
        f"no .msg files of {package} found (looked in: {looked}); run from the source checkout "
        f"or install the {package} interface package (scripts/setup.sh does)"
    )


def types_from_msg_dir(package: str, folder: Path) -> dict:
    """Parse every `<folder>/*.msg` as `<package>/msg/<Name>` into a rosbags Typesdict."""
    typs: dict = {}
    for path in sorted(folder.glob("*.msg")):
        name = f"{package}/msg/{path.stem}"
        try:
            typs.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        except Exception as err:  # noqa: BLE001 - rosbags raises several parser errors
            raise MessageDefinitionError(f"cannot parse {path} as {name}: {err}") from err
    return typs


def build_typestore(msg_dirs: dict[str, Path] | None = None) -> Typestore:
    """A new Typestore: ROS 2 Kilted built-ins + vision_msgs + fgclip_msgs.

    `msg_dirs` overrides the folder per package (e.g. {"vision_msgs": Path(...)}); the rest is searched.
    """
    msg_dirs = dict(msg_dirs or {})
    store = get_typestore(BASE_STORE)
    typs: dict = {}
    for package in ("vision_msgs", "fgclip_msgs"):
        folder = msg_dirs.get(package) or find_msg_dir(package)
        typs.update(types_from_msg_dir(package, Path(folder)))
    try:
        store.register(typs)
    except Exception as err:  # noqa: BLE001 - TypesysError or a code-generation error
        raise MessageDefinitionError(f"cannot register vision_msgs/fgclip_msgs definitions: {err}") from err
    return store


@functools.lru_cache(maxsize=1)
def project_typestore() -> Typestore:
    """The process-wide shared store (built once). Treat as read-only: never register into it."""
    return build_typestore()
