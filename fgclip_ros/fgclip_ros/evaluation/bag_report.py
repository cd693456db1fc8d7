# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Write a bag evaluation to a folder: report.json, detections.jsonl, summary.md and PNG plots.

- report.json: everything `evaluate_bag` measured (the markdown is a view of it)
- detections.jsonl: one line per input detection (label, scores, ground truth, ranks)
- summary.md: counts, timing, labels, accuracy per query, hard-negative ranks, the plots
- latency.png (always); rank_histogram.png and confusion.png when the ground truth has attributes
"""

import json
import math
from pathlib import Path

import numpy as np

from fgclip_ros.evaluation.plots import pyplot, save_png

MAX_TABLE_ROWS = 40


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def plot_latency(process_ms: list[float], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if process_ms:
        ax.plot(np.arange(len(process_ms)), process_ms, ".-", lw=0.8, ms=3, label="scoring")
        p50, p99 = np.percentile(process_ms, [50, 99])
        ax.axhline(p50, color="tab:green", ls="--", lw=1, label=f"p50 {p50:.1f} ms")
        ax.axhline(p99, color="tab:red", ls=":", lw=1, label=f"p99 {p99:.1f} ms")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("processed frame")
    ax.set_ylabel("latency [ms]")
    ax.set_title("latency per frame")
    save_png(fig, path)


def plot_rank_histogram(ranking: dict, path: Path) -> None:
    plt = pyplot()
    hist = {int(k): v for k, v in ranking["histogram"].items()}
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ranks = np.arange(1, max(max(hist), int(round(ranking["mean_candidates"]))) + 1)
    ax.bar(ranks, [hist.get(int(r), 0) for r in ranks], color="tab:blue")
    ax.axvline(
        ranking["mean_rank"], color="tab:red", ls="--", lw=1, label=f"mean rank {ranking['mean_rank']:.2f}"
    )
    ax.axvline((ranking["mean_candidates"] + 1) / 2, color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel(f"rank of the true caption among {ranking['mean_candidates']:.0f} candidates (1 = best)")
    ax.set_ylabel("objects")
    ax.set_title("true caption vs hard negatives (one attribute changed)")
    ax.legend(fontsize=8)
    save_png(fig, path)


def plot_confusion(confusion: dict, path: Path) -> None:
    plt = pyplot()
    families = list(confusion)
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4.4), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        values = confusion[family]["values"]
        matrix = np.asarray(confusion[family]["matrix"], np.float64)
        rows = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(values)), values, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(values)), values, fontsize=7)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    j,
                    i,
                    int(count),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(family)
    fig.suptitle("attribute confusion (best-scoring value, other attributes kept)")
    save_png(fig, path, rect=(0, 0, 1, 0.93))


def markdown_summary(report: dict, images: dict[str, str]) -> str:
    bag, model, counts, timing = report["bag"], report["model"], report["counts"], report["timing"]
    lines = [
        f"# Bag evaluation: `{Path(bag['path']).name}`",
        "",
        f"Bag `{bag['path']}` ({bag['storage']}, {bag['duration_s']:.1f} s); "
        f"image topic `{bag['image_topic']}` "
        f"({bag['image_type']}), detections `{bag['detections_topic']}`, ground truth "
        f"{'`' + bag['ground_truth_topic'] + '`' if bag['ground_truth_topic'] else 'none'}.",
        f"Model `{model['name']}` ({model['provider'] or 'unknown provider'}), "
        f"{len(model['queries'])} queries, "
        f"prompt template `{model['prompt_template']}`, min score {_fmt(model['min_score'])}.",
        "",
        "## Messages",
        "",
    ]
    skipped = ", ".join(f"{k}: {v}" for k, v in counts["skipped"].items()) or "none"
    lines += _table(
        ["what", "count"],
        [
            ["image messages", counts["image_messages"]],
            ["detection messages", counts["detection_messages"]],
            ["paired frames", counts["paired"]],
            ["unpaired images", counts["unpaired_images"]],
            ["unpaired detection messages", counts["unpaired_detections"]],
            ["frames processed", counts["frames_processed"]],
            ["skipped", skipped],
            ["detections", counts["detections"]],
            ["boxes rejected", counts["detections_rejected"]],
            ["frames with ground truth", counts["frames_with_ground_truth"]],
            ["detections with ground truth", counts["detections_with_ground_truth"]],
        ],
    )
    lines += ["", "## Timing", ""]
    lines += _table(
        ["per frame [ms]", "p50", "p99", "mean", "max"],
        [
            [name, *(timing[key][s] for s in ("p50", "p99", "mean", "max"))]
            for name, key in (
                ("decode", "decode_ms"),
                ("scoring (crops, image tower, match)", "process_ms"),
                ("total", "frame_ms"),
            )
        ],
    )
    lines += [
        "",
        f"Throughput {_fmt(timing['throughput_fps'], 1)} frames/s, {_fmt(timing['detections_per_s'], 1)} "
        f"detections/s (one stream, decode + scoring, no pipelining).",
        "",
    ]
    if "latency" in images:
        lines += [f"![latency]({images['latency']})", ""]

    label_rows = [r for r in report["labels"] if r["best_count"] or r["query"].startswith("(")]
    label_rows.sort(key=lambda r: (r["query"].startswith("("), -r["best_count"]))
    lines += ["## Labels (best-matching query per detection)", ""]
    lines += _table(
        ["query", "best match of", "mean score", "mean probability"],
        [
            [r["query"], r["best_count"], r["mean_score"], r["mean_probability"]]
            for r in label_rows[:MAX_TABLE_ROWS]
        ],
    )
    never = len(report["labels"]) - 2 - sum(1 for r in label_rows if not r["query"].startswith("("))
    lines += ["", f"{never} queries were never the best match." if never else "", ""]

    accuracy = report.get("accuracy")
    if accuracy:
        lines += [
            "## Accuracy against the ground truth",
            "",
            f"Top-1: **{_pct(accuracy['top1_accuracy'])}** "
            f"({accuracy['correct']} of {accuracy['answerable']} "
            f"detections that some query describes; {accuracy['no_match']} without a match above min score, "
            f"{accuracy['rejected']} boxes rejected).",
            "",
        ]
        rows = sorted(accuracy["per_query"], key=lambda r: (-r["support"], -r["predicted"], r["query"]))
        rows = [r for r in rows if r["support"] or r["predicted"]]
        lines += _table(
            ["query", "support", "predicted", "precision", "recall", "accuracy"],
            [
                [
                    r["query"],
                    r["support"],
                    r["predicted"],
                    _pct(r["precision"]),
                    _pct(r["recall"]),
                    _pct(r["accuracy"]),
                ]
                for r in rows[:MAX_TABLE_ROWS]
            ],
        )
        if len(rows) > MAX_TABLE_ROWS:
            lines += ["", f"({len(rows) - MAX_TABLE_ROWS} more rows in report.json)"]
        if accuracy["unevaluable_queries"]:
            lines += [
                "",
                "Queries the ground truth cannot judge: "
                + ", ".join(f"`{q}`" for q in accuracy["unevaluable_queries"]),
            ]
        lines.append("")
    else:
        lines += ["No ground truth in this bag: labels and timing only.", ""]

    ranking = report.get("ranking")
    if ranking:
        lines += [
            "## True caption against hard negatives",
            "",
            f"{ranking['objects']} objects, each ranked against {ranking['mean_candidates']:.0f} captions "
            f"(itself + one attribute changed): mean rank **{ranking['mean_rank']:.2f}** "
            f"(chance {(ranking['mean_candidates'] + 1) / 2:.1f}, perfect 1), top-1 {_pct(ranking['top1'])}.",
            "",
        ]
        lines += _table(
            ["family", "mean rank", "chance", "attribute accuracy"],
            [
                [f, v["mean_rank"], v["chance_mean_rank"], _pct(v["accuracy"])]
                for f, v in ranking["per_family"].items()
            ],
        )
        lines.append("")
        for key in ("rank_histogram", "confusion"):
            if key in images:
                lines += [f"![{key}]({images[key]})", ""]
    return "\n".join(lines)


def write_report(evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write the files listed in the module docstring; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = evaluation.report
    files = {
        "report": out / "report.json",
        "detections": out / "detections.jsonl",
        "summary": out / "summary.md",
        "latency": out / "latency.png",
    }
    files["report"].write_text(json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n")
    with files["detections"].open("w") as stream:
        for record in evaluation.records:
            stream.write(json.dumps(record.to_dict(), default=json_default) + "\n")
    plot_latency(evaluation.process_ms, files["latency"])
    ranking = report.get("ranking")
    if ranking:
        files["rank_histogram"] = out / "rank_histogram.png"
        plot_rank_histogram(ranking, files["rank_histogram"])
        if ranking["confusion"]:
            files["confusion"] = out / "confusion.png"
            plot_confusion(ranking["confusion"], files["confusion"])
    images = {k: p.name for k, p in files.items() if p.suffix == ".png"}
    files["summary"].write_text(markdown_summary(report, images) + "\n")
    return files


def json_default(value):
    """`json.dumps(default=...)` for NumPy scalars/arrays and paths in reports."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
