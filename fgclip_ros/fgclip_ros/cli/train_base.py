# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-train-base: train the embedded model (fgsynth) on rendered crops, or probe a trained one.

Examples:
  fgclip-train-base --out-dir out/fgsynth --max-seconds 240 --batch-size 2048      # device machine
  fgclip-train-base --out-dir /tmp/smoke --max-steps 20 --batch-size 64 --workers 0  # CPU smoke run
  fgclip-train-base --evaluate models/fgsynth/fgsynth.safetensors --out-dir /tmp/probe
"""

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.training.base_model import BaseTrainConfig


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    for field in dataclasses.fields(BaseTrainConfig):
        if field.name in ("out_dir", "extra"):
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"default: {default!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-train-base", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", "--out-dir", dest="out_dir", required=True, metavar="DIR",
                        help="folder for weights, config and logs")
    parser.add_argument(
        "--evaluate",
        metavar="WEIGHTS",
        help="do not train: probe these weights (with --model-config) and write <name>_probes.json",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    _add_config_arguments(parser)
    return describe_io(
        parser,
        inputs="none to train: crops are rendered from the synthetic world; --evaluate WEIGHTS\n"
        "(+ --model-config): the weights to probe",
        outputs="in --out DIR: <name>.safetensors, <name>.json (model config), <name>_train_log.json;\n"
        "with --evaluate: <name>_probes.json",
    )


def evaluate_weights(cfg: BaseTrainConfig, weights: str) -> dict:
    """Probe saved weights the way the runtime loads them (TorchEncoder.from_open_clip)."""
    import os

    from fgclip_ros.core.encoders import TorchEncoder
    from fgclip_ros.training.base_model import (
        _resolve_device,
        default_model_config,
        evaluate_model,
        format_metrics,
        render_heldout,
    )

    device = _resolve_device(cfg.device)
    config = cfg.model_config or str(default_model_config())
    encoder = TorchEncoder.from_open_clip(cfg.name, weights=weights, device=device, model_config=config)
    workers = (os.cpu_count() or 2) - 1 if cfg.workers < 0 else cfg.workers
    heldout = render_heldout(cfg, encoder.preprocess.size, workers)
    metrics = evaluate_model(encoder.model, encoder.tokenizer, encoder.preprocess, heldout, device)
    logging.getLogger("fgclip_ros.train.base").info("%s", format_metrics(metrics))
    metrics.update(weights=str(weights), model_config=str(config), seed=cfg.seed, eval_images=cfg.eval_images)
    return metrics


def run(args) -> int:
    # open_clip logs its model building at INFO on the root logger; keep only ours at INFO.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    logging.getLogger("fgclip_ros").setLevel(logging.INFO)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BaseTrainConfig) if f.name != "extra"}
    cfg = BaseTrainConfig(**values)
    if args.evaluate:
        metrics = evaluate_weights(cfg, args.evaluate)
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{cfg.name}_probes.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return 0
    from fgclip_ros.training.base_model import train_base_model

    result = train_base_model(cfg)
    print(
        f"done: {result.weights} ({result.steps} steps, {result.seconds:.0f} s, "
        f"{result.images_seen} images); "
        f"log {result.log}"
    )
    return 0


def main(argv=None) -> int:
    return run_main("fgclip-train-base", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
