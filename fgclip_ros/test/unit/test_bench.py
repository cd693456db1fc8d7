# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-bench: synthetic inputs, and one tiny end-to-end run on the CPU (both backends, JSON + PNG)."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_ARCHITECTURE, TINY_CLIP_CONFIG

from fgclip_ros.benchmark.bench import FRAME_H, FRAME_W, synthetic_boxes, synthetic_frame, synthetic_queries
from fgclip_ros.cli.bench import main


def test_synthetic_inputs_are_deterministic_and_inside_the_frame():
    frame = synthetic_frame(seed=3)
    assert frame.shape == (FRAME_H, FRAME_W, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, synthetic_frame(seed=3))
    boxes = synthetic_boxes(512, seed=3)
    assert boxes.shape == (512, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= FRAME_W).all() and (boxes[:, 3] <= FRAME_H).all()
    assert (boxes[:, 2:] - boxes[:, :2] >= 8).all()
    queries = synthetic_queries(64)
    assert len(set(queries)) == 64


def test_tiny_cpu_run_writes_every_measurement(tmp_path, capsys):
    config = tmp_path / f"{TINY_ARCHITECTURE}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    status = main([
        "--arch", TINY_ARCHITECTURE, "--model-config", str(config), "--random-weights", "--device", "cpu",
        "--backend", "torch", "onnx", "int8", "--boxes", "1", "3", "--bulk", "5", "--queries", "4",
        "--threads", "1",
        "--budget-s", "0", "--min-iters", "1", "--max-iters", "1", "--onnx-dir", str(tmp_path / "onnx"),
        "--json", str(out), "--png", str(png), "--no-progress", "--quiet",
        "--profile", str(tmp_path / "prof"),
    ])  # fmt: skip
    assert status == 0
    result = json.loads(out.read_text())
    measured = {(row["section"], row["boxes"], row["variant"].split(" ")[0]) for row in result["rows"]}
    for count in (1, 3):
        assert ("naive", count, "PIL") in measured
        for backend in ("torch", "onnxruntime"):
            assert ("encoder", count, backend) in measured
            assert ("pipeline", count, "Pipeline") in measured
        expected = {"ort_speedup_encoder", "ort_speedup_pipeline", "int8_speedup_encoder", "speedup_vs_naive"}
        assert expected <= set(result["summary"][f"N={count}"])
    assert {row["variant"].split(" ")[0] for row in result["rows"] if row["section"] == "bulk"} == {
        "torch",
        "onnxruntime",
        "Pipeline",
    }
    assert all(row["median_ms"] > 0 and row["crops_per_s"] > 0 for row in result["rows"])
    assert png.stat().st_size > 0
    assert "median ms" in capsys.readouterr().out
    # --profile: one op table per box count and backend, naming the ops that ran.
    profile = (tmp_path / "prof" / "profile.txt").read_text()
    assert profile.count("== N1 ") == profile.count("== N3 ") == 3  # torch, onnx fp32, onnx int8
    assert "aten::" in profile


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_user_error(capsys):
    assert main(["--arch", "ViT-B-16", "--random-weights", "--device", "cuda", "--quiet"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_the_gpu_section_runs_eagerly_with_timelines_and_profiles(tmp_path):
    # The device runs this section; CI has no GPU, so its code runs here on the CPU (no graphs, no
    # pinned memory) to catch what would otherwise only break in a device session.
    from fgclip_ros.benchmark.bench import BenchConfig, Benchmark

    model_config = tmp_path / f"{TINY_ARCHITECTURE}.json"
    model_config.write_text(json.dumps(TINY_CLIP_CONFIG))
    config = BenchConfig(
        arch=TINY_ARCHITECTURE, model_config=model_config, random_weights=True, device="cpu",
        boxes=(1, 16), bulk=(20,), queries=4, modes=("encoder", "pipeline", "bulk"), budget_s=0,
        min_iters=1, max_iters=1, warmup_iters=0, profile_dir=tmp_path / "prof", timeline_frames=3,
        progress=False, compile_boxes=(4,), compile_backend="eager",
    )  # fmt: skip
    bench = Benchmark(config)
    bench.run_gpu_section(bench.models.heads)
    sections = {(row.section, row.boxes) for row in bench.rows}
    assert {("encoder", 1), ("pipeline", 16), ("stage", 16), ("bulk", 20), ("encoder", 4)} <= sections
    compiled = [row.variant for row in bench.rows if "torch.compile" in row.variant]
    assert len(compiled) == 1 and "max err" in compiled[0]
    assert set(bench.timelines) == {"N=1", "N=16"}
    marks = bench.timelines["N=16"]
    assert list(marks)[-1] == "host result ready" and all(value >= 0 for value in marks.values())
    assert "== N16:" in (tmp_path / "prof" / "profile.txt").read_text()
    assert json.loads((tmp_path / "prof" / "trace_N16.json").read_text())["traceEvents"]


def test_the_cuda_summary_holds_the_ratios_of_the_rows_measured():
    from fgclip_ros.benchmark.bench import BenchConfig, Row, summarise

    def row(section: str, variant: str, median_ms: float) -> Row:
        return Row(section, variant, 4, 8, median_ms, median_ms, 0.0, 1)

    rows = [
        row("naive", "PIL + open_clip preprocess, torch fp32 cuda", 40.0),
        row("pipeline", "GpuFrameEncoder fp16", 2.0),
        row("pipeline", "two-step: eager crops + tower graph", 3.0),
        row("encoder", "torch fp16 cuda-graph", 1.6),
        row("encoder", "torch fp16 eager", 4.0),
    ]
    summary = summarise(rows, BenchConfig(device="cuda", boxes=(4,), bulk=()))
    # No torch.compile row was measured: no compiled_tower_speedup.
    assert summary == {"N=4": {
        "pipeline_ms": 2.0, "speedup_vs_naive": 20.0, "pipeline_over_encoder_graph": 1.25,
        "two_step_over_pipeline": 1.5, "graph_speedup_over_eager": 2.5,
    }}  # fmt: skip
