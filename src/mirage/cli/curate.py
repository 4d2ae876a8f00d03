"""`mirage curate`: the questions that need the image, from runs with image-free sources, as a file: benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (console, names, user_errors)


def curate_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (one per model) with real and image-free rows.")],
    out: Annotated[Path, typer.Option(help="Where to write questions.jsonl, images/ and curation.json.")] = ...,
    min_runs: Annotated[Optional[int], typer.Option(min=1, help="Keep a question that needs the image in K runs "
                                                    "(default: in every run).")] = None,
    also: Annotated[Optional[str], typer.Option(help="More sources that must fail, e.g. blank,noise.")] = None,
) -> None:
    """Keep the questions that need the image (right with real, wrong by none/text-model/--also): a file: benchmark."""
    from ..curate import CURATION, QUESTIONS, curate

    with user_errors():
        result = curate(runs, out, min_runs, names(also) or ())
    console.print(f"kept {result['n_kept']} of {result['n_evaluated']} questions: {out / QUESTIONS} "
                  f"(mirage eval --benchmark file:{out / QUESTIONS}); {out / CURATION}")
