# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``fgclip-demo``: the sample bag replayed into the real perception node; its answers printed and scored.

    fgclip-demo                                   # model fgsynth, output in out/demo/
    fgclip-demo --model openai-vit-b-16 --device cuda --out out/demo-vitb16
    fgclip-demo --frames 6 --png-frames 2 --no-offline-check     # a quick one

Writes the sample bag, starts `fgclip-perception` (THE parameter file + overrides) in a private ROS
graph, sets fine-grained queries on the `queries` topic, replays the bag at its recorded rate,
asks the Query service, prints what the node answered per object and writes annotated PNG frames
and the evaluation report (report.json, summary.md) into the output folder. See docs/demo.md.
The node is stopped in every case, also on failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.core.errors import FgclipError

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # a user error is 2 (run_main)
MAX_TABLE_ROWS = 200


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-demo",
        description="Replay the sample bag into the running perception node, print and score its answers.",
    )
    parser.add_argument(
        "--model", default="fgsynth", help="manifest name or path to a manifest .yaml (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--params-file",
        type=Path,
        default=None,
        help="the node's parameter file (default: the installed one)",
    )
    parser.add_argument("--device", default=None, help="override the node's 'device' (cpu, cuda, auto)")
    parser.add_argument(
        "--frames", type=int, default=24, help="frames of the sample bag (default: %(default)s, 5 Hz)"
    )
    parser.add_argument(
        "--rate", type=float, default=1.0, help="replay speed, 1 = the recorded rate (default: %(default)s)"
    )
    parser.add_argument(
        "--png-frames", type=int, default=4, help="annotated frames written as PNG (default: %(default)s)"
    )
    parser.add_argument(
        "--domain-id", type=int, default=None, help="ROS_DOMAIN_ID of the private graph (default: a free one)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds the node may take to load the model and become active (default: %(default)s)",
    )
    parser.add_argument(
        "--no-offline-check",
        action="store_true",
        help="skip running the offline evaluator (evaluate_bag) on the same bag for comparison",
    )
    return describe_io(
        parser,
        inputs="--model: a manifest; --params-file: the node's parameter file; the sample bag (written here)",
        outputs="in --out DIR: summary.md, report.json, frames/ (annotated and debug_image PNGs),\n"
        "node_outputs/ (a bag of the node's outputs), node.log; the answers as tables on stdout",
        exit_codes={
            EXIT_FAILED: "the demo failed (the reason on stderr, the node's log in the output folder)",
            EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM)",
        },
    )


def _console():
    from rich.console import Console

    # Not a terminal (make, CI logs): wide enough that captions do not wrap.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def print_report(report: dict, out_dir: Path, console=None) -> None:
    from rich.table import Table

    console = console or _console()
    demo, evaluation = report["demo"], report["evaluation"]
    table = Table(title=f"What the node answered per object ({demo['model']}, {demo['provider']})")
    for column, justify in (
        ("frame", "right"),
        ("id", "left"),
        ("true caption", "left"),
        ("best query", "left"),
        ("score", "right"),
        ("correct", "center"),
    ):
        table.add_column(column, justify=justify)
    rows = report["objects"]
    for row in rows[:MAX_TABLE_ROWS]:
        verdict = (
            "-" if row["correct"] is None else ("[green]yes[/green]" if row["correct"] else "[red]no[/red]")
        )
        best = row["best_query"] or f"[dim]({row['status']})[/dim]"
        table.add_row(
            str(row["frame"]), row["id"], row["caption"] or "-", best, f"{row['score']:.3f}", verdict
        )
    console.print(table)
    if len(rows) > MAX_TABLE_ROWS:
        console.print(f"({len(rows) - MAX_TABLE_ROWS} more rows in {out_dir / 'report.json'})")

    service = report["service"]
    if service["rows"]:
        table = Table(
            title=f"Query service, latest frame: true caption vs its {service['rows'][0]['candidates'] - 1} "
            "hard negatives"
        )
        for column in ("id", "true caption", "rank", "hardest negative", "score true / negative"):
            table.add_column(column)
        for row in service["rows"]:
            table.add_row(
                row["id"],
                row["caption"],
                f"{row['rank']} / {row['candidates']}",
                row["hardest_negative"],
                f"{row['true_score']:.3f} / {row['hardest_negative_score']:.3f}",
            )
        console.print(table)

    accuracy = evaluation.get("accuracy") or {}
    top1 = accuracy.get("top1_accuracy")
    console.print(
        f"[bold]Top-1 accuracy of the node's answers: {'-' if top1 is None else f'{100 * top1:.1f}%'}[/bold] "
        f"({accuracy.get('correct', 0)} of {accuracy.get('answerable', 0)} objects, "
        f"{demo['frames_answered']} of {demo['frames_expected']} frames answered, "
        f"{len(report['queries']['topic'])} queries)"
    )
    if service["rows"]:
        console.print(
            f"Query service: mean rank of the true caption {service['mean_rank']:.2f} "
            f"(top-1 {100 * service['top1']:.0f}%) among {service['rows'][0]['candidates']} captions"
        )
    offline = report.get("offline")
    if offline:
        comparison = offline["comparison"]
        console.print(
            f"Offline evaluator on the same frames: same best query for {comparison['same_best_query']} of "
            f"{comparison['compared']} detections, "
            f"top-1 {100 * (offline['top1_accuracy_same_frames'] or 0):.1f}%"
        )
    files = report["files"]
    console.print(
        f"Written to {out_dir}/: summary.md, report.json, {len(files['annotated'])} annotated + "
        f"{len(files['debug_image'])} debug_image PNGs in frames/, node_outputs/ (bag), node.log "
        f"({demo['wall_s']:.1f} s in all)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["fgclip-demo", *argv])
    return run_main("fgclip-demo", build_parser(), lambda args: run(args, command), argv)


def run(args: argparse.Namespace, command: str) -> int:
    """A DemoUsageError reaches run_main (exit 2); any other failure of the demo is exit 1."""
    from fgclip_ros.demo.run import DemoOptions, DemoUsageError, run_demo

    def terminate(signum, frame):  # SIGTERM like Ctrl-C: unwind, so the node is stopped
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    options = DemoOptions(
        out_dir=args.out,
        model=args.model,
        params_file=args.params_file,
        device=args.device,
        frames=args.frames,
        rate=args.rate,
        png_frames=args.png_frames,
        domain_id=args.domain_id,
        startup_timeout_s=args.startup_timeout,
        offline_check=not args.no_offline_check,
    )
    try:
        report = run_demo(options, command=command)
    except DemoUsageError:
        raise
    except FgclipError as exc:
        print(f"fgclip-demo: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("fgclip-demo: interrupted; the node was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_report(report, args.out)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
