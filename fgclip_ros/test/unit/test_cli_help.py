# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Every console script's --help names its inputs, its outputs and each exit status it returns.

Scripts and shells act on the exit status, so each code a tool returns is listed under one
"Exit status:" heading: 0, 2 (a user error, cli._common.run_main) and the tool's own codes.
"""

import importlib
import re

import pytest
from cli_examples import console_scripts

from fgclip_ros.cli import _common

# The codes besides 0 and 2 that a tool returns itself (its own EXIT_* constants).
OWN_EXIT_CODES = {
    "fgclip-demo": {1, 130},  # the demo failed; interrupted
    "fgclip-eval-bags": {1},  # some bag failed
    "fgclip-export": {3},  # the ONNX graphs drift from PyTorch
    "fgclip-perception": {1},  # the node did not configure/activate
    "fgclip-play-bag": {130},  # interrupted
    "fgclip-query": {1},  # the node refused
}


def _help(program: str, capsys) -> str:
    module = importlib.import_module(console_scripts()[program])
    assert module.main(["--help"]) == 0
    return capsys.readouterr().out


def _section(text: str, heading: str) -> str:
    """The lines under `heading` (a line of its own) up to the next blank line."""
    match = re.search(rf"^{heading}:?\s*$\n((?:.+\n?)+)", text, flags=re.IGNORECASE | re.MULTILINE)
    assert match, f"no {heading!r} section in:\n{text}"
    return match.group(1)


@pytest.mark.parametrize("program", sorted(console_scripts()))
def test_help_names_inputs_outputs_and_exit_status(program, capsys):
    text = _help(program, capsys)
    assert _section(text, "Inputs").strip()
    assert _section(text, "Outputs").strip()
    listed = {int(code) for code in re.findall(r"^\s+(\d+)\s", _section(text, "Exit status"), re.MULTILINE)}
    expected = {0, _common.EXIT_USER_ERROR} | OWN_EXIT_CODES.get(program, set())
    assert listed == expected, f"{program} --help lists {sorted(listed)}, returns {sorted(expected)}"


def test_tools_own_exit_codes_are_the_ones_listed():
    from fgclip_ros.cli import demo, eval_bags, export, play_bag, query
    from fgclip_ros.ros import bringup

    assert {demo.EXIT_FAILED, demo.EXIT_INTERRUPTED} == OWN_EXIT_CODES["fgclip-demo"]
    assert {eval_bags.EXIT_SOME_FAILED} == OWN_EXIT_CODES["fgclip-eval-bags"]
    assert {export.EXIT_VERIFICATION_FAILED} == OWN_EXIT_CODES["fgclip-export"]
    assert {bringup.EXIT_CONFIGURE_FAILED} == OWN_EXIT_CODES["fgclip-perception"]
    assert {play_bag.EXIT_INTERRUPTED} == OWN_EXIT_CODES["fgclip-play-bag"]
    assert {query.EXIT_REFUSED} == OWN_EXIT_CODES["fgclip-query"]
    assert query.EXIT_UNAVAILABLE == _common.EXIT_USER_ERROR  # "no answer" shares 2 with a user error
