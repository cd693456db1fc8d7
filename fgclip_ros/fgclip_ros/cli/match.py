# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-match: score boxes of one picture against free-text queries, without ROS.

Example:
    fgclip-match --model openai-vit-b-16 --image desk.jpg --box 10,20,200,240 --box 300,40,420,200 \
        --query "red ceramic mug" --query "blue ceramic mug"
Without --box the whole image is one box. Prints a table (rich on a terminal, plain otherwise, or
--json).
"""

import argparse
import json
import logging
import sys

import numpy as np

from fgclip_ros.cli._common import add_encoder_arguments, describe_io, run_main
from fgclip_ros.core.device import resolve_device
from fgclip_ros.core.errors import FgclipError


def _box(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected x1,y1,x2,y2 in pixels, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-match",
        description="Score boxes of an image against free-text queries with a fine-grained CLIP model.",
    )
    parser.add_argument("--model", default="openai-vit-b-16",
                        help="manifest name (see fgclip_ros/models/) or path to a manifest .yaml "
                             "(default: %(default)s)")
    parser.add_argument("--image", required=True, help="image file (any format Pillow reads)")
    parser.add_argument("--box", type=_box, action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="box in pixels, repeatable; default: the whole image")
    parser.add_argument("--query", action="append", required=True, metavar="TEXT",
                        help="query text, repeatable (one table column each)")
    add_encoder_arguments(parser, backend_help="auto: ONNX Runtime on the CPU, graphs exported on first use")
    parser.add_argument("--context-scale", type=float, default=1.0,
                        help="crop this multiple of each box around its centre (default: %(default)s)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="below this cosine score a box has no match (default: %(default)s)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--plain", action="store_true", help="plain-text table even on a terminal")
    parser.add_argument("-q", "--quiet", action="store_true", help="no log lines on stderr")
    return describe_io(
        parser,
        inputs="--image FILE, its --box boxes and the --query texts; --model: a manifest",
        outputs="a table of scores per box and query on stdout (--json: the same as JSON)",
    )


def _read_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise FgclipError(f"{path}: image not found; give an existing image file with --image") from None
    except (UnidentifiedImageError, OSError) as exc:
        reason = exc.__class__.__name__
        raise FgclipError(f"{path}: cannot read the image ({reason}); give a PNG/JPEG file") from None


def _box_text(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def _rows(frame, boxes: np.ndarray) -> list[dict]:
    """One dict per input box, in input order, with everything the outputs show."""
    rows_of_box = frame.row_of_box()
    result = frame.match
    rows = []
    for index, box in enumerate(boxes):
        row = {"index": index, "box": [float(v) for v in box], "valid": bool(frame.check.valid[index])}
        r = rows_of_box[index]
        if r < 0:
            row["rejected_reason"] = frame.check.reasons.get(index, "rejected")
        else:
            best = int(result.best_index[r])
            row.update(
                scores=[float(s) for s in result.scores[r]],
                probabilities=[float(p) for p in result.probs[r]],
                best_index=best,
                best_query=frame.queries[best] if best >= 0 else "",
                score=float(result.best_score[r]),
                probability=float(result.best_prob[r]),
                margin=float(result.margin[r]),
            )
        rows.append(row)
    return rows


def _table_cells(row: dict, num_queries: int) -> list[str]:
    if not row["valid"]:
        return ["rejected"] * num_queries + ["-", "-", "-"]
    best = row["best_index"]
    top = int(np.argmax(row["scores"])) if num_queries else -1
    cells = [f"{s:.3f}" + ("*" if q == top and best >= 0 else "") for q, s in enumerate(row["scores"])]
    best_text = row["best_query"] if best >= 0 else f"(none: {row['score']:.3f} < min score)"
    return cells + [best_text, f"{row['probability']:.3f}", f"{row['margin']:.3f}"]


def _print_plain(header: list[str], table: list[list[str]], out) -> None:
    widths = [max(len(h), *(len(r[c]) for r in table)) if table else len(h) for c, h in enumerate(header)]
    for line in [header, ["-" * w for w in widths], *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip(), file=out)


def _print_rich(title: str, header: list[str], table: list[list[str]], out) -> None:
    from rich.console import Console
    from rich.table import Table

    rich_table = Table(title=title, title_justify="left")
    text_columns = {1, len(header) - 3}  # box and best query; the rest are numbers
    for c, name in enumerate(header):
        rich_table.add_column(name, justify="left" if c in text_columns else "right")
    for line in table:
        rich_table.add_row(*[f"[bold green]{cell[:-1]}[/]" if cell.endswith("*") else cell for cell in line])
    Console(file=out).print(rich_table)


def _report(pipeline, frame, boxes: np.ndarray, args, out) -> None:
    rows = _rows(frame, boxes)
    if args.json:
        json.dump({"model": pipeline.name, "provider": pipeline.encoder.provider, "queries": frame.queries,
                   "template": pipeline.query_bank.template, "min_score": args.min_score,
                   "detections": rows, "timings_ms": frame.timings_ms}, out, indent=2)
        print(file=out)
        return
    header = ["#", "box", *frame.queries, "best", "p(best)", "margin"]
    num_queries = len(frame.queries)
    table = [[str(row["index"]), _box_text(row["box"]), *_table_cells(row, num_queries)] for row in rows]
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in frame.timings_ms.items())
    title = f"{pipeline.name} on {pipeline.encoder.provider}; cosine scores, * = best ({timings})"
    if args.plain or not out.isatty():
        print(title, file=out)
        _print_plain(header, table, out)
    else:
        _print_rich(title, header, table, out)
    for row in rows:
        if not row["valid"]:
            box = _box_text(row["box"])
            print(f"box {row['index']} ({box}) rejected: {row['rejected_reason']}", file=out)


def run(args, out=None) -> int:
    from fgclip_ros.export.deploy import deployed_pipeline

    out = out or sys.stdout
    image = _read_image(args.image)
    height, width = image.shape[:2]
    boxes = np.array(args.box or [(0.0, 0.0, float(width), float(height))], dtype=np.float64)
    pipeline = deployed_pipeline(args.model, backend=args.backend, device=resolve_device(args.device),
                                 dtype=args.dtype, quantize=args.quantize, context_scale=args.context_scale)
    try:
        pipeline.set_queries(args.query, template=args.template)
    except ValueError as exc:  # a malformed --template
        raise FgclipError(f"--template: {exc}") from None
    frame = pipeline.process(image, boxes, args.min_score)
    _report(pipeline, frame, boxes, args, out)
    return 0


def _show_progress_logs() -> None:
    """Our INFO lines (download, model, provider) on stderr; other libraries' logging is left alone."""
    logger = logging.getLogger("fgclip_ros")
    if not any(getattr(h, "_fgclip_match", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler._fgclip_match = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # open_clip's root-logger calls give the root a handler; without this each line prints twice.
    logger.propagate = False


def _run_with_logs(args) -> int:
    if not args.quiet:
        _show_progress_logs()
    return run(args)


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-match", build_parser(), _run_with_logs, argv)


if __name__ == "__main__":
    sys.exit(main())
