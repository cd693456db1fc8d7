# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-eval-bag: run the perception pipeline over a rosbag2 (sqlite3 or mcap) and score it.

Examples:
    fgclip-make-sample-bag && fgclip-eval-bag ~/.cache/fgclip_ros/sample_bags/fgclip_sample_mcap \
        --queries-from-ground-truth --out eval/sample
    fgclip-eval-bag my_bag/ --image-topic /camera/image_raw/compressed \
        --detections-topic /detector/detections --queries-file queries.txt \
        --model openai-vit-b-16 --device cuda --write-bag eval/labelled_bag

Topics default to the bag's only Image/CompressedImage and Detection2DArray topics. Model, device,
min score, max detections, pairing tolerance and queries default to the node's parameter file
(config/perception.yaml), so the numbers are what the node would publish. Writes report.json,
detections.jsonl, summary.md and PNG plots into --out; prints the headline numbers.
"""

import argparse
import sys
from pathlib import Path

from fgclip_ros.cli._common import add_encoder_arguments, describe_io, run_main
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.export.deploy import DEFAULT_INTRA_OP_THREADS
from fgclip_ros.ros.param_file import installed_node_params, nested


def build_parser(defaults: dict | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-eval-bag",
        description="Fine-grained labels of a bag's detections: accuracy, hard-negative ranks, latency.",
    )
    parser.add_argument("bag", help="rosbag2 folder, or a single .mcap / .db3 file")
    output = add_evaluation_arguments(parser, defaults)
    output.add_argument("--out", default=None, metavar="DIR", help="report folder (default: eval_<bag name>)")
    output.add_argument(
        "--write-bag",
        default=None,
        metavar="PATH",
        help="also write a bag of the outputs (image, FineGrainedDetections, labelled Detection2DArray)",
    )
    output.add_argument("--write-bag-storage", choices=("mcap", "sqlite3"), default="mcap")
    return describe_io(
        parser,
        inputs="BAG: a rosbag2 (image + Detection2DArray topics, ground truth when present);\n"
        "queries (--query, --queries-file, --queries-from-ground-truth); the model of --model",
        outputs="in --out DIR: report.json, detections.jsonl, summary.md, latency.png\n"
        "(+ rank_histogram.png, confusion.png with attribute ground truth); --write-bag PATH: a bag\n"
        "of the outputs; the headline numbers on stdout",
    )


def add_evaluation_arguments(parser: argparse.ArgumentParser, defaults: dict | None = None):
    """Topic, query, model and scoring options of an evaluation (shared with fgclip-eval-bags).

    Returns the "output" argument group, for the options that differ between the two commands.
    """
    d = defaults if defaults is not None else installed_node_params()
    topics = parser.add_argument_group("topics")
    topics.add_argument(
        "--image-topic",
        default=None,
        help="sensor_msgs/Image or CompressedImage topic (default: the bag's only one)",
    )
    topics.add_argument(
        "--detections-topic",
        default=None,
        help="vision_msgs/Detection2DArray topic (default: the bag's only one)",
    )
    topics.add_argument(
        "--ground-truth-topic",
        default="/fgclip/ground_truth",
        help="std_msgs/String JSON ground truth, used when present (default: %(default)s)",
    )
    topics.add_argument(
        "--tolerance",
        type=float,
        default=float(nested(d, "sync.tolerance_s", 0.0)),
        metavar="S",
        help="pair image and detections whose stamps differ by <= S seconds (default: %(default)s)",
    )
    queries = parser.add_argument_group("queries (file and ground truth may be combined)")
    queries.add_argument(
        "--queries-file", default=None, metavar="FILE", help="one query per line, '#' comments"
    )
    queries.add_argument("--query", action="append", default=[], metavar="TEXT", help="a query, repeatable")
    queries.add_argument(
        "--queries-from-ground-truth",
        action="store_true",
        help="add every ground-truth caption of the bag as a query",
    )
    model = parser.add_argument_group("model (defaults: config/perception.yaml)")
    model.add_argument(
        "--model",
        default=d.get("model", "openai-vit-b-16"),
        help="manifest name or path to a manifest .yaml (default: %(default)s)",
    )
    add_encoder_arguments(model, d)
    model.add_argument("--intra-op-threads", type=int,
                       default=int(d.get("intra_op_threads", DEFAULT_INTRA_OP_THREADS)),
                       help="ONNX Runtime threads per session, 0 = one per core (default: %(default)s)")
    model.add_argument("--context-scale", type=float, default=float(d.get("context_scale", 1.0)))
    model.add_argument(
        "--min-score",
        type=float,
        default=float(d.get("min_score", 0.0)),
        help="cosine score a best query must reach (default: %(default)s)",
    )
    model.add_argument(
        "--max-detections",
        type=int,
        default=int(d.get("max_detections", 100)),
        help="boxes scored per frame, the rest rejected (0 = all; default: %(default)s)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--labeled-top-k",
        type=int,
        default=int(d.get("labeled_top_k", 5)),
        help="results per box in the written detections_labeled (default: %(default)s)",
    )
    output.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    output.add_argument("--no-hard-negatives", action="store_true", help="skip the hard-negative ranking")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    output.add_argument("-q", "--quiet", action="store_true", help="no log lines on stderr")
    return output


def _fmt_pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_summary(report: dict, files: dict, out) -> None:
    counts, timing = report["counts"], report["timing"]
    print(
        f"{report['model']['name']} ({report['model']['provider']}) on {report['bag']['path']} "
        f"[{report['bag']['storage']}]",
        file=out,
    )
    print(
        f"frames {counts['frames_processed']} processed of {counts['image_messages']} images "
        f"({counts['unpaired_images']} unpaired images, {counts['unpaired_detections']} unpaired detection "
        f"messages, skipped {sum(counts['skipped'].values())}); {counts['detections']} detections",
        file=out,
    )
    p = timing["frame_ms"]
    if p["p50"] is not None:
        print(
            f"latency per frame p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms; "
            f"throughput {timing['throughput_fps']:.1f} frames/s",
            file=out,
        )
    accuracy = report.get("accuracy")
    if accuracy:
        print(
            f"top-1 accuracy {_fmt_pct(accuracy['top1_accuracy'])} "
            f"({accuracy['correct']}/{accuracy['answerable']})",
            file=out,
        )
    else:
        print("no ground truth: labels and timing only", file=out)
    ranking = report.get("ranking")
    if ranking:
        families = ", ".join(f"{f} {v['mean_rank']:.2f}" for f, v in ranking["per_family"].items())
        print(
            f"true caption vs hard negatives: mean rank {ranking['mean_rank']:.2f} of "
            f"{ranking['mean_candidates']:.0f} (chance {(ranking['mean_candidates'] + 1) / 2:.1f}); "
            f"{families}",
            file=out,
        )
    print(f"report: {files['summary']} (+ report.json, detections.jsonl, PNGs)", file=out)
    if report.get("written_bag"):
        print(f"output bag: {report['written_bag']}", file=out)


def evaluation_options(args):
    """EvalBagOptions from the arguments of `add_evaluation_arguments` (queries file read here)."""
    from fgclip_ros.evaluation.bag import EvalBagOptions, read_queries_file
    from fgclip_ros.synth.vocab import VOCABULARY

    queries = list(args.query)
    if args.queries_file:
        queries += read_queries_file(args.queries_file)
    if not queries and not args.queries_from_ground_truth:
        raise FgclipError("no queries: pass --queries-file, --query and/or --queries-from-ground-truth")
    return EvalBagOptions(
        image_topic=args.image_topic,
        detections_topic=args.detections_topic,
        ground_truth_topic=args.ground_truth_topic,
        queries=queries,
        queries_from_ground_truth=args.queries_from_ground_truth,
        tolerance_s=args.tolerance,
        min_score=args.min_score,
        max_detections=args.max_detections,
        labeled_top_k=args.labeled_top_k,
        max_frames=args.max_frames,
        hard_negatives=not args.no_hard_negatives,
        progress=False if args.no_progress else None,
        vocabulary=VOCABULARY,
    )


def run(args, out=None) -> int:
    from fgclip_ros.evaluation.bag import check_bag, evaluate_bag
    from fgclip_ros.evaluation.bag_report import write_report

    out = out or sys.stdout
    bag_path = Path(args.bag)
    options = evaluation_options(args)
    if args.write_bag and Path(args.write_bag).exists():
        raise FgclipError(f"--write-bag {args.write_bag} exists; remove it or choose another path")
    options.write_bag = Path(args.write_bag) if args.write_bag else None
    options.write_bag_storage = args.write_bag_storage
    check_bag(bag_path, options)  # a bad bag fails here, before a model is loaded (or downloaded)
    evaluation = evaluate_bag(bag_path, model_spec(args).build(), options)
    out_dir = Path(args.out) if args.out else Path(f"eval_{bag_path.resolve().name}")
    files = write_report(evaluation, out_dir)
    print_summary(evaluation.report, files, out)
    return 0


def model_spec(args, device: str | None = None):
    """The ModelSpec of the model options (--model, --backend, --device, --dtype, --template, ...).

    `device`: already resolved (fgclip-eval-bags on a cluster); else --device, checked here.
    """
    from fgclip_ros.core.device import resolve_device
    from fgclip_ros.evaluation.bag_set import ModelSpec

    if device is None:
        device = resolve_device(args.device)
    return ModelSpec(
        args.model,
        backend=args.backend,
        device=device,
        dtype=args.dtype,
        context_scale=args.context_scale,
        template=args.template,
        quantize=args.quantize,
        intra_op_threads=args.intra_op_threads,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-eval-bag", build_parser(), run, argv, quiet_flag="quiet")


if __name__ == "__main__":
    sys.exit(main())
