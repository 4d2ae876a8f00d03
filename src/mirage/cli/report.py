"""`mirage report`: one self-contained HTML page from a run directory (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (console, user_errors)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory (config.json, results.jsonl, artifacts/).")],
    max_images: Annotated[int, typer.Option(min=0, help="Images shown per gallery; the rest are counted, not "
                                            "shown.")] = 16,
    questions: Annotated[bool, typer.Option(help="Load the run's benchmark for question text and real images.")
                         ] = True,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the page (default: RUN_DIR/report.html).")
                   ] = None,
) -> None:
    """Write RUN_DIR/report.html: one self-contained page of the run's images, tables and plots (no model)."""
    path = write_page(run_dir, out, max_images, questions)
    console.print(f"report: {path}  ({path.stat().st_size / 1e6:.1f} MB)")


def write_page(run_dir: Path, out: Optional[Path] = None, max_images: int = 16, questions: bool = True) -> Path:
    """`report.write_report`, a user error printed as one line."""
    from ..report import write_report

    with user_errors():
        return write_report(run_dir, out, max_images=max_images, questions=questions)
