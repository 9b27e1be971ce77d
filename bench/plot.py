"""Latency percentiles against publish rate, one colour per target; written as a PNG.

With repeats, each point is the median over the runs at that rate.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def latency_plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Draw p50 (dotted), p90 (dashed) and p99 (solid) per target; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(8, 5))
    targets = list(dict.fromkeys(row["target"] for row in rows))
    for number, target in enumerate(targets):
        mine = [row for row in rows if row["target"] == target]
        rates = sorted({row["rate"] for row in mine})
        colour = f"C{number}"
        for key, style in (("p50_ms", ":"), ("p90_ms", "--"), ("p99_ms", "-")):
            values = [statistics.median(row[key] for row in mine if row["rate"] == rate) for rate in rates]
            axes.plot(rates, values, style, color=colour, marker="o", markersize=3,
                      label=f"{target} {key.removesuffix('_ms')}")
    axes.set_yscale("log")
    axes.set_xlabel("published events/s (each subscriber entitled to 10 %)")
    axes.set_ylabel("publish -> receive latency, ms")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
