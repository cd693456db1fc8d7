# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Every command line in a console script's docstring is one its own parser accepts.

The docstrings are what `--help` shows (and what users copy); an example with a renamed or
removed option fails here. test/graph/test_play_bag.py also runs fgclip-play-bag's examples.
"""

import argparse
import importlib

import pytest
from cli_examples import CLI_DIR, console_scripts, docstring_commands


def _examples():
    scripts = console_scripts()
    for path in sorted(CLI_DIR.glob("[!_]*.py")):
        for command in docstring_commands(path):
            yield pytest.param(scripts, command, id=f"{path.stem}: {' '.join(command)[:60]}")


@pytest.mark.parametrize(("scripts", "command"), list(_examples()))
def test_docstring_example_parses(scripts, command):
    program, *args = command
    assert program in scripts, f"{program} is not a console script"
    module = importlib.import_module(scripts[program])
    build_parser = getattr(module, "build_parser", None)
    if build_parser is None:  # fgclip-perception: its parser lives in the bringup
        from fgclip_ros.ros.bringup import build_parser, split_ros_args

        args = split_ros_args(args)[0]
    parser: argparse.ArgumentParser = build_parser()
    parser.exit_on_error = False
    try:
        parser.parse_args(args)
    except (argparse.ArgumentError, SystemExit) as error:
        raise AssertionError(f"`{' '.join(command)}` is refused by {program}'s parser: {error}") from error


def test_every_console_script_with_examples_is_covered():
    # The CLIs whose docstrings show how to call them (at least these must keep examples).
    programs = {command[0] for path in CLI_DIR.glob("[!_]*.py") for command in docstring_commands(path)}
    assert {"fgclip-play-bag", "fgclip-make-sample-bag", "fgclip-query", "fgclip-match"} <= programs
