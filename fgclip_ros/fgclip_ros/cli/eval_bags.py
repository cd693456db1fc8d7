# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-eval-bags: evaluate many rosbag2 bags with one model, on this machine or a Ray cluster.

Examples:
    fgclip-eval-bags recordings/ --queries-from-ground-truth --out eval/fleet
    fgclip-eval-bags bags.txt --queries-file queries.txt --device cuda --ray-address auto --out /shared/eval

Inputs: bag folders, .mcap/.db3 files, folders searched recursively for bags, or a text file
listing them (one per line, relative to the file, '#' comments). Topic, query, model and scoring
options are fgclip-eval-bag's. Output, in --out: report.json, summary.md and PNGs for the whole
set, and bags/<bag>/ with each bag's own report (as fgclip-eval-bag writes it) and result.json.
A rerun reuses every bag whose result.json matches the current inputs (bag path, size and mtime,
model files' sha256, queries, options); --force recomputes all.

--workers 1 evaluates in this process; more start a local Ray runtime with that many workers, each
holding the model once; --ray-address joins an existing cluster (bags and --out on storage every
node sees).
"""

import argparse
import os
import sys
import time
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.cli.eval_bag import add_evaluation_arguments, evaluation_options, model_spec
from fgclip_ros.core.errors import FgclipError

EXIT_SOME_FAILED = 1


def build_parser(defaults: dict | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-eval-bags",
        description="Evaluate a set of bags: one report over all of them, per-bag reports beside it.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="bag folder, .mcap/.db3 file, folder searched for bags, or a text file listing bags",
    )
    output = add_evaluation_arguments(parser, defaults)
    output.add_argument(
        "--out", default="eval_bags", metavar="DIR", help="report folder (default: %(default)s)"
    )
    output.add_argument(
        "--write-bags",
        action="store_true",
        help="also write each bag's outputs (as fgclip-eval-bag --write-bag) into its folder",
    )
    output.add_argument("--write-bag-storage", choices=("mcap", "sqlite3"), default="mcap")
    output.add_argument("--force", action="store_true", help="recompute bags whose stored result matches")
    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="model copies evaluating bags at once; 1: in this process without Ray "
        "(default: one per GPU with --device cuda, else one per core, at most one per bag)",
    )
    execution.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join this Ray cluster (e.g. auto, ray://head:10001) instead of starting a local runtime",
    )
    execution.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads (and Ray CPUs) per worker (default: the cores shared out, at least 1)",
    )
    return describe_io(
        parser,
        inputs="INPUT: bag folders, .mcap/.db3 files, folders searched recursively, text files\n"
        "listing bags; queries and the model as in fgclip-eval-bag",
        outputs="in --out DIR: report.json, summary.md, accuracy.png, ranks.png, latency.png, counts.png;\n"
        "bags/<bag>/: the bag's own report (as fgclip-eval-bag writes it) and result.json;\n"
        "a table per bag on stdout",
        done="every bag evaluated",
        exit_codes={EXIT_SOME_FAILED: "some bag failed (its reason is in the report and the table)"},
    )


def _cluster_device(args) -> str | None:
    """--device on a joined cluster (auto: CUDA when it has GPUs); None: this machine's, checked here."""
    if not args.ray_address:
        return None
    if args.device != "auto":
        return args.device
    import ray

    return "cuda" if ray.cluster_resources().get("GPU", 0) else "cpu"


def _sizing(args, device: str, pending: int) -> tuple[int, int, int]:
    """(workers, threads per worker, GPUs) for this machine or the joined cluster."""
    if args.ray_address:
        import ray

        resources = ray.cluster_resources()
        cores = int(resources.get("CPU", 1))
        gpus = int(resources.get("GPU", 0))
    else:
        cores = os.cpu_count() or 1
        gpus = 0
        if device.startswith("cuda"):
            import torch

            gpus = torch.cuda.device_count()
    workers = args.workers
    if workers is None:
        workers = gpus if device.startswith("cuda") else cores
        workers = max(1, min(workers, pending))
    if workers < 1:
        raise FgclipError("--workers must be at least 1")
    if device.startswith("cuda") and gpus == 0:
        where = f"the Ray cluster at {args.ray_address}" if args.ray_address else "this machine"
        raise FgclipError(f"--device {args.device}: {where} has no GPU; use --device cpu")
    threads = args.threads_per_worker or max(1, cores // workers)
    return workers, threads, gpus


def _print_table(report: dict, out) -> None:
    from fgclip_ros.evaluation.bag_report import _fmt
    from fgclip_ros.evaluation.bag_set_report import bag_rows

    header, rows = bag_rows(report)
    cells = [header] + [[_fmt(c, 1) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(-1, "-" * len(lines[0]))  # above the "all" row
    print("\n".join(lines), file=out)


def run(args, out=None) -> int:
    from fgclip_ros.evaluation.bag_set import (
        EvalJob,
        RunProgress,
        canonical,
        find_bags,
        image_messages,
        remove_partial_results,
        run_in_process,
    )
    from fgclip_ros.evaluation.bag_set_report import write_set_report

    out = out or sys.stdout
    start = time.perf_counter()
    options = evaluation_options(args)
    options.write_bag_storage = args.write_bag_storage
    bags = find_bags(args.inputs)
    if args.ray_address:
        import ray

        ray.init(address=args.ray_address, log_to_driver=False, configure_logging=False)
    try:
        model = model_spec(args, _cluster_device(args))
        out_dir = Path(args.out)
        job = EvalJob(model, options, out_dir, write_bags=args.write_bags)
        fingerprint = model.fingerprint()  # a missing model file stops the run here, before any bag
        tasks = job.tasks(bags, fingerprint)
        remove_partial_results(job.bags_dir())
        entries: dict[int, dict] = {}
        for task in [] if args.force else tasks:
            stored = job.stored_result(task)
            if stored is not None:
                entries[task.index] = {**stored, "reused": True}
        pending = [
            type(t)(t.index, t.path, t.bag_id, t.key, image_messages(t.path, options.image_topic))
            for t in tasks
            if t.index not in entries
        ]
        workers, threads, gpus = _sizing(args, model.device, len(pending))
        # A GPU per worker, or a share of one when there are more workers than GPUs.
        gpus_per_worker = min(1.0, gpus / workers) if model.device.startswith("cuda") else 0.0
        use_ray = workers > 1 or args.ray_address
        if use_ray and pending and not args.ray_address:
            from fgclip_ros.evaluation.bag_set_ray import start_ray

            # Before the bar: Ray's start-up lines would break it.
            start_ray(None, workers, threads, gpus=gpus)
        progress = RunProgress(pending, len(entries), False if args.no_progress else None)
        try:
            if use_ray:
                from fgclip_ros.evaluation.bag_set_ray import run_on_ray

                results = run_on_ray(job, pending, progress, workers, threads, gpus_per_worker)
            else:
                results = run_in_process(job, pending, progress, threads)
        finally:
            progress.close()
    finally:
        ray = sys.modules.get("ray")  # imported only when this run started or joined Ray
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    entries.update({t.index: e for t, e in zip(pending, results, strict=True)})
    ordered = [entries[t.index] for t in tasks]
    wall_s = time.perf_counter() - start
    frames = sum(
        e["counts"]["frames_processed"] for t, e in zip(pending, results, strict=True) if e["counts"]
    )
    run_info = {
        "workers": workers,
        "threads_per_worker": threads,
        "ray": workers > 1,
        "ray_address": args.ray_address,
        "wall_s": wall_s,
        "frames_evaluated": frames,
        "frames_per_s": frames / wall_s if wall_s > 0 else None,
    }
    report = write_set_report(ordered, fingerprint, canonical(tasks[0].key["options"]), run_info, out_dir)
    _print_table(report, out)
    total = report["overall"]
    print(
        f"{total['bags']} bags: {total['completed']} ok ({total['reused']} reused), "
        f"{total['failed']} failed; {frames} frames evaluated in {wall_s:.1f} s with {workers} worker(s); "
        f"report: {out_dir / 'summary.md'}",
        file=out,
    )
    return EXIT_SOME_FAILED if total["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-eval-bags", build_parser(), run, argv, quiet_flag="quiet")


if __name__ == "__main__":
    sys.exit(main())
