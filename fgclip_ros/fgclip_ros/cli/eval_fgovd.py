# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-eval-fgovd: FG-OVD mean ranks of a model, optionally against its own cosine baseline.

Examples:
    # the synthetic world's test set (written by fgclip-make-fgovd), model vs. its cosine baseline
    fgclip-eval-fgovd --model fgsynth-tiny --benchmark data/fgsynth/test --compare-cosine \
        --out results/fgsynth
    # the published FG-OVD benchmarks with the COCO 2017 images (root folder holding val2017/)
    fgclip-eval-fgovd --model openai-vit-b-16 --benchmark FG-OVD/benchmarks --images /data/coco \
        --compare-cosine

Writes the JSON report and a bar chart into the --out folder; prints a table.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from fgclip_ros.cli._common import add_encoder_arguments, describe_io, out_folder, run_main
from fgclip_ros.core.device import resolve_device
from fgclip_ros.core.errors import FgclipError

REPORT_FILE, CHART_FILE = "report.json", "ranks.png"  # in --out, as fgclip-eval-bag(s) name theirs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-eval-fgovd",
        description="Rank positive vs. hard-negative captions of FG-OVD-format benchmark boxes.",
    )
    parser.add_argument("--model", required=True,
                        help="manifest name (fgclip_ros/models/) or path to a .yaml")
    parser.add_argument("--benchmark", nargs="+", required=True, metavar="PATH",
                        help="split JSON files and/or folders holding them (<split>.json or FG-OVD's names)")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="root that image file_name entries are relative to (default: each JSON's "
                             "folder; for FG-OVD the COCO 2017 root that contains val2017/)")
    parser.add_argument("--splits", default=None,
                        help="comma-separated subset of the splits found (default: all)")
    parser.add_argument("--compare-cosine", action="store_true",
                        help="also evaluate the same encoder with identity heads (the cosine baseline)")
    add_encoder_arguments(parser, backend_help="auto: ONNX Runtime on the CPU (the PyTorch tower with "
                          "--compare-cosine, whose baseline needs the raw embeddings)")
    parser.add_argument("--batch-size", type=int, default=128, help="crops per image-tower batch")
    parser.add_argument("--max-annotations", type=int, default=None, metavar="N",
                        help="evaluate only the first N annotations of each split (quick checks)")
    parser.add_argument("--out", type=out_folder(".json", ".png"), default="eval_fgovd", metavar="DIR",
                        help=f"report folder: {REPORT_FILE}, {CHART_FILE} (default: %(default)s)")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help=f"write the bar chart here instead of DIR/{CHART_FILE} ('none': no chart)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-q", "--quiet", action="store_true", help="no log lines on stderr")
    return describe_io(
        parser,
        inputs="--model: a manifest; --benchmark: FG-OVD-format split JSON files\n"
        "(and --images, their images)",
        outputs=f"in --out DIR: {REPORT_FILE}, {CHART_FILE} (mean rank per split; --plot: elsewhere);\n"
        "a table on stdout",
    )


def _variant_name(manifest) -> str:
    if manifest.reprojection_kind == "identity":
        return "cosine"
    return f"{manifest.reprojection_kind} ({manifest.reprojection_sides})"


def _print_table(results: dict, out) -> None:
    """Per split: L, chance, each variant's mean / median rank and the share of the gap it closes."""
    names = list(results)
    splits = list(next(iter(results.values())).splits)
    with_gap = [n for n in names if results[n].gap_closed is not None]
    header = ["split", "n", "L", "chance"] + [f"{n}: mean/median rank" for n in names]
    header += [f"{n}: gap closed" for n in with_gap]
    lines = []
    for split in splits:
        first = results[names[0]].splits[split]
        cells = [split, str(first.annotations), str(first.negatives), f"{first.chance_mean_rank:.2f}"]
        cells += [f"{r.splits[split].mean_rank:.3f} / {r.splits[split].median_rank:g}"
                  for r in results.values()]
        cells += [_percent(results[n].splits[split].gap_closed) for n in with_gap]
        lines.append(cells)
    first = results[names[0]]
    lines.append(["MRS", "", "", f"{first.chance_mean_rank_sum:.2f}"]
                 + [f"{r.mean_rank_sum:.3f}" + ("" if r.complete else " (partial)") for r in results.values()]
                 + [_percent(results[n].gap_closed) for n in with_gap])
    if any(r.category_accuracy is not None for r in results.values()):
        lines.append(["category acc", "", "", ""] + [
            "-" if r.category_accuracy is None else f"{r.category_accuracy:.3f}" for r in results.values()])
    widths = [max(len(h), *(len(line[c]) if c < len(line) else 0 for line in lines))
              for c, h in enumerate(header)]
    for line in [header, ["-" * w for w in widths], *lines]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip(), file=out)
    from fgclip_ros.evaluation.ranks import FGOVD_NEGATIVES, chance_mean_rank_sum

    print(f"MRS: chance {first.chance_mean_rank_sum:g}, perfect {first.perfect_mean_rank_sum:g} for these "
          f"splits' L (FG-OVD's own: chance {chance_mean_rank_sum(FGOVD_NEGATIVES):g}, perfect "
          f"{len(FGOVD_NEGATIVES)}); gap closed: the share of the cosine rank's distance to perfect "
          "that the heads remove", file=out)


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}%"


def run(args, out=None) -> int:
    from fgclip_ros.core.manifest import load_manifest
    from fgclip_ros.core.pipeline import load_manifest_heads
    from fgclip_ros.evaluation.fgovd import evaluate_fgovd, find_split_files
    from fgclip_ros.evaluation.plots import plot_mean_ranks
    from fgclip_ros.export.deploy import deployed_encoder
    from fgclip_ros.synth.vocab import VOCABULARY

    out = out or sys.stdout
    split_files = find_split_files(args.benchmark)
    if args.splits:
        wanted = [s.strip() for s in args.splits.split(",") if s.strip()]
        missing = [s for s in wanted if s not in split_files]
        if missing:
            raise FgclipError(f"--splits: {', '.join(missing)} not found in --benchmark "
                              f"(found: {', '.join(split_files)})")
        split_files = {s: split_files[s] for s in wanted}
    manifest = load_manifest(args.model)
    backend = "torch" if args.backend == "auto" and args.compare_cosine else args.backend
    device = resolve_device(args.device)
    encoder = deployed_encoder(manifest, backend=backend, device=device, dtype=args.dtype,
                               quantize=args.quantize, progress=not args.no_progress).encoder
    variants = {}
    if encoder.projected:
        variants[_variant_name(manifest)] = None
        if args.compare_cosine:
            raise FgclipError(f"--compare-cosine: {manifest.name}'s graphs already contain its heads; "
                              "evaluate the torch backend (--backend torch) to compare with cosine")
    else:
        if args.compare_cosine and manifest.reprojection_kind != "identity":
            variants["cosine"] = None
        variants[_variant_name(manifest)] = load_manifest_heads(manifest, encoder.embed_dim)
    template = manifest.prompt_template if args.template is None else args.template

    start = time.perf_counter()
    results = evaluate_fgovd(split_files, encoder, variants, image_root=args.images, template=template,
                             batch_size=args.batch_size, max_annotations=args.max_annotations,
                             progress=False if args.no_progress else None, vocabulary=VOCABULARY)
    elapsed = time.perf_counter() - start

    report = {
        "model": manifest.name, "provider": encoder.provider, "template": template,
        "benchmark": {s: str(p) for s, p in split_files.items()}, "images": args.images,
        "max_annotations": args.max_annotations, "seconds": round(elapsed, 2),
        "variants": {name: r.to_dict() for name, r in results.items()},
    }
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / REPORT_FILE
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{manifest.name} on {encoder.provider}, {elapsed:.1f} s; "
          "rank of the true caption (lower is better)", file=out)
    _print_table(results, out)
    print(f"report: {out_path}", file=out)
    if (args.plot or "").lower() != "none":
        plot_path = Path(args.plot) if args.plot else out_dir / CHART_FILE
        plot_mean_ranks(results, plot_path, title=f"{manifest.name}: FG-OVD-format mean rank per split")
        print(f"chart: {plot_path}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-eval-fgovd", build_parser(), run, argv, quiet_flag="quiet")


if __name__ == "__main__":
    sys.exit(main())
