# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""One report for a set of bags: report.json, summary.md and PNGs, beside the per-bag folders in bags/.

- report.json: "bags" (one entry per bag: status, reason when failed, counts, accuracy, ranking,
  timing, the folder of its own report), "overall" (pooled over the bags that completed) and "run"
  (workers, wall time: how the set was run, not what it measured)
- accuracy.png: top-1 accuracy per bag and overall; ranks.png: mean hard-negative rank per bag and
  overall against chance; latency.png: the per-frame scoring latency of each bag and of all;
  counts.png: processed, unpaired and skipped frames per bag, failed bags marked
"""

import json
from pathlib import Path

import numpy as np

from fgclip_ros.evaluation.bag_metrics import percentiles
from fgclip_ros.evaluation.bag_report import _pct, _table, json_default
from fgclip_ros.evaluation.plots import pyplot, save_png
from fgclip_ros.evaluation.ranks import median_rank

COUNT_KEYS = (
    "image_messages",
    "detection_messages",
    "paired",
    "unpaired_images",
    "unpaired_detections",
    "frames_processed",
    "detections",
    "detections_rejected",
    "detections_with_ground_truth",
)


def overall(entries: list[dict]) -> dict:
    """Pooled over the completed bags: counts summed, accuracy and ranks over all their detections."""
    ok = [e for e in entries if e["status"] == "ok"]
    counts = {k: sum(e["counts"][k] for e in ok) for k in COUNT_KEYS}
    counts["skipped"] = sum(sum(e["counts"]["skipped"].values()) for e in ok)
    accuracy = [e["accuracy"] for e in ok if e["accuracy"]]
    correct, answerable = sum(a["correct"] for a in accuracy), sum(a["answerable"] for a in accuracy)
    ranking = None
    ranked = [e["ranking"] for e in ok if e["ranking"]]
    if ranked:
        histogram: dict[int, int] = {}
        for r in ranked:
            for rank, n in r["histogram"].items():
                histogram[int(rank)] = histogram.get(int(rank), 0) + n
        ranks = np.repeat(list(histogram), list(histogram.values()))
        objects = sum(r["objects"] for r in ranked)
        ranking = {
            "objects": objects,
            "mean_rank": float(ranks.mean()),
            "median_rank": median_rank(ranks),
            "top1": float(np.mean(ranks == 1)),
            "mean_candidates": sum(r["mean_candidates"] * r["objects"] for r in ranked) / objects,
            "histogram": dict(sorted(histogram.items())),
        }
    return {
        "bags": len(entries),
        "completed": len(ok),
        "failed": len(entries) - len(ok),
        "reused": sum(e["reused"] for e in entries),
        "counts": counts,
        "accuracy": {
            "top1_accuracy": correct / answerable if answerable else None,
            "correct": correct,
            "answerable": answerable,
        }
        if accuracy
        else None,
        "ranking": ranking,
        "process_ms": percentiles([ms for e in ok for ms in e["process_ms"]]),
    }


def set_report(entries: list[dict], model: dict, options: dict, run: dict) -> dict:
    return {
        "model": model,
        "options": options,
        "bags": [{k: v for k, v in e.items() if k != "process_ms"} for e in entries],
        "overall": overall(entries),
        "run": run,
    }


def _label(entry: dict) -> str:
    return entry["bag_id"].rsplit("-", 1)[0]


def plot_accuracy(entries: list[dict], total: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(entries) + 2), 3.4))
    values = [e["accuracy"]["top1_accuracy"] if e["accuracy"] else np.nan for e in entries]
    colors = ["tab:red" if e["status"] == "failed" else "tab:blue" for e in entries]
    ax.bar(range(len(entries)), np.nan_to_num(values), color=colors)
    if total["accuracy"] and total["accuracy"]["top1_accuracy"] is not None:
        ax.axhline(
            total["accuracy"]["top1_accuracy"],
            color="black",
            ls="--",
            lw=1,
            label=f"overall {_pct(total['accuracy']['top1_accuracy'])}",
        )
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(entries)), [_label(e) for e in entries], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("top-1 accuracy per bag (red: failed)")
    save_png(fig, path)


def plot_ranks(entries: list[dict], total: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(entries) + 2), 3.4))
    values = [e["ranking"]["mean_rank"] if e["ranking"] else np.nan for e in entries]
    ax.bar(range(len(entries)), np.nan_to_num(values), color="tab:blue")
    ranking = total["ranking"]
    if ranking:
        ax.axhline(
            ranking["mean_rank"], color="black", ls="--", lw=1, label=f"overall {ranking['mean_rank']:.2f}"
        )
        ax.axhline((ranking["mean_candidates"] + 1) / 2, color="grey", ls=":", lw=1, label="chance")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(entries)), [_label(e) for e in entries], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("mean rank (1 = best)")
    ax.set_title("true caption vs hard negatives: mean rank per bag")
    save_png(fig, path)


def plot_latency(entries: list[dict], path: Path) -> None:
    plt = pyplot()
    ok = [e for e in entries if e["status"] == "ok" and e["process_ms"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(ok) + 3), 3.4))
    if ok:
        data = [e["process_ms"] for e in ok] + [[ms for e in ok for ms in e["process_ms"]]]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(
            range(1, len(data) + 1), [_label(e) for e in ok] + ["all"], rotation=45, ha="right", fontsize=7
        )
    ax.set_ylabel("scoring latency per frame [ms]")
    ax.set_title("latency distribution per bag and overall")
    save_png(fig, path)


def plot_counts(entries: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(entries) + 2), 3.4))
    x = np.arange(len(entries))
    bottom = np.zeros(len(entries))
    for name, get in (
        ("processed", lambda c: c["frames_processed"]),
        ("unpaired images", lambda c: c["unpaired_images"]),
        ("unpaired detections", lambda c: c["unpaired_detections"]),
        ("skipped", lambda c: sum(c["skipped"].values())),
    ):
        values = np.array([get(e["counts"]) if e["counts"] else 0 for e in entries], np.float64)
        ax.bar(x, values, bottom=bottom, label=name)
        bottom += values
    for i, e in enumerate(entries):
        if e["status"] == "failed":
            ax.text(i, 0, "failed", rotation=90, ha="center", va="bottom", color="tab:red", fontsize=8)
    ax.set_xticks(x, [_label(e) for e in entries], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("messages")
    ax.set_title("frames per bag: processed, unpaired, skipped")
    ax.legend(fontsize=7)
    save_png(fig, path)


def _rank(ranking) -> str:
    return "-" if not ranking else f"{ranking['mean_rank']:.2f} of {ranking['mean_candidates']:.0f}"


def bag_rows(report: dict) -> tuple[list[str], list[list]]:
    """The per-bag table (markdown and the terminal's final table)."""
    header = [
        "bag",
        "storage",
        "status",
        "frames",
        "unpaired img/det",
        "top-1",
        "mean rank",
        "p50 ms",
        "note",
    ]
    rows = []
    for e in report["bags"]:
        c = e["counts"]
        rows.append(
            [
                _label(e),
                e["storage"] or "-",
                e["status"] + (" (reused)" if e["reused"] else ""),
                c["frames_processed"] if c else "-",
                f"{c['unpaired_images']}/{c['unpaired_detections']}" if c else "-",
                _pct(e["accuracy"]["top1_accuracy"]) if e["accuracy"] else "-",
                _rank(e["ranking"]),
                e["timing"]["process_ms"]["p50"] if e["timing"] else None,
                e["reason"] or "",
            ]
        )
    total = report["overall"]
    rows.append(
        [
            "all",
            "",
            f"{total['completed']} ok, {total['failed']} failed",
            total["counts"]["frames_processed"],
            f"{total['counts']['unpaired_images']}/{total['counts']['unpaired_detections']}",
            _pct(total["accuracy"]["top1_accuracy"]) if total["accuracy"] else "-",
            _rank(total["ranking"]),
            total["process_ms"]["p50"],
            "",
        ]
    )
    return header, rows


def markdown_summary(report: dict, images: dict[str, str]) -> str:
    total, run = report["overall"], report["run"]
    lines = [
        f"# Bag set evaluation: {total['bags']} bags",
        "",
        f"Model `{report['model']['name']}` on {report['model']['device']} ({report['model']['backend']}); "
        f"{total['completed']} bags completed, {total['failed']} failed, {total['reused']} reused from an "
        f"earlier run; {run['workers']} worker(s){' on Ray' if run['ray'] else ' in-process'}, "
        f"{run['wall_s']:.1f} s.",
        "",
    ]
    if total["accuracy"]:
        a = total["accuracy"]
        lines += [
            f"Overall top-1 accuracy **{_pct(a['top1_accuracy'])}** ({a['correct']} of {a['answerable']}).",
            "",
        ]
    if total["ranking"]:
        r = total["ranking"]
        lines += [
            f"Overall mean rank of the true caption against hard negatives **{r['mean_rank']:.2f}** of "
            f"{r['mean_candidates']:.0f} (chance {(r['mean_candidates'] + 1) / 2:.1f}), "
            f"{r['objects']} objects.",
            "",
        ]
    header, rows = bag_rows(report)
    lines += ["## Bags", ""] + _table(header, rows) + [""]
    lines += [
        "Each bag's own report: "
        + ", ".join(f"[{_label(e)}]({e['report']})" for e in report["bags"] if e["report"])
        or "none",
        "",
    ]
    for key in ("accuracy", "ranks", "latency", "counts"):
        if key in images:
            lines += [f"![{key}]({images[key]})", ""]
    return "\n".join(lines)


def write_set_report(entries: list[dict], model: dict, options: dict, run: dict, out_dir: Path) -> dict:
    """Write report.json, summary.md and the PNGs into `out_dir`; returns the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = set_report(entries, model, options, run)
    images = {
        "accuracy": "accuracy.png",
        "ranks": "ranks.png",
        "latency": "latency.png",
        "counts": "counts.png",
    }
    plot_accuracy(entries, report["overall"], out_dir / images["accuracy"])
    plot_ranks(entries, report["overall"], out_dir / images["ranks"])
    plot_latency(entries, out_dir / images["latency"])
    plot_counts(entries, out_dir / images["counts"])
    (out_dir / "report.json").write_text(
        json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n"
    )
    (out_dir / "summary.md").write_text(markdown_summary(report, images) + "\n")
    return report
