# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-match on a picture with a tiny model described by a manifest written in the test."""

import io
import json

import pytest
import torch
from conftest import TINY_ARCHITECTURE
from PIL import Image
from test_pipeline import TEMPLATE, _colour_strip, make_colour_heads

from fgclip_ros.cli.match import build_parser, main, run
from fgclip_ros.core.reprojection import save_heads

BOXES = ["--box", "66,3,93,29", "--box", "2,4,30,28", "--box", "10,10,10,20"]
QUERIES = ["--query", "red", "--query", "green", "--query", "blue"]


@pytest.fixture
def model_dir(tmp_path, tiny_clip, tiny_transform, tiny_model_config_json):
    torch.save(tiny_clip.state_dict(), tmp_path / "tiny.pt")
    save_heads(make_colour_heads(tiny_clip, tiny_transform), tmp_path / "heads.pt")
    (tmp_path / "tiny.yaml").write_text(
        f"architecture: {TINY_ARCHITECTURE}\nmodel_config: {{path: {tiny_model_config_json.name}}}\n"
        "weights: {path: tiny.pt}\ninput_size: 32\nembed_dim: 32\n"
        f'prompt_template: "{TEMPLATE}"\n'
        "reprojection: {kind: linear, sides: both, file: {path: heads.pt}}\n"
    )
    Image.fromarray(_colour_strip()).save(tmp_path / "strip.png")
    return tmp_path


def _args(model_dir, *extra):
    return ["--model", str(model_dir / "tiny.yaml"), "--image", str(model_dir / "strip.png"), "-q", *extra]


def test_plain_table_names_best_queries_and_rejected_boxes(model_dir, capsys):
    assert main(_args(model_dir, *BOXES, *QUERIES)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("#"))
    assert header.split()[:5] == ["#", "box", "red", "green", "blue"]
    rows = {line.split()[0]: line for line in lines if line[:1].isdigit()}
    assert rows["0"].split()[1] == "66,3,93,29" and rows["0"].split()[5] == "blue"
    assert rows["1"].split()[5] == "red"
    assert "box 2 (10,10,10,20) rejected: zero or negative size" in out


def test_json_output(model_dir, capsys):
    # The known scores exactly: fp32 graphs (the int8 one the default may pick moves them within its gate).
    assert main(_args(model_dir, *BOXES, *QUERIES, "--json", "--quantize", "none")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny" and report["queries"] == ["red", "green", "blue"]
    first, second, third = report["detections"]
    assert (first["best_query"], first["best_index"]) == ("blue", 2)
    assert second["best_query"] == "red" and len(second["scores"]) == 3
    assert first["score"] == pytest.approx(1.0, abs=1e-3) and first["margin"] == pytest.approx(1.0, abs=1e-3)
    assert third["valid"] is False and "zero or negative" in third["rejected_reason"]
    assert set(report["timings_ms"]) == {"crop", "encode", "match"}


def test_whole_image_without_boxes_and_min_score(model_dir, capsys):
    assert main(_args(model_dir, *QUERIES, "--json", "--min-score", "1.5")) == 0
    (only,) = json.loads(capsys.readouterr().out)["detections"]
    assert only["box"] == [0.0, 0.0, 96.0, 32.0]
    assert only["best_index"] == -1 and only["best_query"] == ""


def test_rich_table_on_a_terminal(model_dir):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    assert run(build_parser().parse_args(_args(model_dir, *BOXES, *QUERIES)), out=out) == 0
    text = out.getvalue()
    assert "blue" in text and "red" in text and "rejected" in text


@pytest.mark.parametrize("change, needle", [
    (("--image", "missing.png"), "missing.png: image not found"),
    (("--model", "no-such-model"), "'no-such-model' not found"),
    (("--template", "no slot"), "--template"),
])
def test_user_errors_are_one_line_and_exit_2(model_dir, capsys, change, needle):
    args = _args(model_dir, *QUERIES)
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = str(model_dir / value) if flag == "--image" else value
    else:
        args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and err.startswith("fgclip-match: error:")


def test_missing_heads_file_names_it(model_dir, capsys):
    (model_dir / "heads.pt").unlink()
    assert main(_args(model_dir, *QUERIES)) == 2
    err = capsys.readouterr().err
    assert "heads.pt: not found" in err and "re-projection heads of tiny" in err


def test_bad_box_is_a_usage_error(model_dir, capsys):
    assert main(_args(model_dir, "--box", "1,2,3", *QUERIES)) == 2
    assert "x1,y1,x2,y2" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_user_error(model_dir, capsys):
    assert main(_args(model_dir, *QUERIES, "--device", "cuda")) == 2
    assert "CUDA is not available" in capsys.readouterr().err
