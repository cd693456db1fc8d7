# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-export: export a model's towers to ONNX with the re-projection heads and L2 norm folded in.

Example:
    fgclip-export --model openai-vit-b-16 --out exports/openai-vit-b-16
    fgclip-match --model exports/openai-vit-b-16/openai-vit-b-16-onnx-fp32.yaml --backend onnx \
        --image desk.jpg --box 10,20,200,240 --query "red ceramic mug" --query "blue ceramic mug"
Each dtype gets an image graph, a text graph and a manifest; the graphs are verified against the
PyTorch model first (max |error|, min cosine) and an export that drifts is refused.
"""

import argparse
import logging
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main

EXIT_VERIFICATION_FAILED = 3  # the graphs do not compute what PyTorch computes (after all dtypes ran)


def build_parser() -> argparse.ArgumentParser:
    from fgclip_ros.export.onnx import DEFAULT_OPSET, EXPORT_DTYPES

    parser = argparse.ArgumentParser(
        prog="fgclip-export",
        description="Export a model's image and text towers to ONNX (heads + L2 normalisation in the "
        "graphs), verify them against PyTorch and write a loadable manifest next to them.",
    )
    parser.add_argument(
        "--model",
        default="openai-vit-b-16",
        help="manifest name (see fgclip_ros/models/) or path to a manifest .yaml (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: exports/<model name> in the current folder)",
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=EXPORT_DTYPES,
        default=list(EXPORT_DTYPES),
        help="variants to export (default: %(default)s)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    parser.add_argument(
        "--providers",
        nargs="+",
        default=["CPUExecutionProvider"],
        metavar="EP",
        help="ONNX Runtime providers to verify with, in order (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-q", "--quiet", action="store_true", help="no log lines on stderr")
    return describe_io(
        parser,
        inputs="--model: a manifest (its weights and re-projection heads)",
        outputs="in --out DIR, per dtype: <model>-image-<dtype>.onnx, <model>-text-<dtype>.onnx and the\n"
        "manifest <model>-onnx-<dtype>.yaml; one line per dtype on stdout (manifest, verification)",
        exit_codes={EXIT_VERIFICATION_FAILED: "an exported graph does not compute what PyTorch computes"},
    )


def run(args) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from fgclip_ros.core.manifest import load_manifest
    from fgclip_ros.export.onnx import ExportVerificationError, export_manifest

    manifest = load_manifest(args.model)
    out_dir = args.out if args.out is not None else Path("exports") / manifest.name
    try:
        # Progress: on unless --no-progress (tqdm itself stays off when stderr is not a terminal).
        results = export_manifest(
            manifest,
            out_dir,
            dtypes=args.dtype,
            opset=args.opset,
            providers=args.providers,
            progress=False if args.no_progress else None,
        )
    except ExportVerificationError as exc:
        print(f"fgclip-export: error: {exc}", file=sys.stderr)
        return EXIT_VERIFICATION_FAILED
    for result in results:
        checks = ", ".join(
            f"{c.tower} max|err| {c.max_abs_error:.2g} min cos {c.min_cosine:.7f}" for c in result.checks
        )
        print(
            f"{result.dtype}: {result.manifest_path}  ({checks}; verified on {', '.join(result.providers)})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-export", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
