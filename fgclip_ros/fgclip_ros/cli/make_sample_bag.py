# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip-make-sample-bag: write a rosbag2 of the project's synthetic world (camera, detector, ground truth).

Examples:
    fgclip-make-sample-bag                              # both storages under the default folder
    fgclip-make-sample-bag --storage mcap --out /tmp/sample_mcap --frames 30 --rate 10
    fgclip-make-sample-bag --image-format jpeg          # sensor_msgs/CompressedImage instead of rgb8

Default output folder: $FGCLIP_ROS_CACHE/sample_bags (see docs/rosbag-evaluation.md), one bag per
storage: fgclip_sample_mcap/ and fgclip_sample_sqlite3/. Existing bags are replaced only with
--force.
"""

import argparse
import shutil
import sys
from pathlib import Path

from fgclip_ros.cli._common import describe_io, run_main
from fgclip_ros.core.errors import FgclipError

STORAGES = ("mcap", "sqlite3")


def default_sample_dir() -> Path:
    from fgclip_ros.core.paths import cache_dir

    return cache_dir() / "sample_bags"


def sample_bag_path(storage: str, folder: Path | None = None) -> Path:
    """Where the default sample bag of `storage` lives (fgclip-eval-bag and the demo read it there)."""
    return (folder or default_sample_dir()) / f"fgclip_sample_{storage}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgclip-make-sample-bag",
        description="Write a small rosbag2 of rendered scenes with detections and ground-truth captions.",
    )
    parser.add_argument(
        "--storage",
        choices=(*STORAGES, "both"),
        default="both",
        help="rosbag2 storage plugin (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="bag folder to write (one storage only); default: "
        "<folder>/fgclip_sample_<storage> for each storage",
    )
    parser.add_argument(
        "--folder",
        default=None,
        metavar="DIR",
        help="folder of the default bag names (default: $FGCLIP_ROS_CACHE/sample_bags)",
    )
    parser.add_argument("--frames", type=int, default=24, help="frames (default: %(default)s)")
    parser.add_argument(
        "--rate", type=float, default=5.0, help="recorded frame rate in Hz (default: %(default)s)"
    )
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="scene set (default: %(default)s)")
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.03,
        help="detector box noise: std of each edge as a fraction of the box size (default: %(default)s)",
    )
    parser.add_argument(
        "--drop-detections",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that the detector skips a frame (default: %(default)s)",
    )
    parser.add_argument(
        "--image-format",
        choices=("raw", "jpeg", "png"),
        default="raw",
        help="raw = sensor_msgs/Image rgb8; jpeg/png = sensor_msgs/CompressedImage (default: raw)",
    )
    parser.add_argument(
        "--compress", action="store_true", help="zstd-compress the bag (mcap chunks / sqlite3 messages)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing bag at the output path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return describe_io(
        parser,
        inputs="none: the scenes are rendered from the synthetic world (--seed picks them)",
        outputs="a rosbag2 per storage: --out PATH, or <folder>/fgclip_sample_<storage>/ (camera images,\n"
        "Detection2DArray, JSON ground truth); one line per bag on stdout",
    )


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FgclipError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    if width < 64 or height < 64:
        raise FgclipError(f"--size {text!r}: at least 64x64 pixels")
    return width, height


def run(args, out=None) -> int:
    from fgclip_ros.bags.sample import SampleBagConfig, write_sample_bag

    out = out or sys.stdout
    storages = STORAGES if args.storage == "both" else (args.storage,)
    if args.out and len(storages) > 1:
        raise FgclipError("--out names one bag: pass --storage mcap or --storage sqlite3 with it")
    if args.frames < 1 or args.rate <= 0:
        raise FgclipError("--frames must be >= 1 and --rate > 0")
    width, height = _size(args.size)
    folder = Path(args.folder) if args.folder else None
    for storage in storages:
        path = Path(args.out) if args.out else sample_bag_path(storage, folder)
        if path.exists():
            if not args.force:
                raise FgclipError(f"{path} exists; pass --force to replace it or --out for another path")
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        config = SampleBagConfig(
            frames=args.frames,
            rate_hz=args.rate,
            width=width,
            height=height,
            seed=args.seed,
            jitter=args.jitter,
            drop_detections=args.drop_detections,
            image_format=args.image_format,
            storage=storage,
            compress=args.compress,
        )
        summary = write_sample_bag(path, config, progress=False if args.no_progress else None)
        print(
            f"{summary.path}: {storage}, {summary.frames} frames at {args.rate:g} Hz, "
            f"{summary.objects} objects, "
            f"{summary.detection_frames} detection messages, {summary.size_bytes / 1e6:.2f} MB",
            file=out,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("fgclip-make-sample-bag", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
