"""Terminal tables of run summaries (rich)."""

from __future__ import annotations

from rich.table import Table


def summary_table(summary: dict, title: str | None = None) -> Table:
    """Source, n, accuracy, 95% interval, per question type, and the paired test against `real`."""
    types = sorted({t for by in summary.get("by_type", {}).values() for t in by})
    table = Table(title=title)
    for col in ("source", "n", "accuracy", "95% CI", *types, "vs real (p)"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, n in summary["n"].items():
        lo, hi = summary["ci95"][src]
        by = summary.get("by_type", {}).get(src, {})
        paired = summary.get("paired", {}).get(src, {}).get("real")
        table.add_row(src, str(n), f"{summary['accuracy'][src]:.3f}", f"[{lo:.3f}, {hi:.3f}]",
                      *(f"{by[t]:.2f}" if t in by else "" for t in types),
                      f"{paired['p']:.2g}" if paired else "")
    return table
