# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The linters, in place of ament_flake8 / ament_pep257 / ament_copyright / ament_xmllint.

ruff with the repository's ruff.toml stands for flake8 + pep257; the copyright check wants the
project header on every Python file; package.xml files must be well-formed and accepted by
catkin_pkg without warnings (the schema check of ament_xmllint needs the network, so it is not run).
"""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEADER = ("# Copyright 2026 The fgclip_ros authors", "# SPDX-License-Identifier: Apache-2.0")
SKIPPED_DIRS = {".venv", "build", "install", "log", "__pycache__", ".git"}
PACKAGE_XMLS = [
    REPO / "fgclip_ros" / "package.xml",
    REPO / "fgclip_msgs" / "package.xml",
    REPO / "compat" / "vision_msgs" / "package.xml",
]


def _python_files(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*.py"):
            relative = path.relative_to(REPO).parts
            if SKIPPED_DIRS.isdisjoint(relative) and not any(p.endswith(".egg-info") for p in relative):
                found.append(path)
    return sorted(found)


def test_ruff_is_clean():
    pytest.importorskip("ruff", reason="ruff is pinned in requirements.txt; install it to lint")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"ruff found problems (config: ruff.toml; fix them, or `ruff check --fix .` for the fixable):\n"
        f"{result.stdout}{result.stderr}"
    )


def test_every_python_file_has_the_copyright_header():
    files = _python_files(REPO / "fgclip_ros", REPO / "scripts")
    assert files, "no Python files found: the test looks in the wrong place"
    missing = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].startswith("#!"):  # an executable script's interpreter line comes first
            lines = lines[1:]
        if tuple(lines[:2]) != HEADER:
            missing.append(str(path.relative_to(REPO)))
    header = "\n".join(HEADER)
    assert not missing, f"these files do not start with\n{header}\n:\n" + "\n".join(missing)


@pytest.mark.parametrize("package_xml", PACKAGE_XMLS, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_package_xml_is_well_formed(package_xml):
    xmllint = shutil.which("xmllint")
    if xmllint:
        result = subprocess.run([xmllint, "--noout", str(package_xml)], capture_output=True, text=True)
        assert result.returncode == 0, f"xmllint rejects {package_xml}:\n{result.stderr}"
    else:
        ET.parse(package_xml)  # raises ParseError naming line and column


@pytest.mark.parametrize("package_xml", PACKAGE_XMLS, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_package_xml_is_accepted_by_catkin_pkg(package_xml):
    from catkin_pkg.package import parse_package

    warnings: list[str] = []
    package = parse_package(str(package_xml), warnings=warnings)  # validates; raises InvalidPackage
    assert package.package_format == 3
    assert package.name == package_xml.parent.name
    assert not warnings, f"catkin_pkg warns about {package_xml}:\n" + "\n".join(warnings)
