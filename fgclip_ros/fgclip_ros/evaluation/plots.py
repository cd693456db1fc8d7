# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""PNG charts: FG-OVD mean rank per split, and the helpers every evaluation chart uses.

One bar per scoring variant; headless pyplot and one way to save a PNG for the bag reports too.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fgclip_ros.evaluation.ranks import SPLITS


def pyplot():
    """matplotlib.pyplot on the Agg backend: charts are written on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path | str, dpi: float | None = 110, rect=None) -> Path:
    """Lay out, write and close ``fig`` (``dpi`` None: the figure's own); the folder is created."""
    fig.tight_layout(**({} if rect is None else {"rect": rect}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi="figure" if dpi is None else dpi)
    pyplot().close(fig)
    return path


def plot_mean_ranks(results: Mapping, path: Path | str, title: str = "") -> Path:
    """Grouped bars of the mean rank per split (lower is better) for each variant, chance as ticks.

    ``results`` maps variant name -> ``VariantResult`` (or its ``to_dict()``).
    """
    plt = pyplot()
    rows = {name: (r if isinstance(r, dict) else r.to_dict()) for name, r in results.items()}
    splits = [s for s in SPLITS if any(s in r["splits"] for r in rows.values())]
    x = np.arange(len(splits))
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(splits) + 2), 4.6), dpi=120)
    highest = 2.0
    for i, (name, row) in enumerate(rows.items()):
        values = [row["splits"][s]["mean_rank"] if s in row["splits"] else np.nan for s in splits]
        highest = max([highest] + [v for v in values if np.isfinite(v)])
        label = f"{name} (MRS {row['mean_rank_sum']:.2f})"
        if row.get("category_accuracy") is not None:
            label += f", category acc {row['category_accuracy']:.2f}"
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    first = next(iter(rows.values()))
    chance = [first["splits"][s]["chance_mean_rank"] if s in first["splits"] else np.nan for s in splits]
    ax.scatter(x, chance, marker="_", s=600, color="black", zorder=3, label="chance")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, [s.capitalize() for s in splits])
    ax.set_ylabel("mean rank of the true caption (1 = perfect)")
    ax.set_title(title or "FG-OVD mean rank per split (lower is better)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(3, len(rows) + 1),
              frameon=False)
    ax.set_ylim(0, max([c for c in chance if np.isfinite(c)] + [highest]) * 1.18)
    return save_png(fig, path, dpi=None)
