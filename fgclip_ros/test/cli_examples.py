# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The example command lines in the console scripts' docstrings (what `--help` shows users)."""

import ast
import importlib.metadata
import shlex
from pathlib import Path

CLI_DIR = Path(__file__).resolve().parents[1] / "fgclip_ros" / "cli"


def console_scripts() -> dict[str, str]:
    """Console script name -> module (setup.py's CONSOLE_SCRIPTS)."""
    return {
        ep.name: ep.value.partition(":")[0]
        for ep in importlib.metadata.distribution("fgclip_ros").entry_points
        if ep.group == "console_scripts"
    }


def docstring_commands(module_path: Path) -> list[list[str]]:
    """The example commands of a module docstring, as argument lists.

    Examples are indented lines starting with `fgclip-`; continuations are joined, `a && b` split
    and comments dropped.
    """
    text = ast.get_docstring(ast.parse(module_path.read_text())) or ""
    lines, pending = [], ""
    for raw in text.splitlines()[1:]:  # the first line is the summary
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        indented = bool(pending) or raw[:1].isspace()
        pending = ""
        if indented and line.startswith("fgclip-"):
            lines.append(line)
    commands = []
    for line in lines:
        for part in line.split("&&"):
            commands.append(shlex.split(part, comments=True))
    return commands
