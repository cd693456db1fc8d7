#!/usr/bin/env bash
# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
#
# Train the embedded model fgsynth on one CUDA GPU, about 4-5 minutes in all:
#   1. fgsynth: biased web-style captions, TRAIN_SECONDS of training (default 150 s) on one GPU,
#      with render workers on all CPU cores but one; held-out metrics every 60 s and at the end
#      (linear probes per attribute family + cosine hard-negative ranks);
#   2. fgsynth-fullcap: the same model trained REF_SECONDS (default 40 s; 0 skips it) on full,
#      exact captions only: the reference to compare the biased model's cosine ranking with (only
#      its log and weights are kept);
#   3. summary.json + a printed table comparing both with the ">= 0.9 per family" target.
# Everything lands in $OUT (7 files, each < 16 MB): fgsynth.safetensors, fgsynth.json,
# fgsynth_train_log.json, fgsynth-fullcap.safetensors, fgsynth-fullcap_train_log.json, summary.json,
# run.log. Weights are saved after every evaluation too, so a run cut short still leaves a model.
#
# Needs one CUDA GPU, Python with torch and open_clip (or open_clip's wheels in .whl/). From the repository root:
#   bash scripts/device/train_fgsynth.sh
# Here on the CPU (a check of the whole script, tiny budget):
#   ALLOW_CPU=1 PYTHON=.venv/bin/python OUT=/tmp/out TRAIN_SECONDS=20 REF_SECONDS=8 BATCH=64 POOL=2048 \
#     EVAL_IMAGES=256 WORKERS=1 bash scripts/device/train_fgsynth.sh
set -uo pipefail

PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/fgsynth_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
REF_SECONDS=${REF_SECONDS:-40}
BATCH=${BATCH:-2048}
POOL=${POOL:-65536}
EVAL_IMAGES=${EVAL_IMAGES:-4096}
WORKERS=${WORKERS:--1}
SCENE_FRACTION=${SCENE_FRACTION:-0.7}
SEED=${SEED:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FGCLIP_ROS_OFFLINE=1

main() {
if ! $PY -c "import open_clip" 2>/dev/null; then
    # open_clip (+ ftfy, wcwidth) are not on the device image: install the carried wheels.
    $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/fgclip_ros${PYTHONPATH:+:$PYTHONPATH}

date -u +%Y-%m-%dT%H:%M:%SZ
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
# Fail in seconds, not minutes, when something the run needs is missing.
ALLOW_CPU=${ALLOW_CPU:-0} $PY - <<'EOF' || return 1
import importlib.util, os, platform, shutil, sys
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      "| cpus", os.cpu_count(), "| /dev/shm free MB", shutil.disk_usage("/dev/shm").free // 2**20
      if os.path.isdir("/dev/shm") else "-")
missing = [m for m in ("open_clip", "regex", "ftfy", "PIL", "cv2", "safetensors", "tqdm", "numpy")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python modules: {', '.join(missing)} (add their wheels to .whl/)")
if not torch.cuda.is_available() and os.environ["ALLOW_CPU"] != "1":
    sys.exit("no CUDA device; set ALLOW_CPU=1 to run the (tiny) CPU check")
EOF

COMMON=(--seed "$SEED" --batch-size "$BATCH" --pool-size "$POOL" --pool-start $((POOL / 4)) --workers "$WORKERS"
        --scene-fraction "$SCENE_FRACTION" --eval-images "$EVAL_IMAGES" --log-every 200 --no-progress)
status=0

echo "== 1/3 fgsynth: biased captions, ${TRAIN_SECONDS} s"
timeout $((TRAIN_SECONDS + 120)) $PY -m fgclip_ros.cli.train_base --out-dir "$OUT" --name fgsynth \
    --max-seconds "$TRAIN_SECONDS" --eval-every-seconds 60 "${COMMON[@]}" || status=1

if [ "$REF_SECONDS" -gt 0 ]; then
    echo "== 2/3 fgsynth-fullcap: full captions (reference), ${REF_SECONDS} s"
    timeout $((REF_SECONDS + 90)) $PY -m fgclip_ros.cli.train_base --out-dir "$OUT" --name fgsynth-fullcap \
        --max-seconds "$REF_SECONDS" --eval-every-seconds 0 --attribute-prob 1 --full-prob 1 --background-prob 0 \
        --prefix-prob 0 "${COMMON[@]}" || status=1
    # The reference has the same architecture: its config copy would only be an eighth file.
    rm -f "$OUT/fgsynth-fullcap.json"
else
    echo "== 2/3 fgsynth-fullcap skipped (REF_SECONDS=0)"
fi

echo "== 3/3 summary"
$PY - "$OUT" <<'EOF' || status=1
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
families = ("color", "material", "pattern", "transparency")
summary = {}
for name in ("fgsynth", "fgsynth-fullcap"):
    path = out / f"{name}_train_log.json"
    if not path.is_file():
        print(f"{name}: no log"); continue
    log = json.loads(path.read_text())
    final = log["final"] or (log["evaluations"][-1] if log["evaluations"] else None)
    hist = log["history"][-1] if log["history"] else {}
    summary[name] = {"steps": log["steps"], "train_seconds": log["train_seconds"], "images_seen": log["images_seen"],
                     "crops_rendered": log["crops_rendered"], "last_loss": hist.get("loss"),
                     "images_per_s": hist.get("images_per_s"), "complete": log["complete"], "final": final}
    if final is None:
        continue
    probe, cos = final["probe"], final["cosine"]
    print(f"{name}: {log['steps']} steps, {log['train_seconds']} s, {log['images_seen']} images, "
          f"{log['crops_rendered']} crops rendered, last loss {hist.get('loss')}, {hist.get('images_per_s')} img/s")
    print("  probe acc  " + "  ".join(f"{k}={v:.3f}" for k, v in probe.items()))
    print("  cos rank   " + "  ".join(f"{f}={cos['rank_' + f]:.2f}" for f in families)
          + f"  sum={cos['rank_sum']:.2f}  category_acc={cos['category_accuracy']:.3f}")
main = summary.get("fgsynth", {}).get("final")
if main:
    ok = all(main["probe"][f] >= 0.9 for f in families)
    summary["probes_meet_0.9"] = ok
    print("probes >= 0.9 for every attribute family:", "YES" if ok else "NO")
    ref = summary.get("fgsynth-fullcap", {}).get("final")
    if ref:
        gap = main["cosine"]["rank_sum"] - ref["cosine"]["rank_sum"]
        summary["cosine_rank_sum_gap_vs_fullcap"] = gap
        chance = sum(json.loads((out / "fgsynth_train_log.json").read_text())["chance_ranks"].values())
        print(f"cosine rank sum: biased {main['cosine']['rank_sum']:.2f} vs full-caption {ref['cosine']['rank_sum']:.2f}"
              f" (chance {chance:.1f}, perfect 4)")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
EOF
ls -la "$OUT"
return $status
}

# A pipe (not exec > >(tee ...)) so run.log is complete when the script returns.
main 2>&1 | tee "$OUT/run.log"
exit "${PIPESTATUS[0]}"
