# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
r"""fgclip-train-reprojection: train FG-CLIP re-projection heads on frozen embeddings of FG-OVD-format sets.

Examples:
  # the embedded model on the synthetic world (sets written by fgclip-make-fgovd)
  fgclip-train-reprojection --model fgsynth-cosine --train data/fgsynth/train --val data/fgsynth/val \
      --lr 1e-3 --epochs 30 --category-weight 1 --name fgsynth \
      --out fgclip_ros/models/fgsynth --manifest-out fgclip_ros/models/fgsynth.yaml
  # the paper's recipe on real FG-OVD training files (COCO images), from the COCO triplet heads
  fgclip-train-reprojection --recipe paper --model openai-vit-b-16 --train FG-OVD/training/1_attributes.json \
      --val FG-OVD/validation/1_attributes.json --images /data/coco --init triplet_linear-mlp.pt \
      --out fg-ovd_linear

--recipe paper sets the paper's values (sigmoid score under the margin, summed loss, Hard split,
>= 10 negatives, selection by validation loss from epoch 1, no early stopping, seed 123, fp16
features, the caption-axis normalisation quirk; training.reprojection.PAPER_RECIPE) as defaults;
flags given explicitly still win. --recipe project (default) is the project's own recipe.

The frozen embeddings are computed once and cached (--cache-dir, default the fgclip_ros cache);
the heads are saved in the upstream key layout as <name>_heads.pt in the --out folder, with a
manifest <name>.yaml (or --manifest-out), a JSON log and a PNG curve beside the heads.
"""

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, out_folder, run_main
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.training.reprojection import HeadTrainConfig

RECIPES = ("project", "paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-train-reprojection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="manifest (name or .yaml) of the frozen encoder; its heads are ignored"
    )
    parser.add_argument(
        "--train", nargs="+", required=True, metavar="PATH", help="split JSON files and/or their folders"
    )
    parser.add_argument(
        "--val",
        nargs="+",
        metavar="PATH",
        help="validation split files/folders (default: --val-fraction of the training images)",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="used without --val (default: %(default)s)"
    )
    parser.add_argument(
        "--images", default=None, metavar="DIR", help="image root (default: each JSON's folder)"
    )
    parser.add_argument(
        "--categories",
        default="auto",
        help="comma-separated category names for the category term and accuracy; 'auto' = the "
        "synthetic world's when all captions are synthetic, 'none' = off (default: auto)",
    )
    parser.add_argument(
        "--out", type=out_folder(".pt", ".yaml"), required=True, metavar="DIR",
        help="folder for <name>_heads.pt (upstream key layout), its training log and curve, the manifest",
    )
    parser.add_argument(
        "--manifest-out", default=None, metavar="FILE", help="manifest to write (default: DIR/<name>.yaml)"
    )
    parser.add_argument(
        "--name", default=None,
        help="model name in the manifest (default: --manifest-out's file name, else the folder's name)",
    )
    parser.add_argument("--description", default=None)
    parser.add_argument(
        "--cache-dir", default=None, help="where embedding caches go (default: fgclip_ros cache)"
    )
    parser.add_argument(
        "--max-annotations", type=int, default=None, metavar="N", help="first N per split (quick runs)"
    )
    parser.add_argument(
        "--embed-device", default=None, help="device of the frozen encoder (default: --device)"
    )
    parser.add_argument("--embed-batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="project",
        help="defaults for the training settings: the project's or the paper's (default: %(default)s)",
    )
    for field in dataclasses.fields(HeadTrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                                help=f"default: {field.default!r}")
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default,
                                help=f"default: {field.default!r}")
    return describe_io(
        parser,
        inputs="--model: the frozen encoder's manifest; --train/--val: FG-OVD-format split JSON files\n"
        "(and --images, their images)",
        outputs="in --out DIR: <name>_heads.pt, <name>_heads_train_log.json, <name>_heads_train.png and\n"
        "the manifest <name>.yaml (or --manifest-out FILE); the embedding cache in --cache-dir;\n"
        "the validation ranks on stdout",
    )


def recipe_parser(argv=None) -> argparse.ArgumentParser:
    """The parser with the --recipe in `argv` giving the defaults (parsed once for --recipe)."""
    from fgclip_ros.training.reprojection import PAPER_RECIPE

    parser = build_parser()
    # Only --recipe here: --help and bad arguments are for the full parser (in run_main) to answer.
    recipe_only = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    recipe_only.add_argument("--recipe", choices=RECIPES, default="project")
    try:
        known, _ = recipe_only.parse_known_args(argv)
    except argparse.ArgumentError:
        return parser
    if known.recipe == "paper":
        parser.set_defaults(**PAPER_RECIPE)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return recipe_parser(argv).parse_args(argv)


def detect_categories(spec: str, train_paths) -> list[str] | None:
    if spec == "none":
        return None
    if spec != "auto":
        return [c.strip() for c in spec.split(",") if c.strip()]
    from fgclip_ros.evaluation.fgovd import find_split_files, load_split
    from fgclip_ros.synth.vocab import CATEGORIES, spec_from_caption

    for path in find_split_files(train_paths).values():
        try:
            for category in load_split(path)["categories"]:
                spec_from_caption(category["name"])
        except ValueError:
            return None
    return list(CATEGORIES)


def run(args) -> int:
    import torch

    from fgclip_ros.core.encoders import build_encoder
    from fgclip_ros.core.manifest import load_manifest
    from fgclip_ros.core.prompts import prompt
    from fgclip_ros.training import reprojection as rp

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = HeadTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(HeadTrainConfig)})
    manifest = load_manifest(args.model)
    categories = detect_categories(args.categories, args.train)
    prompts = [
        prompt(manifest.prompt_template, prompt(cfg.category_prompt, c)) for c in categories or []
    ]
    encoder = None

    def encoder_factory():
        nonlocal encoder
        if encoder is None:
            encoder = build_encoder(manifest, device=args.embed_device or cfg.device)
        return encoder

    progress = False if args.no_progress else None
    cache_dir = Path(args.cache_dir) if args.cache_dir else None

    def cache_for(paths, tag):
        return rp.cached_embeddings(
            paths,
            manifest,
            encoder_factory,
            cache_dir,
            tag,
            Path(args.images) if args.images else None,
            args.max_annotations,
            progress,
            args.embed_batch_size,
            prompts,
        )

    train = cache_for(args.train, "train")
    if args.val:
        val = cache_for(args.val, "val")
    else:
        train, val = rp.split_by_image(train, args.val_fraction, cfg.seed)
    logging.getLogger("fgclip_ros.train.reprojection").info(
        "training on %d annotations, validating on %d (%s)",
        train.annotations,
        val.annotations,
        "--val" if args.val else f"{args.val_fraction:.0%} of the training images",
    )
    category_text = train.texts(prompts) if categories else None
    result = rp.train_heads(train, val, cfg, categories, category_text, progress)

    out_dir = args.out
    name = args.name or (Path(args.manifest_out).stem if args.manifest_out else out_dir.resolve().name)
    out = out_dir / f"{name}_heads.pt"
    manifest_path = Path(args.manifest_out) if args.manifest_out else out_dir / f"{name}.yaml"
    command = "fgclip-train-reprojection " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rp.save_trained(
        result,
        cfg,
        out,
        {
            "command": command,
            "model": str(manifest.source_path),
            "train": [str(p) for p in args.train],
            "val": [str(p) for p in args.val] if args.val else f"{args.val_fraction} of train images",
            "train_annotations": train.annotations,
            "val_annotations": val.annotations,
            "categories": categories,
            "recipe": args.recipe,
        },
    )
    base = result.baseline
    best = result.best
    description = args.description or (
        f"{manifest.architecture} with {cfg.kind} re-projection heads ({cfg.sides}) "
        "trained by fgclip-train-reprojection"
    )
    header = (
        f"Model manifest: {description}.\nWritten by: {command}\n"
        f"Validation mean-rank sum: cosine {base['rank_sum']:.3f} -> heads {best['rank_sum']:.3f} "
        f"(best epoch {result.best_epoch})"
    )
    rp.write_manifest(
        rp.manifest_dict(manifest, out, cfg.kind, cfg.sides, manifest_path, name, description),
        manifest_path,
        header,
    )
    cat = ""
    if "category_accuracy" in best:
        cat = f"; category accuracy {base['category_accuracy']:.3f} -> {best['category_accuracy']:.3f}"
    print(
        f"val mean-rank sum: cosine {base['rank_sum']:.3f} -> {best['rank_sum']:.3f} "
        f"({100 * (1 - best['rank_sum'] / base['rank_sum']):.1f}% lower){cat}; best epoch {result.best_epoch}"
    )
    print(
        f"wrote {out}, {manifest_path}, {out.with_suffix('')}_train_log.json, {out.with_suffix('')}_train.png"
    )
    return 0


def _run_with_logs(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fgclip_ros").setLevel(logging.INFO)
    try:
        return run(args)
    except (ValueError, KeyError) as error:  # a malformed config value or cache file
        raise FgclipError(str(error)) from None


def main(argv=None) -> int:
    return run_main("fgclip-train-reprojection", recipe_parser(argv), _run_with_logs, argv)


if __name__ == "__main__":
    sys.exit(main())
