# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-make-fgovd: write an FG-OVD-format benchmark set of the synthetic world.

Example:
    fgclip-make-fgovd --out data/fgsynth/test --set test --images 200
writes data/fgsynth/test/images/*.png and one JSON per split (trivial, easy, medium, hard, color,
material, pattern, transparency). The set name picks a seed range of its own (train, val and test
never share a scene); --seed overrides it. Deterministic: the same arguments give the same files.

    fgclip-make-fgovd --figures docs/img
draws the documentation figures instead (synth-scene.png, synth-attributes.png).
"""

import argparse
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.core.errors import FgclipError


def build_parser() -> argparse.ArgumentParser:
    from fgclip_ros.evaluation.ranks import SPLITS
    from fgclip_ros.synth.benchmark import SET_SEEDS

    parser = argparse.ArgumentParser(prog="fgclip-make-fgovd",
                                     description="Render an FG-OVD-format set of the synthetic world.")
    parser.add_argument("--out", help="output folder (images/ and <split>.json go there)")
    parser.add_argument("--figures", metavar="DIR",
                        help="write the documentation figures (scenes, attribute grid) to DIR instead")
    parser.add_argument("--set", default="test", choices=tuple(SET_SEEDS),
                        help="which seed range to use (default: %(default)s)")
    parser.add_argument("--images", type=int, default=200, help="scenes to render (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="first scene seed (default: the set's)")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default: all 8)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--min-objects", type=int, default=2)
    parser.add_argument("--max-objects", type=int, default=5)
    parser.add_argument("--no-progress", action="store_true")
    return describe_io(
        parser,
        inputs="none: the scenes are rendered from the synthetic world (--set, --seed pick them)",
        outputs="in --out DIR: images/*.png and <split>.json per split; or in --figures DIR:\n"
        "synth-scene.png, synth-attributes.png; the files written on stdout",
    )


SCENE_SEEDS = (30_000_009, 30_000_012)  # two scenes of the test range, shown in docs/synthetic-world.md


def save_figures(out_dir: Path) -> list[Path]:
    """Example scenes with boxes + captions, and a grid of each attribute family at 64 px."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fgclip_ros.synth.render import render_object_crop, render_scene
    from fgclip_ros.synth.vocab import CATEGORIES, FAMILY_VALUES, ObjectSpec

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(SCENE_SEEDS), figsize=(6.4 * len(SCENE_SEEDS), 6.2), dpi=90)
    for ax, seed in zip(np.atleast_1d(axes), SCENE_SEEDS):
        scene = render_scene(seed)
        ax.imshow(scene.image, interpolation="nearest")
        lines = []
        for index, obj in enumerate(scene.objects, start=1):
            x0, y0, x1, y1 = obj.box
            # Pixel edges sit at -0.5 in imshow's pixel-centre coordinates.
            ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="yellow"))
            ax.text(x0, y0 - 2, str(index), color="black", fontsize=9, weight="bold",
                    bbox={"facecolor": "yellow", "pad": 1, "lw": 0})
            lines.append(f"{index}: {obj.spec.caption()}")
        ax.set_title(f"render_scene({seed})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("\n".join(lines), fontsize=9, loc="left")
    fig.tight_layout()
    scene_path = out_dir / "synth-scene.png"
    fig.savefig(scene_path)
    plt.close(fig)

    base = ObjectSpec("mug", "red", "plastic", "plain", "opaque")
    rows = [("category", CATEGORIES)] + [(f, FAMILY_VALUES[f]) for f in ("color", "material", "pattern",
                                                                          "transparency")]
    width = max(len(values) for _, values in rows)
    fig, axes = plt.subplots(len(rows), width, figsize=(1.25 * width, 1.45 * len(rows)), dpi=110)
    for r, (family, values) in enumerate(rows):
        for c in range(width):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(values):
                continue
            spec = ObjectSpec(values[c], *list(base.attributes().values())) if family == "category" \
                else base.with_attribute(family, values[c])
            # The same seed per row: same background and jitter, only the attribute differs.
            ax.imshow(render_object_crop(spec, np.random.default_rng(200 + r), 64), interpolation="nearest")
            ax.set_title(values[c], fontsize=8)
        axes[r, 0].text(-0.15, 0.5, family, transform=axes[r, 0].transAxes, rotation=90, va="center",
                        ha="right", fontsize=9, weight="bold")
    fig.suptitle(f"render_object_crop at 64 px; base object: {base.caption()}", fontsize=9)
    fig.tight_layout()
    grid_path = out_dir / "synth-attributes.png"
    fig.savefig(grid_path)
    plt.close(fig)
    return [scene_path, grid_path]


def run(args) -> int:
    from fgclip_ros.synth.benchmark import negative_count, write_benchmark

    if args.figures:
        for path in save_figures(Path(args.figures)):
            print(path)
        return 0
    if not args.out:
        raise FgclipError("give --out DIR for the benchmark set (or --figures DIR for the figures)")

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    try:
        written = write_benchmark(args.out, set_name=args.set, n_images=args.images, splits=splits,
                                  seed=args.seed, width=args.width, height=args.height,
                                  n_objects=(args.min_objects, args.max_objects),
                                  progress=False if args.no_progress else None)
    except ValueError as exc:
        raise FgclipError(str(exc)) from None
    for split, path in written.items():
        print(f"{split:13s} {negative_count(split):2d} negatives  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-make-fgovd", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
