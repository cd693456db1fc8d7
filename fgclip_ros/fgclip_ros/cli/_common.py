# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""What every console script shares: exit codes, the user-error boundary, how --help states them."""

import argparse
import logging
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from fgclip_ros.core.device import DEVICE_HELP
from fgclip_ros.core.errors import FgclipError

EXIT_OK = 0
EXIT_USER_ERROR = 2  # bad arguments, a missing or corrupt file: one line on stderr
USER_ERROR = "a user error: bad arguments, a missing or unreadable file (one line on stderr)"
HELP_WIDTH = 100


def describe_io(parser: argparse.ArgumentParser, *, inputs: str, outputs: str, done: str = "done",
                exit_codes: dict[int, str] | None = None) -> argparse.ArgumentParser:
    """Add the "Inputs:", "Outputs:" and "Exit status:" sections every tool's --help ends with.

    `done`: what exit status 0 means; `exit_codes`: the tool's own codes (they may say more about 2).
    The description keeps its own line breaks (the epilog needs them), so a one-line description
    is wrapped here.
    """
    codes = {EXIT_OK: done, EXIT_USER_ERROR: USER_ERROR, **(exit_codes or {})}
    sections = [
        "Inputs:", textwrap.indent(inputs.strip(), "  "),
        "", "Outputs:", textwrap.indent(outputs.strip(), "  "),
        "", "Exit status:", *(f"  {code:<3} {codes[code]}" for code in sorted(codes)),
    ]
    epilog = "\n".join(sections)
    parser.epilog = f"{parser.epilog.strip()}\n\n{epilog}" if parser.epilog else epilog
    if parser.formatter_class is argparse.HelpFormatter and parser.description:
        parser.description = textwrap.fill(" ".join(parser.description.split()), HELP_WIDTH)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def show_info_logs() -> None:
    """Our INFO lines (progress, model, provider) on stderr; other libraries stay at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fgclip_ros").setLevel(logging.INFO)


def add_encoder_arguments(parser, defaults: Mapping | None = None, backend_help: str = "") -> None:
    """--template, --device, --dtype, --backend, --quantize: how a tool runs a manifest's model.

    `parser`: a parser or an argument group; `defaults`: parameter values by name (fgclip-eval-bag:
    the node's parameter file), else the node's own defaults; `backend_help`: what auto means here.
    """
    from fgclip_ros.export.deploy import BACKENDS, QUANTIZE_MODES  # torch: only for the tools that use it

    d = defaults or {}
    parser.add_argument("--template", default=None,
                        help="prompt template with {} for each text (default: the manifest's)")
    parser.add_argument("--device", default=d.get("device", "auto"),
                        help=f"{DEVICE_HELP} (default: %(default)s)")
    parser.add_argument("--dtype", default=d.get("dtype", "fp32"), choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--backend", default=d.get("backend", "auto"), choices=BACKENDS,
                        help=f"{backend_help} (default: %(default)s)".lstrip())
    parser.add_argument("--quantize", default=d.get("quantize", "auto"), choices=QUANTIZE_MODES,
                        help="int8 image graph on ONNX Runtime's CPU provider (default: %(default)s)")


def out_folder(*file_suffixes: str) -> Callable[[str], Path]:
    """The argparse type of `--out DIR`: a folder the tool writes its files into.

    A path naming a file (an existing one, or one ending in a suffix of the files the tool writes,
    as `--out report.json` would) is a usage error, not a folder called `report.json`.
    """

    def parse(text: str) -> Path:
        path = Path(text)
        if path.is_file() or path.suffix.lower() in file_suffixes:
            raise argparse.ArgumentTypeError(f"{text!r} names a file; give the folder to write into")
        return path

    return parse


def run_main(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: list[str] | None, quiet_flag: str | None = None) -> int:
    """Parse `argv`, run, and turn an FgclipError into `prog: error: ...` and EXIT_USER_ERROR.

    `quiet_flag`: the name of a boolean argument that, when false, switches on `show_info_logs`.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (exit 2)
        return int(exc.code or 0)
    if quiet_flag is not None and not getattr(args, quiet_flag):
        show_info_logs()
    try:
        return run(args)
    except FgclipError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
