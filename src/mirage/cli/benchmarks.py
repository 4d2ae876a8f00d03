"""`mirage benchmarks`: what can be evaluated, with split sizes and the prompt each follows."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import console, user_errors


def benchmarks_cmd(
    lmms: Annotated[bool, typer.Option("--lmms", help="List lmms-eval's tasks instead (lmms:TASK), which mirage can "
                                       "ask and why not the others (reads every matching task's YAML and code).")
                    ] = False,
    match: Annotated[Optional[str], typer.Option(help="--lmms: only the tasks whose names match this pattern "
                                                 "(fnmatch, e.g. 'mm*').")] = None,
) -> None:
    """List the benchmarks: hub id, splits with their question counts where known, the lmms-eval prompt followed."""
    from rich.table import Table

    if lmms:
        from ..benchmarks.lmms import list_lmms

        with user_errors():
            tasks = list_lmms(match or "*")
        table = Table("benchmark", "data set", "mirage asks it", "why (not)")
        for t in tasks:
            table.add_row(f"lmms:{t['name']}", t["dataset"], t["runs"], t["why"])
        console.print(table)
        count = {k: sum(t["runs"] == k for t in tasks) for k in ("yes", "maybe")}
        console.print(f"{len(tasks)} tasks: {count['yes']} multiple choice with images, {count['maybe']} with images "
                      "and no sign of options; a group (e.g. lmms:blink) asks each of its tasks")
        return
    if match:
        from ..errors import UsageError

        with user_errors():
            raise UsageError("--match applies to --lmms")
    from ..benchmarks import config_option, list_benchmarks

    table = Table("benchmark", "hub", "splits (questions)", "flags", "prompt follows")
    for b in list_benchmarks():
        splits = ", ".join(f"{s} ({n:,})" if n else s for s, n in b["splits"].items())
        flags = ["--config" if o == config_option(b["name"]) else "--" + o.replace("_", "-") for o in b["options"]]
        table.add_row(b["name"], b["hub"], splits, " ".join(flags), b["follows"].split(" ")[0])
    console.print(table)
