"""`mirage study`: the default study on ShapesQA, one run directory and its report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Device, Model, Overwrite, Quiet, console, user_errors
from .report import write_page


def study_cmd(
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("mirage-study"),
    model: Model = "demo",
    limit: Annotated[Optional[int], typer.Option(min=2, help="Cap every part at N questions (a quick look).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Adam steps of the optimized inputs.")] = 50,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions optimized together.")] = 16,
    overwrite: Overwrite = False,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """The default study on ShapesQA: image conditions, per-question and universal optimized features and pixels
    (with PNG re-checks), and single-encoder feature runs; one table, one run directory."""
    from ..display import summary_table
    from ..experiments.study import run_study

    t0 = time.time()
    with user_errors(out):
        result = run_study(model=model, out=out, limit=limit, steps=steps, batch_size=batch_size, device=device,
                           overwrite=overwrite, quiet=quiet)
    console.print(summary_table(result.summary, title=f"mirage study: {model} on ShapesQA test"))
    console.print(f"run directory: {out}  ({time.time() - t0:.0f} s)")
    console.print(f"report: {write_page(out)}")
