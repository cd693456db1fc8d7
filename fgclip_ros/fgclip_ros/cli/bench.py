# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-bench: ms/frame and crops/s of the per-frame path on a synthetic 1280x720 frame.

Examples:
    fgclip-bench --arch ViT-B-16 --random-weights --device cuda --dtype fp16 --json bench.json
    fgclip-bench --model openai-vit-b-16 --device cpu --backend torch onnx --boxes 1 4 16 --no-bulk
Measures (a) the naive baseline (PIL crop + open_clip preprocess per box, fp32 batch), (b) the
encoder alone, (c) the optimised pipeline, for each box count, plus bulk crops/s; prints a table
and writes JSON (and a PNG plot with --png). No weights are downloaded with --random-weights.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.core.device import DEVICE_HELP
from fgclip_ros.core.errors import FgclipError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-bench", description=__doc__.splitlines()[0].split(": ", 1)[1]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="manifest name or path (its weights and heads)")
    source.add_argument("--arch", help="open_clip architecture, with --random-weights (no download)")
    parser.add_argument(
        "--model-config",
        type=Path,
        default=None,
        help="open_clip model-config JSON defining --arch (e.g. models/fgsynth/fgsynth.json)",
    )
    parser.add_argument("--random-weights", action="store_true", help="random weights + random linear heads")
    parser.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default: %(default)s)")
    parser.add_argument(
        "--dtype",
        default="fp16",
        choices=("fp16", "bf16", "fp32"),
        help="tower dtype of the CUDA fast path (default: %(default)s; CPU runs fp32)",
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["torch"],
        choices=("torch", "onnx", "int8"),
        help="CPU encoders to measure: torch, onnx (fp32 graphs), int8 (onnx with the image graph "
        "quantised) (default: %(default)s)",
    )
    parser.add_argument("--boxes", nargs="+", type=int, default=[1, 4, 16, 64], help="boxes per frame")
    parser.add_argument("--queries", type=int, default=64, help="queries (default: %(default)s)")
    parser.add_argument("--bulk", nargs="+", type=int, default=[128, 512], help="bulk batch sizes")
    parser.add_argument("--no-bulk", action="store_true", help="skip the bulk measurements")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--budget-s", type=float, default=2.0, help="seconds per measurement (default: %(default)s)"
    )
    parser.add_argument("--min-iters", type=int, default=3, help="runs per measurement at least")
    parser.add_argument("--max-iters", type=int, default=500, help="runs per measurement at most")
    parser.add_argument(
        "--onnx-dir",
        type=Path,
        default=None,
        help="where the ONNX export for --backend onnx is kept/reused (default: a temp folder)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch and ONNX Runtime alike (0: defaults)"
    )
    parser.add_argument(
        "--ort-threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)"
    )
    parser.add_argument(
        "--ort-level",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="ONNX Runtime graph optimisation level (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run torch.profiler over the pipeline: op tables in DIR/profile.txt, a trace for N=16",
    )
    parser.add_argument(
        "--timeline-frames",
        type=int,
        default=50,
        help="CUDA: frames whose host/GPU marks make each N's timeline (default: %(default)s)",
    )
    parser.add_argument(
        "--compile-boxes",
        nargs="+",
        type=int,
        default=[],
        metavar="N",
        help="experiment: also time the tower compiled with torch.compile at these box counts "
        "(compiling takes a minute or more per count)",
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend (default: %(default)s)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--png", type=Path, default=None, help="plot ms/frame per box count here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true", help="no log lines on stderr")
    return describe_io(
        parser,
        inputs="--model: a manifest (weights, heads); or --arch [--model-config] with random weights.\n"
        "The frame and its boxes are synthetic (1280x720).",
        outputs="a table on stdout; --json FILE: the results; --png FILE: ms/frame per box count;\n"
        "--profile DIR: DIR/profile.txt and a trace; --onnx-dir DIR: the ONNX export it measured",
    )


def run(args) -> int:
    if args.arch and not args.random_weights:
        raise FgclipError("--arch needs --random-weights (use --model for a manifest's weights)")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from fgclip_ros.benchmark.bench import BenchConfig, format_table, run_bench, save_png

    modes = (
        ["encoder", "pipeline"] + ([] if args.no_naive else ["naive"]) + ([] if args.no_bulk else ["bulk"])
    )
    config = BenchConfig(
        model=args.model,
        arch=args.arch,
        model_config=args.model_config,
        random_weights=args.random_weights,
        device=args.device,
        dtype=args.dtype,
        backends=tuple(args.backend),
        boxes=tuple(args.boxes),
        queries=args.queries,
        bulk=tuple(args.bulk),
        modes=tuple(modes),
        budget_s=args.budget_s,
        min_iters=args.min_iters,
        max_iters=args.max_iters,
        seed=args.seed,
        onnx_dir=args.onnx_dir,
        threads=args.threads,
        ort_threads=args.ort_threads,
        ort_level=args.ort_level,
        progress=False if args.no_progress else None,
        profile_dir=args.profile,
        timeline_frames=args.timeline_frames,
        compile_boxes=tuple(args.compile_boxes),
        compile_backend=args.compile_backend,
    )
    result = run_bench(config)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.as_dict(), indent=2))
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        save_png(result, args.png)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-bench", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
