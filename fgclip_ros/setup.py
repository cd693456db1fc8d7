# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Packaging of fgclip_ros: an ament_python package that also installs with pip.

colcon (ament_python) and a regular `pip install` run this file and install the share files
(ament index marker, package.xml, launch/, config/, models/) under <prefix>/share through
data_files, and the console scripts under <prefix>/lib/fgclip_ros (setup.cfg). An editable
`pip install -e` (PEP 660) installs no data_files: scripts/setup.sh links them into the venv from
the list `data_files()` computes here, and links the console scripts into lib/fgclip_ros.
"""

import os
import xml.etree.ElementTree as ET
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "fgclip_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def package_xml_version() -> str:
    """Read the version from package.xml, the single place it is written."""
    return ET.parse(os.path.join(HERE, "package.xml")).getroot().findtext("version").strip()


def share_files(folder: str, patterns: tuple[str, ...] = ("*",)) -> list[str]:
    """Files (not folders) under `folder`, as paths relative to this directory, sorted."""
    found = set()
    for pattern in patterns:
        for path in glob(os.path.join(HERE, folder, pattern)):
            if os.path.isfile(path):
                found.add(os.path.relpath(path, HERE))
    return sorted(found)


def data_files() -> list[tuple[str, list[str]]]:
    """The ament layout: resource index marker, package.xml, then launch/, config/ and models/."""
    share = os.path.join("share", PACKAGE_NAME)
    entries = [
        ("share/ament_index/resource_index/packages", [os.path.join("resource", PACKAGE_NAME)]),
        (share, ["package.xml"]),
    ]
    for top in ("launch", "config", "models"):
        # Sub-folders too (models/fgsynth/ holds a model's config, weights and heads).
        folders = [top] + sorted(
            os.path.relpath(path, HERE) for path in glob(os.path.join(HERE, top, "**", ""), recursive=True)
            if os.path.relpath(path, HERE) != top
        )
        for folder in folders:
            files = share_files(folder)
            if files:
                entries.append((os.path.join(share, folder), files))
    return entries


# One module per console script: fgclip_ros.cli.<name with underscores>:main.
CONSOLE_SCRIPTS = [
    "fgclip-match",  # score boxes of one image against queries, no ROS
    "fgclip-perception",  # the perception node with its parameter file, pip world bringup
    "fgclip-query",  # Query service client, table or --json
    "fgclip-make-fgovd",  # write the synthetic FG-OVD-format benchmark
    "fgclip-eval-fgovd",  # FG-OVD benchmark evaluation
    "fgclip-train-base",  # train the project's small base model
    "fgclip-train-reprojection",  # train re-projection heads
    "fgclip-export",  # ONNX export with folded heads
    "fgclip-bench",  # latency/throughput benchmark
    "fgclip-bench-node",  # the node end to end in a private graph: rate, latency, ROS overhead
    "fgclip-eval-bag",  # evaluate the node on a recorded bag
    "fgclip-eval-bags",  # evaluate many bags in one report, in-process or on Ray
    "fgclip-make-sample-bag",  # write the bundled sample bag
    "fgclip-play-bag",  # replay a rosbag2 into the graph (the pip world has no `ros2 bag play`)
    "fgclip-demo",  # the main job: node + sample bag replay + queries + report
]

setup(
    name=PACKAGE_NAME,
    version=package_xml_version(),
    packages=find_packages(where=HERE, exclude=["test", "test.*"]),
    data_files=data_files(),
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="fgclip_ros maintainers",
    maintainer_email="maintainers@fgclip-ros.example.com",
    description="Fine-grained open-vocabulary perception for ROS 2 (FG-CLIP re-projection).",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            f"{name} = {PACKAGE_NAME}.cli.{name.removeprefix('fgclip-').replace('-', '_')}:main"
            for name in CONSOLE_SCRIPTS
        ],
    },
)
