# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""One prompt rule: node, evaluator, trainer, exporter and benchmark build the same prompts.

For the same template and query the text tower gets the same text from every tool.

The rule is the manifest's (docs: "{}" is replaced by each query, and must appear exactly once);
every tool's texts are caught where they are tokenised, so no tool can build prompts its own way.
"""

import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_ARCHITECTURE, TINY_CLIP_CONFIG, make_tiny_clip

from fgclip_ros.core import encoders
from fgclip_ros.core.perception import PerceptionEngine
from fgclip_ros.core.pipeline import Pipeline
from fgclip_ros.core.prompts import check_template, prompt

TEMPLATE = "a photo of {}, close up"
QUERY = "a {red} mug"  # braces in a query must survive (no str.format)
EXPECTED = "a photo of a {red} mug, close up"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prompt_model")
    (folder / f"{TINY_ARCHITECTURE}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    torch.save(make_tiny_clip(seed=1).state_dict(), folder / "tiny.pt")
    (folder / "tiny.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "architecture": TINY_ARCHITECTURE,
        "model_config": {"path": f"{TINY_ARCHITECTURE}.json"}, "weights": {"path": "tiny.pt"},
        "input_size": 32, "embed_dim": 32, "prompt_template": TEMPLATE,
    }))  # fmt: skip
    return folder / "tiny.yaml"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """An FG-OVD-format split whose one annotation's positive caption is QUERY."""
    folder = tmp_path_factory.mktemp("split")
    cv2.imwrite(str(folder / "scene.png"), np.full((48, 64, 3), 90, np.uint8))
    (folder / "hard.json").write_text(json.dumps({
        "info": {"negatives": 1},
        "images": [{"id": 1, "file_name": "scene.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": QUERY}, {"id": 2, "name": "a blue mug"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "neg_category_ids": [2],
                         "bbox": [4, 4, 30, 30]}],
    }))  # fmt: skip
    return {"hard": folder / "hard.json"}


@pytest.fixture
def tokenised(monkeypatch):
    """Every text any tool hands to a tokenizer, in order."""
    seen: list[str] = []
    real = encoders.tokenize

    def recording(tokenizer, texts):
        seen.extend(texts)
        return real(tokenizer, texts)

    monkeypatch.setattr(encoders, "tokenize", recording)
    return seen


def test_the_rule():
    assert prompt(TEMPLATE, QUERY) == EXPECTED
    for bad in ("no slot", "{} and {}", ""):
        with pytest.raises(ValueError, match="exactly once"):
            check_template(bad)


def test_node_evaluator_trainer_exporter_and_benchmark_build_the_same_prompt(
    manifest, split, tokenised, tmp_path
):
    from fgclip_ros.benchmark.bench import synthetic_queries
    from fgclip_ros.cli.bench import main as bench_main
    from fgclip_ros.evaluation.fgovd import evaluate_fgovd
    from fgclip_ros.export.onnx import VERIFY_TEXTS, export_manifest
    from fgclip_ros.training.reprojection import build_cache

    pipeline = Pipeline.from_manifest(str(manifest))
    prompts_of = {}

    tokenised.clear()
    PerceptionEngine(pipeline).set_queries([QUERY])  # what the node runs
    prompts_of["node"] = list(tokenised)

    tokenised.clear()
    evaluate_fgovd(split, pipeline.encoder, {"cosine": None}, template=TEMPLATE, progress=False)
    prompts_of["evaluator"] = [t for t in tokenised if "red" in t]

    tokenised.clear()
    build_cache(split, pipeline.encoder, template=TEMPLATE, progress=False)
    prompts_of["trainer"] = [t for t in tokenised if "red" in t]

    tokenised.clear()
    export_manifest(manifest, tmp_path / "onnx", dtypes=("fp32",), progress=False)
    # The exporter verifies its graphs on its own captions, through the manifest's template.
    assert list(dict.fromkeys(tokenised)) == [f"a photo of {t}, close up" for t in VERIFY_TEXTS]

    tokenised.clear()
    status = bench_main([
        "--model", str(manifest), "--device", "cpu", "--backend", "torch", "--no-naive", "--no-bulk",
        "--boxes", "1", "--queries", "2", "--threads", "1", "--budget-s", "0", "--min-iters", "1",
        "--max-iters", "1", "--json", str(tmp_path / "bench.json"), "--no-progress", "--quiet",
    ])  # fmt: skip
    assert status == 0
    assert set(tokenised) == {f"a photo of {q}, close up" for q in synthetic_queries(2)}

    assert prompts_of == {"node": [EXPECTED], "evaluator": [EXPECTED], "trainer": [EXPECTED]}


def test_no_tool_substitutes_templates_itself():
    # grep-able guarantee: the slot is filled in core/prompts.py and nowhere else.
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "fgclip_ros"
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "prompts.py" and path.parent.name == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "replace" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "{}"):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("template", ["a photo of", "{} next to {}"])
def test_every_tool_refuses_the_templates_the_node_refuses(manifest, split, template):
    # Before one rule, the evaluator and trainer appended the query or filled every slot.
    from fgclip_ros.evaluation.fgovd import evaluate_fgovd
    from fgclip_ros.training.reprojection import build_cache

    pipeline = Pipeline.from_manifest(str(manifest))
    with pytest.raises(ValueError, match="exactly once"):
        PerceptionEngine(pipeline).set_queries([QUERY], template)
    with pytest.raises(ValueError, match="exactly once"):
        evaluate_fgovd(split, pipeline.encoder, {"cosine": None}, template=template, progress=False)
    with pytest.raises(ValueError, match="exactly once"):
        build_cache(split, pipeline.encoder, template=template, progress=False)
