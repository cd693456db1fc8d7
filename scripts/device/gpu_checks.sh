#!/usr/bin/env bash
# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
#
# The GPU checks, as one script on one CUDA GPU (about 3 minutes; up to 8 with EXTRA_RUNS=1):
#   1. the CUDA tests (test_crops.py, test_gpu_path.py, test_pipeline.py, test_perception_core.py: CUDA ones
#      run, CPU ones too; a test stuck for 90 s dumps every thread's stack, the whole run is killed at 180 s);
#   2. fgclip-bench on ViT-B/16 with random weights: fp16, 64 queries, N = 1, 4, 16, 64 boxes,
#      bulk 128 / 512, with each N's frame timeline (host and GPU marks) and torch.profiler op tables
#      (a Chrome trace for N = 16); then N = 16 again (repeatability), a bf16 run (N = 16, bulk 512)
#      and an experiment: the tower compiled with torch.compile at N = 16 (EXTRA_RUNS=0 skips these three).
# Needs: one CUDA GPU, Python with torch/torchvision/onnxruntime/pytest (PYTHON, default python3),
# open_clip installed or its wheels in .whl/, and this repository as the working directory.
# Results land in $OUT, 8 files at most: env.txt, pytest.log,
# bench.log (log lines, and the tables of the extra runs), bench_fp16.txt/.json/.png, profile.txt,
# trace_N16.json; the fp16 table and its timelines are printed last.
#
# Run from the repository root:
#   bash scripts/device/gpu_checks.sh
# Without CUDA (e.g. here, with PYTHON=.venv/bin/python) the CUDA tests skip and the benchmark runs
# small on the CPU with the project's small fgsynth architecture, so the script is checked end to end.
set -uo pipefail

PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/fgclip_gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

# open_clip (+ ftfy, wcwidth) are not on the device image: install the carried wheels.
if ! PYTHONPATH=/tmp/site $PY -c "import open_clip" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/fgclip_ros

status=0
{
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
    $PY - <<'EOF'
import platform, torch, torchvision, onnxruntime, open_clip, numpy
print("python", platform.python_version(), "| torch", torch.__version__, "| torchvision", torchvision.__version__,
      "| onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers(),
      "| open_clip", open_clip.__version__, "| numpy", numpy.__version__)
print("cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "| cpus", __import__("os").cpu_count())
EOF
} 2>&1 | tee "$OUT/env.txt"

HAS_CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")

echo "== pytest (CUDA tests; skipped without a GPU)"
timeout -k 10 180 $PY -m pytest -q -rs -p no:cacheprovider -o faulthandler_timeout=90 \
    fgclip_ros/test/test_crops.py fgclip_ros/test/test_gpu_path.py fgclip_ros/test/test_pipeline.py \
    fgclip_ros/test/test_perception_core.py \
    2>&1 | tee "$OUT/pytest.log" | tail -n 25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# The benchmark never downloads (random weights); offline makes sure of it.
bench() { local limit=$1; shift; FGCLIP_ROS_OFFLINE=1 timeout -k 10 "$limit" $PY -m fgclip_ros.cli.bench --no-progress "$@"; }
if [ "$HAS_CUDA" = "1" ]; then
    MODEL=(--arch ViT-B-16 --random-weights --device cuda --queries 64 --budget-s 1.0 --min-iters 5)
    echo "== fgclip-bench ViT-B-16 fp16 (the issue's targets)"
    bench 150 "${MODEL[@]}" --dtype fp16 --boxes 1 4 16 64 --bulk 128 512 --profile "$OUT" \
        --json "$OUT/bench_fp16.json" --png "$OUT/bench_fp16.png" >"$OUT/bench_fp16.txt" 2>>"$OUT/bench.log" || status=1
    if [ "${EXTRA_RUNS:-1}" = "1" ]; then
        echo "== repeat N=16 (spread between two runs of the same code)"
        bench 45 "${MODEL[@]}" --dtype fp16 --boxes 16 --no-bulk >>"$OUT/bench.log" 2>&1 || status=1
        echo "== bf16 (N=16, bulk 512)"
        bench 45 "${MODEL[@]}" --dtype bf16 --boxes 16 --bulk 512 --no-naive >>"$OUT/bench.log" 2>&1 || status=1
        # An experiment, so its failure (no compiler, a graph break, the time limit) fails no check.
        echo "== experiment: the tower compiled with torch.compile (N=16)"
        bench 200 "${MODEL[@]}" --dtype fp16 --boxes 16 --no-bulk --no-naive --compile-boxes 16 \
            >>"$OUT/bench.log" 2>&1 || echo "compile experiment did not finish: see bench.log"
    fi
else
    echo "== no CUDA: small CPU benchmark run (checks the script, not the numbers)"
    bench 120 --arch fgsynth --model-config fgclip_ros/models/fgsynth/fgsynth.json --random-weights --device cpu --threads 1 \
        --boxes 1 4 --bulk 32 --queries 8 --budget-s 0.2 --min-iters 2 --max-iters 20 --profile "$OUT" \
        --json "$OUT/bench_fp16.json" --png "$OUT/bench_fp16.png" >"$OUT/bench_fp16.txt" 2>>"$OUT/bench.log" || status=1
fi

echo "== results (all in $OUT)"
grep -h -E "^(naive|encoder|pipeline|stage|bulk|text|N=|bulk=|timeline)" "$OUT/bench.log" || true
echo "-- the main run:"
cat "$OUT/bench_fp16.txt"
echo "gpu_checks: exit status $status"
exit $status
