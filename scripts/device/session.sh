#!/usr/bin/env bash
# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
#
# All GPU work in one run (about 8 minutes): train fgsynth (TRAIN_SECONDS), then the GPU checks and
# benchmarks. Needs what train_fgsynth.sh and gpu_checks.sh need (one CUDA GPU, Python with torch,
# open_clip or its wheels in .whl/). Writes 8 files: $OUT gets the weights, an archive of the
# training logs, and the six files of the GPU checks in $OUT/gpu/.
#   bash scripts/device/session.sh
set -u
work=/tmp/fgclip_session
mkdir -p "$work/train" "${OUT:=/tmp/fgclip_out}"
OUT="$work/train" TRAIN_SECONDS=${TRAIN_SECONDS:-150} REF_SECONDS=0 \
    bash scripts/device/train_fgsynth.sh >"$work/train/stdout.log" 2>&1
train_status=$?
tail -n 12 "$work/train/run.log"
cp "$work/train/fgsynth.safetensors" "$OUT/" 2>/dev/null
rm -f "$work/train/"*.safetensors
tar czf "$OUT/train.tgz" -C "$work" train
# Six files straight into $OUT/gpu (eight in all): no repeat / bf16 runs.
OUT="$OUT/gpu" EXTRA_RUNS=0 bash scripts/device/gpu_checks.sh
gpu_status=$?
echo "session: train exit $train_status, gpu checks exit $gpu_status"
exit $((train_status | gpu_status))
