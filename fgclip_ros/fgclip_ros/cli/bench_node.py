# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-bench-node: the perception node end to end in a private graph (a benchmark, not a test).

    fgclip-bench-node --model fgsynth --backend torch auto --rate 30 --json out/bench-node.json

Publishes synthetic frames (640x480 and 1280x720) with 1, 4 and 16 boxes at --rate Hz into the
real node (`fgclip-perception`, THE parameter file, 64 queries) once per backend, and prints the
output rate, stamp-to-output latency p50/p99, the node's engine time p50 and the ROS overhead
(latency p50 minus engine time) per configuration. See demo/node_bench.py for the definitions.
"""

import argparse
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.export.deploy import BACKENDS


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgclip-bench-node", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fgsynth", help="manifest name or path (default: %(default)s)")
    parser.add_argument("--backend", nargs="+", default=["torch", "auto"], choices=BACKENDS,
                        help="backends to run, one node each (default: %(default)s)")
    parser.add_argument("--size", nargs="+", type=_size, default=[(640, 480), (1280, 720)],
                        metavar="WxH", help="frame sizes (default: 640x480 1280x720)")
    parser.add_argument("--boxes", nargs="+", type=int, default=[1, 4, 16], help="boxes per frame")
    parser.add_argument("--queries", type=int, default=64, help="queries (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second published (default: 30)")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="publishing time per configuration (default: %(default)s)")
    parser.add_argument("--params-file", type=Path, default=None,
                        help="parameter YAML the node starts from (default: config/perception.yaml)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=YAML",
                        help="another node parameter, e.g. -p quantize=none (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no log lines on stderr")
    return describe_io(
        parser,
        inputs="--model: a manifest; --params-file: the node's parameter YAML (+ -p overrides);\n"
        "synthetic frames and boxes, published in a private ROS graph",
        outputs="a table on stdout (rate, latency p50/p99, engine time, ROS overhead per configuration);\n"
        "--json FILE: the same rows",
    )


def run(args) -> int:
    import yaml

    from fgclip_ros.demo.node_bench import NodeBenchConfig, format_rows, rows_json, run_node_bench

    extra = {}
    for item in args.param:
        name, _, value = item.partition("=")
        extra[name.strip()] = yaml.safe_load(value)
    config = NodeBenchConfig(model=args.model, backends=tuple(args.backend), sizes=tuple(args.size),
                             boxes=tuple(args.boxes), queries=args.queries, rate_hz=args.rate,
                             seconds=args.seconds, params_file=args.params_file, extra_params=extra)
    rows = run_node_bench(config)
    print(format_rows(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(rows_json(rows, config))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-bench-node", build_parser(), run, argv, quiet_flag="quiet")


if __name__ == "__main__":
    sys.exit(main())
