# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Every console script goes through cli._common.run_main: one user-error boundary, one set of exit codes.

0 done, 1 the tool's own failure, 2 a user error (bad arguments, a missing file: one line on stderr).
"""

import importlib

import pytest
from cli_examples import console_scripts

from fgclip_ros.cli import _common


@pytest.mark.parametrize("program", sorted(console_scripts()))
def test_console_script_goes_through_run_main(program, monkeypatch, capsys):
    module = importlib.import_module(console_scripts()[program])
    calls = []

    def recording_run_main(prog, parser, run, argv, quiet_flag=None):
        calls.append(prog)
        return _common.run_main(prog, parser, run, argv, quiet_flag)

    monkeypatch.setattr(module, "run_main", recording_run_main, raising=False)
    assert module.main(["--help"]) == 0
    assert calls == [program], f"{program}'s main does not call run_main"
    assert program in capsys.readouterr().out


@pytest.mark.parametrize(
    ("program", "args", "old_out"),
    [
        ("fgclip-eval-fgovd", ["--model", "m", "--benchmark", "b"], "fgovd-eval.json"),
        ("fgclip-train-reprojection", ["--model", "m", "--train", "t"], "heads.pt"),
    ],
)
def test_out_naming_a_file_is_a_user_error(program, args, old_out, tmp_path, capsys):
    # --out DIR is a folder in every tool; the former `--out FILE` spelling must not make a folder "x.json".
    module = importlib.import_module(console_scripts()[program])
    assert module.main([*args, "--out", str(tmp_path / old_out)]) == _common.EXIT_USER_ERROR
    assert "names a file; give the folder to write into" in capsys.readouterr().err
    assert not (tmp_path / old_out).exists()


def test_play_bag_bad_remap_is_a_one_line_user_error(tmp_path, capsys):
    from fgclip_ros.cli.play_bag import main

    assert main([str(tmp_path), "--remap", "/camera/image_raw"]) == _common.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == "fgclip-play-bag: error: --remap '/camera/image_raw': write FROM:=TO"


def test_perception_missing_parameter_file_is_a_one_line_user_error(tmp_path, capsys):
    from fgclip_ros.cli.perception import main

    missing = tmp_path / "perception.yaml"
    assert main(["--params-file", str(missing)]) == _common.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err == f"fgclip-perception: error: parameter file {missing} not found; give --params-file PATH"
