# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark fgclip-eval-bags: N sample bags with each --workers count; wall time and frames/s.

    python scripts/bench_eval_bags.py --bags 8 --frames 24 --workers 1 2 --model fgsynth

Each run is the command a user types (a fresh process: imports, Ray start-up, model loads, plots
included), into its own empty --out so nothing is reused. Figures, not a test: record them in
docs/rosbag-evaluation.md with the machine and its load.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24, help="frames per bag")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="fgsynth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads-per-worker", type=int, default=None, help="passed on (default: the command's)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per worker count (the best is kept)")
    parser.add_argument(
        "--keep", default=None, metavar="DIR", help="work folder to keep (default: temporary)"
    )
    args = parser.parse_args()

    from fgclip_ros.bags.sample import SampleBagConfig, write_sample_bag

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        bags = work / "bags"
        for i in range(args.bags):
            storage = ("mcap", "sqlite3")[i % 2]
            path = bags / f"bag_{i:03d}_{storage}"
            if not path.exists():
                write_sample_bag(path, SampleBagConfig(frames=args.frames, seed=100 + i, storage=storage))
        print(
            f"{args.bags} sample bags x {args.frames} frames (320x240, 2-5 objects), model {args.model}, "
            f"device {args.device}"
        )
        # command: the whole process; run: from the bag list to the report (no interpreter, imports, Ray
        # shutdown); frames/s over the command's wall time.
        print(f"{'workers':>7}  {'command s':>9}  {'run s':>6}  {'frames':>6}  {'frames/s':>8}")
        for workers in args.workers:
            best = None
            for repeat in range(args.repeats):
                out = work / f"out_w{workers}_{repeat}"
                command = [
                    sys.executable,
                    "-m",
                    "fgclip_ros.cli.eval_bags",
                    str(bags),
                    "--model",
                    args.model,
                    "--device",
                    args.device,
                    "--queries-from-ground-truth",
                    "--workers",
                    str(workers),
                    "--out",
                    str(out),
                    "--no-progress",
                    "-q",
                    "--force",
                ]
                if args.threads_per_worker:
                    command += ["--threads-per-worker", str(args.threads_per_worker)]
                start = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                report = json.loads((out / "report.json").read_text())
                if best is None or wall < best[0]:
                    best = (wall, report["run"]["wall_s"], report["overall"]["counts"]["frames_processed"])
            wall, run_s, frames = best
            print(f"{workers:>7}  {wall:>9.1f}  {run_s:>6.1f}  {frames:>6}  {frames / wall:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
