"""`mirage benchmarks`: what can be evaluated, with split sizes and the prompt each follows."""

from __future__ import annotations

from .common import console


def benchmarks_cmd() -> None:
    """List the benchmarks: hub id, splits with their question counts where known, the lmms-eval prompt followed."""
    from rich.table import Table

    from ..benchmarks import config_option, list_benchmarks

    table = Table("benchmark", "hub", "splits (questions)", "flags", "prompt follows")
    for b in list_benchmarks():
        splits = ", ".join(f"{s} ({n:,})" if n else s for s, n in b["splits"].items())
        flags = ["--config" if o == config_option(b["name"]) else "--" + o.replace("_", "-") for o in b["options"]]
        table.add_row(b["name"], b["hub"], splits, " ".join(flags), b["follows"].split(" ")[0])
    console.print(table)
