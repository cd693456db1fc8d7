# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The package's import direction: core <- tools <- ros/demo, read from the source with `ast`.

`fgclip_ros.core` is what the node runs per frame; the tools (bags, evaluation, synth, training,
export, benchmark) are its siblings and use it; `ros` adapts core to ROS; `demo` and `cli` sit on
top. A module that imports against that direction fails here with the offending line.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fgclip_ros"
TOOLS = ("bags", "evaluation", "synth", "training", "export", "benchmark")

# What each top-level part of the package must never import (the reverse direction).
FORBIDDEN = {
    "core": {*TOOLS, "ros", "demo", "cli"},
    "bags": {"ros", "demo", "cli", "evaluation", "training", "export", "benchmark"},
    # Evaluators take the vocabulary they judge with as an argument; they never import the synthetic world.
    "evaluation": {"ros", "demo", "cli", "synth", "training", "benchmark"},
    # The synthetic world writes FG-OVD-format sets, so it may use the format's constants.
    "synth": {"ros", "demo", "cli", "training", "export", "benchmark", "bags"},
    "training": {"ros", "demo", "cli", "export", "benchmark"},
    "export": {"ros", "demo", "cli", "training", "benchmark", "synth", "evaluation", "bags"},
    "benchmark": {"ros", "demo", "cli", "training", "synth", "evaluation", "bags"},
    "ros": {"demo", "cli", "training", "benchmark", "synth"},
}


def imported_parts(path: Path) -> list[tuple[int, str]]:
    """(line, top-level part of fgclip_ros) for every import of fgclip_ros in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "fgclip_ros":
                names = [f"fgclip_ros.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fgclip_ros" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def modules_of(part: str) -> list[Path]:
    return sorted((PACKAGE / part).rglob("*.py"))


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_imports_only_in_the_allowed_direction(part):
    modules = modules_of(part)
    assert modules, f"fgclip_ros/{part}/ has no modules: the layout changed, update this test"
    offences = [
        f"{path.relative_to(PACKAGE)}:{line} imports fgclip_ros.{target}"
        for path in modules
        for line, target in imported_parts(path)
        if target in FORBIDDEN[part]
    ]
    assert not offences, "imports against the layout's direction:\n" + "\n".join(offences)


def test_every_top_level_part_is_covered():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert parts - {"cli", "demo"} == set(FORBIDDEN)


def test_the_checker_sees_a_reverse_import(tmp_path):
    # The rule is only as good as the parser: a module importing a tool from core must be caught.
    bad = tmp_path / "bad.py"
    bad.write_text("from fgclip_ros.training.reprojection import x\nimport fgclip_ros.ros.params\n"
                   "from fgclip_ros import demo\n")
    assert [target for _, target in imported_parts(bad)] == ["training", "ros", "demo"]


# Libraries only the tools use: the node (core and its ROS adapter) must start without them.
NODE_PARTS = ("core", "ros")
TOOL_ONLY_LIBRARIES = {"ray"}  # fgclip-eval-bags' cluster runtime


def imported_libraries(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) for every absolute import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("part", NODE_PARTS)
def test_the_node_never_imports_tool_only_libraries(part):
    offences = [
        f"{path.relative_to(PACKAGE)}:{line} imports {library}"
        for path in modules_of(part)
        for line, library in imported_libraries(path)
        if library in TOOL_ONLY_LIBRARIES
    ]
    assert not offences, "the node must not need the tools' libraries:\n" + "\n".join(offences)


def test_the_checker_sees_a_library_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import ray.util.queue\n    from ray import remote\n")
    assert [library for _, library in imported_libraries(bad)] == ["ray", "ray"]
