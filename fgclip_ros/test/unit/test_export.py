# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ONNX export: folded heads match torch + heads, the manifest loads (onnx backend), tampering is caught."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from conftest import TINY_ARCHITECTURE, TINY_CLIP_CONFIG, make_tiny_clip, make_tiny_tokenizer

from fgclip_ros.core.crops import Preprocess
from fgclip_ros.core.encoders import onnx_session, tokenize
from fgclip_ros.core.errors import ModelFileError
from fgclip_ros.core.fetch import sha256_of
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads
from fgclip_ros.export.onnx import (
    IMAGE_INPUT,
    TEXT_INPUT,
    TOLERANCES,
    ExportVerificationError,
    ProjectedImageTower,
    export_manifest,
    export_model,
)

# Texts and pixels unlike the exporter's own verification batch: the graphs must compute the same
# function on any input, not just on the batch they were checked with.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the fgclip_ros package
TEXTS = ["a green striped fabric cushion", "wooden", "a small transparent glass vase with dots", "b"]


def random_pixels(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, 3, 32, 32), generator=generator) * 4.0 - 1.8  # normalised-crop range


def random_heads(seed: int) -> ReprojectionHeads:
    torch.manual_seed(seed)
    return ReprojectionHeads(Head("linear", 32), Head("linear", 32)).eval()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A manifest of the tiny model (custom config, weights file, linear heads on both sides)."""
    folder = tmp_path_factory.mktemp("source")
    (folder / f"{TINY_ARCHITECTURE}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    model = make_tiny_clip(seed=5)
    torch.save(model.state_dict(), folder / "tiny.pt")
    heads = random_heads(seed=6)
    save_heads(heads, folder / "heads.pt")
    (folder / "tiny.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "architecture": TINY_ARCHITECTURE,
                "model_config": {"path": f"{TINY_ARCHITECTURE}.json"},
                "weights": {"path": "tiny.pt"},
                "input_size": 32,
                "embed_dim": 32,
                "prompt_template": "a photo of {}",
                "reprojection": {"kind": "linear", "sides": "both", "file": {"path": "heads.pt"}},
            }
        )
    )
    return folder / "tiny.yaml", model, heads


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    results = export_manifest(source[0], out, progress=False)
    return out, {result.dtype: result for result in results}


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_folded_graphs_give_torch_plus_heads_embeddings(exported, source, dtype):
    _, model, heads = source
    result = exported[1][dtype]
    tolerance = TOLERANCES[dtype]
    for batch in (1, 3, 7):  # the batch axis is dynamic
        pixels = random_pixels(batch, seed=batch)
        with torch.inference_mode():
            expected = heads.project_images(model.encode_image(pixels)).numpy()
        image = onnx_session(result.image_onnx).run(None, {IMAGE_INPUT: pixels.numpy()})[0]
        assert image.dtype == np.float32 and image.shape == expected.shape
        np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1.0, atol=1e-5)  # normalised in the graph
        assert np.abs(image - expected).max() <= tolerance.max_abs_error
        assert (image * expected).sum(1).min() >= tolerance.min_cosine
    tokens = tokenize(make_tiny_tokenizer(), TEXTS)
    with torch.inference_mode():
        expected = heads.project_texts(model.encode_text(torch.from_numpy(tokens))).numpy()
    text = onnx_session(result.text_onnx).run(None, {TEXT_INPUT: tokens})[0]
    assert np.abs(text - expected).max() <= tolerance.max_abs_error
    assert (text * expected).sum(1).min() >= tolerance.min_cosine


def test_export_manifest_records_checksums_opset_and_verification(exported, source):
    out, results = exported
    for dtype, result in results.items():
        document = yaml.safe_load(result.manifest_path.read_text())
        assert result.manifest_path.parent == out
        assert document["onnx_image"] == {
            "path": result.image_onnx.name,
            "sha256": sha256_of(result.image_onnx),
        }
        assert document["onnx_text"] == {"path": result.text_onnx.name, "sha256": sha256_of(result.text_onnx)}
        assert document["prompt_template"] == "a photo of {}"
        assert document["model_config"]["sha256"] == sha256_of(out / f"{TINY_ARCHITECTURE}.json")
        export = document["export"]
        assert (
            export["dtype"] == dtype
            and export["opset"] == onnx.load(str(result.image_onnx)).opset_import[0].version
        )
        assert export["projected"] is True
        assert export["source"]["manifest"] == "tiny"
        assert export["source"]["reprojection"]["kind"] == "linear"
        assert export["verified_with"]["providers"] == ["CPUExecutionProvider"]
        for tower in ("image", "text"):
            check = export["verified_with"][tower]
            assert check["passed"] and check["min_cosine"] >= TOLERANCES[dtype].min_cosine
        metadata = {
            p.key: p.value for p in onnx.load(str(result.image_onnx), load_external_data=False).metadata_props
        }
        assert metadata["projected"] == "true" and metadata["dtype"] == dtype
        assert float(metadata["logit_scale"]) == pytest.approx(float(source[1].logit_scale.detach().exp()))


def test_export_manifest_loads_and_runs_through_the_onnx_backend(exported, source):
    from fgclip_ros.core.pipeline import Pipeline

    _, results = exported
    reference = Pipeline.from_manifest(str(source[0]))
    deployed = Pipeline.from_manifest(
        str(results["fp32"].manifest_path), backend="onnx", providers=["CPUExecutionProvider"]
    )
    assert deployed.encoder.projected is True
    assert deployed.encoder.provider == "onnxruntime:CPUExecutionProvider"
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 80, 60], [40, 30, 150, 115], [10, 50, 60, 119], [-5, -5, 3, 3]], np.float64)
    queries = ["red mug", "blue glass bottle", "striped bag"]
    for pipeline in (reference, deployed):
        pipeline.set_queries(queries)
    expected, actual = reference.process(image, boxes), deployed.process(image, boxes)
    np.testing.assert_array_equal(actual.check.valid, expected.check.valid)
    # fp32 tolerance: the scores move by at most sqrt(2 (1 - min_cosine)) on each side.
    # Unit vectors: a score moves by at most ||e - e'|| = sqrt(2 (1 - cos)), on each of the two sides.
    bound = 2 * np.sqrt(2.0 * (1.0 - TOLERANCES["fp32"].min_cosine))
    np.testing.assert_allclose(actual.match.scores, expected.match.scores, rtol=0, atol=bound)
    clear = expected.match.margin > 2 * bound
    np.testing.assert_array_equal(actual.match.best_index[clear], expected.match.best_index[clear])


def test_fp16_export_loads_and_runs_through_the_onnx_backend(exported):
    # In a child process: ONNX Runtime has crashed (segfault) building CPU sessions for fp16 graphs,
    # and a native crash must fail this test, not end the whole test session.
    manifest = exported[1]["fp16"].manifest_path
    program = (
        "import numpy as np\n"
        "from fgclip_ros.core.pipeline import Pipeline\n"
        f"pipeline = Pipeline.from_manifest({str(manifest)!r}, backend='onnx',"
        " providers=['CPUExecutionProvider'])\n"
        "pipeline.set_queries(['red mug', 'blue bottle'])\n"
        "image = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)\n"
        "result = pipeline.process(image, np.array([[0, 0, 40, 40], [10, 20, 64, 60]]))\n"
        "assert result.match.scores.shape == (2, 2) and np.isfinite(result.match.scores).all()\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"


def test_tampered_graph_is_refused_naming_the_file(exported, tmp_path):
    from fgclip_ros.core.pipeline import Pipeline

    out, results = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    graph = copy / results["fp32"].image_onnx.name
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight tensor
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=graph.name) as error:
        Pipeline.from_manifest(
            str(copy / results["fp32"].manifest_path.name), backend="onnx", providers=["CPUExecutionProvider"]
        )
    assert "sha256" in str(error.value) and "\n" not in str(error.value)


def test_an_export_that_drifts_is_refused_without_a_manifest(tmp_path, monkeypatch):
    # Simulate a broken export: the image graph loses its head. Verification must catch it.
    def headless(self, pixels):
        return torch.nn.functional.normalize(self.clip.encode_image(pixels.to(self.dtype)).float(), dim=-1)

    monkeypatch.setattr(ProjectedImageTower, "forward", headless)
    model = make_tiny_clip(seed=1)
    with pytest.raises(ExportVerificationError, match="image") as error:
        export_model(
            model,
            random_heads(seed=2),
            make_tiny_tokenizer(),
            Preprocess.from_open_clip(model),
            tmp_path,
            "broken",
            dtypes=("fp32",),
            progress=False,
        )
    assert "min cosine" in str(error.value)
    assert not list(tmp_path.glob("*.yaml"))


def test_cli_exports_a_manifest_and_reports_user_errors(source, tmp_path, capsys):
    from fgclip_ros.cli.export import main

    out = tmp_path / "cli"
    assert main(["--model", str(source[0]), "--out", str(out), "--dtype", "fp32", "--no-progress", "-q"]) == 0
    assert (out / "tiny-onnx-fp32.yaml").is_file() and not (out / "tiny-onnx-fp16.yaml").exists()
    assert "tiny-onnx-fp32.yaml" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "missing.yaml"), "--out", str(out), "-q"]) == 2
    error = capsys.readouterr().err
    assert "missing.yaml" in error and error.count("\n") == 1


def test_an_upstream_mlp_file_exports_with_tanh_after_every_linear(tmp_path):
    # Upstream's non-linear layout: Linears .0 and .1 per side, tanh after each, the last included.
    generator = torch.Generator().manual_seed(9)
    shapes = (("weight", (32, 32)), ("bias", (32,)))
    state = {f"linear_layers.{side}.{layer}.{name}": torch.randn(shape, generator=generator) / 4
             for side in (0, 1) for layer in (0, 1) for name, shape in shapes}
    torch.save(state, tmp_path / "mlp.pt")
    from fgclip_ros.core.reprojection import load_heads

    heads = load_heads(tmp_path / "mlp.pt", "mlp", 32)
    model = make_tiny_clip(seed=5)
    preprocess = Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    result = export_model(model, heads, make_tiny_tokenizer(), preprocess, tmp_path / "out", "mlp",
                          dtypes=("fp32",), progress=False)[0]
    pixels = random_pixels(3, seed=2)

    def upstream(raw, side):
        def layer(x, index):
            key = f"linear_layers.{side}.{index}"
            return x @ state[f"{key}.weight"].T + state[f"{key}.bias"]

        out = torch.tanh(layer(torch.tanh(layer(raw, 0)), 1))
        return (out / out.norm(dim=1, keepdim=True)).numpy()

    with torch.inference_mode():
        expected_image = upstream(model.encode_image(pixels), 0)
        tokens = tokenize(make_tiny_tokenizer(), TEXTS)
        expected_text = upstream(model.encode_text(torch.from_numpy(tokens)), 1)
    image = onnx_session(result.image_onnx).run(None, {IMAGE_INPUT: pixels.numpy()})[0]
    text = onnx_session(result.text_onnx).run(None, {TEXT_INPUT: tokens})[0]
    np.testing.assert_allclose(image, expected_image, atol=TOLERANCES["fp32"].max_abs_error)
    np.testing.assert_allclose(text, expected_text, atol=TOLERANCES["fp32"].max_abs_error)
