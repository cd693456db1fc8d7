# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""backend auto, exports on first use (cache key, lock, one-line failure) and the int8 gate.

Every test runs on the tiny model of conftest with its own FGCLIP_ROS_CACHE (never the user's).
"""

import json
import logging
import threading
import time

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_ARCHITECTURE, TINY_CLIP_CONFIG, make_tiny_clip

from fgclip_ros.core.manifest import load_manifest
from fgclip_ros.core.reprojection import Head, ReprojectionHeads, save_heads
from fgclip_ros.export import onnx as onnx_export
from fgclip_ros.export.cache import ExportFailedError, cached_export
from fgclip_ros.export.deploy import CPU, CUDA, TENSORRT, choose_backend, deployed_pipeline
from fgclip_ros.export.quantize import INT8_MIN_COSINE, Int8RefusedError


def write_tiny_manifest(folder, model, name="tiny"):
    """A manifest of `model` (custom config, weights file, linear heads) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TINY_ARCHITECTURE}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    torch.save(model.state_dict(), folder / "weights.pt")
    torch.manual_seed(3)
    save_heads(ReprojectionHeads(Head("linear", 32), Head("linear", 32)).eval(), folder / "heads.pt")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "architecture": TINY_ARCHITECTURE,
        "model_config": {"path": f"{TINY_ARCHITECTURE}.json"},
        "weights": {"path": "weights.pt"},
        "input_size": 32,
        "embed_dim": 32,
        "reprojection": {"kind": "linear", "sides": "both", "file": {"path": "heads.pt"}},
    }))
    return path


def outlier_model():
    """A tiny model whose fp32 output ignores one huge activation channel that per-tensor int8 cannot survive.

    Every block's LayerNorms scale channel 0 by 1e4 and the following weights read nothing from
    it, so fp32 computes what it computed before; ONNX Runtime's dynamic quantisation scales each
    activation tensor by its largest value, which leaves every other channel at zero.
    """
    model = make_tiny_clip(seed=1)
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            block.ln_1.weight[0], block.ln_1.bias[0] = 1e4, 1e4
            block.attn.in_proj_weight[:, 0] = 0.0
            block.ln_2.weight[0], block.ln_2.bias[0] = 1e4, 1e4
            block.mlp.c_fc.weight[:, 0] = 0.0
    return model


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FGCLIP_ROS_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny_manifest(tmp_path):
    return write_tiny_manifest(tmp_path / "model", make_tiny_clip(seed=0))


# ------------------------------------------------------------------------------------ backend auto
def test_auto_picks_onnx_runtime_on_the_cpu_and_tensorrt_first_on_cuda():
    assert choose_backend("auto", "cpu", [CPU]).providers == (CPU,)
    assert choose_backend("auto", "cpu", [TENSORRT, CUDA, CPU]).providers == (CPU,)
    with_trt = choose_backend("auto", "cuda", [TENSORRT, CUDA, CPU])
    assert (with_trt.backend, with_trt.providers) == ("onnx", (TENSORRT, CUDA, CPU))
    # CUDA without TensorRT: the measured PyTorch CUDA-graph path.
    assert choose_backend("auto", "cuda:1", [CUDA, CPU]).backend == "torch"
    assert choose_backend("torch", "cpu", [CPU]).backend == "torch"
    assert choose_backend("onnx", "cuda", [CUDA, CPU]).providers == (CUDA, CPU)


def test_node_launch_and_parameter_file_default_to_auto():
    from fgclip_ros.core.paths import config_dir
    from fgclip_ros.ros.params import SPEC_BY_NAME

    assert SPEC_BY_NAME["backend"].default == "auto"
    assert "auto" in SPEC_BY_NAME["backend"].choices
    params = yaml.safe_load((config_dir() / "perception.yaml").read_text())["/**"]["ros__parameters"]
    assert params["backend"] == "auto"
    assert params["intra_op_threads"] == SPEC_BY_NAME["intra_op_threads"].default


def test_auto_runs_the_exported_graph_with_the_torch_answers(tiny_manifest, user_cache):
    queries = ["a red mug", "a glass bottle", "a striped bag", "a metal can"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 60, 60], [40, 30, 150, 110], [10, 50, 90, 119]], np.float64)
    results = {}
    for backend in ("torch", "auto"):
        pipeline = deployed_pipeline(tiny_manifest, backend=backend, quantize="none")
        pipeline.set_queries(queries)
        results[backend] = (pipeline.encoder.provider, pipeline.process(image, boxes).match)
    provider, onnx = results["auto"]
    assert provider == "onnxruntime:CPUExecutionProvider:fp32"
    assert results["torch"][0].startswith("torch:cpu")
    np.testing.assert_array_equal(onnx.best_index, results["torch"][1].best_index)
    np.testing.assert_allclose(onnx.scores, results["torch"][1].scores, atol=1e-4)
    assert list(user_cache.glob("exports/tiny-*/tiny-onnx-fp32.yaml"))


# ------------------------------------------------------------------------------------ the cache
def test_export_is_reused_and_a_changed_input_file_exports_again(tiny_manifest, user_cache):
    first = cached_export(tiny_manifest, "fp32", progress=False)
    graph = first.parent / "tiny-image-fp32.onnx"
    written = graph.stat().st_mtime_ns
    assert cached_export(tiny_manifest, "fp32", progress=False) == first
    assert graph.stat().st_mtime_ns == written  # reused, not exported again

    torch.save(make_tiny_clip(seed=9).state_dict(), tiny_manifest.parent / "weights.pt")
    second = cached_export(tiny_manifest, "fp32", progress=False)
    assert second.parent != first.parent
    old, new = load_manifest(first), load_manifest(second)
    assert old.onnx_image.sha256 != new.onnx_image.sha256


def test_a_corrupt_cached_graph_is_named_not_used(tiny_manifest, user_cache):
    from fgclip_ros.core.errors import ModelFileError

    exported = cached_export(tiny_manifest, "fp32", progress=False)
    with open(exported.parent / "tiny-image-fp32.onnx", "r+b") as stream:
        stream.seek(100)
        stream.write(b"\0" * 64)
    with pytest.raises(ModelFileError, match="tiny-image-fp32.onnx"):
        cached_export(tiny_manifest, "fp32", progress=False)


def test_a_second_process_waits_for_the_first_export_and_reuses_it(tiny_manifest, user_cache, monkeypatch,
                                                                   caplog):
    exports = []
    real_export = onnx_export.export_manifest

    def slow_export(*args, **kwargs):
        exports.append(threading.current_thread().name)
        time.sleep(1.0)  # the other caller arrives while this export runs
        return real_export(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_manifest", slow_export)  # the exporter cached_export runs
    paths = {}

    def use(name):
        paths[name] = cached_export(tiny_manifest, "fp32", progress=False)

    caplog.set_level(logging.INFO, logger="fgclip_ros.export.cache")
    threads = [threading.Thread(target=use, args=(name,), name=name) for name in ("first", "second")]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for thread in threads:
        thread.join(timeout=120)
    assert exports == ["first"]
    assert paths["first"] == paths["second"]
    assert "another process is exporting it" in caplog.text


def test_a_failed_export_stops_with_one_line_naming_the_model_and_the_fix(tiny_manifest, tmp_path,
                                                                          monkeypatch):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("FGCLIP_ROS_CACHE", str(not_a_folder))
    with pytest.raises(ExportFailedError) as failure:
        deployed_pipeline(tiny_manifest, backend="auto")  # never a silent fallback to torch
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("model tiny:")
    assert "fgclip-export --model tiny" in message and "FGCLIP_ROS_CACHE" in message


# ------------------------------------------------------------------------------------ int8
def test_int8_graph_passes_its_gate_for_a_well_behaved_model(tiny_manifest, user_cache):
    exported = load_manifest(cached_export(tiny_manifest, "int8", progress=False))
    gate = exported.export["int8_gate"]
    assert gate["passed"] and gate["min_cosine"] >= INT8_MIN_COSINE
    assert exported.onnx_image.path == "tiny-image-int8.onnx"
    assert exported.onnx_text.path == "tiny-text-fp32.onnx"


def test_int8_gate_refuses_a_model_that_fails_it(tmp_path, user_cache, caplog):
    manifest = write_tiny_manifest(tmp_path / "outlier", outlier_model(), name="outlier")
    with pytest.raises(Int8RefusedError) as refused:
        deployed_pipeline(manifest, backend="auto", quantize="int8")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("model outlier:")
    assert refused.value.gate.min_cosine < INT8_MIN_COSINE
    assert not list(user_cache.glob("exports/outlier-*/outlier-onnx-int8.yaml"))
    # auto: fp32 graphs, and the refusal is said (and cached: not quantised again).
    caplog.set_level(logging.WARNING, logger="fgclip_ros.deploy")
    pipeline = deployed_pipeline(manifest, backend="auto", quantize="auto")
    assert pipeline.encoder.provider == "onnxruntime:CPUExecutionProvider:fp32"
    assert "int8 image graph not used" in caplog.text
