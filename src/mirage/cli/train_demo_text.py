"""`mirage train-demo-text`: the demo's base LM (its LM alone, trained on text), for `--text-model demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (BatchSize, Device, EvalLimit, Quiet, Steps, console)


def train_demo_text_cmd(
    out: Annotated[Path, typer.Option(help="Where to write the text LM (a transformers causal-LM directory).")] = ...,
    demo: Annotated[Optional[Path], typer.Option(help="Demo model directory for the tokenizer and LM shape "
                                                 "(default: the shipped one).")] = None,
    steps: Steps("Training steps.") = 500,
    batch_size: BatchSize("Sequences per step.") = 64,
    eval_limit: EvalLimit("Test questions for its model card.") = 1000,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Train the demo's base LM: its LM alone on the text phase of train-demo (no image), for --text-model."""
    from ..models import DEMO_WEIGHTS
    from ..models.demo.card import write_text_card
    from ..models.demo.train_text import evaluate_text_lm, train_text_lm
    from ..progress import progress_bar

    with progress_bar("training", steps, quiet) as advance:
        path = train_text_lm(out, demo or DEMO_WEIGHTS, steps, batch_size, device=device, on_step=lambda s, l: advance(1))
    console.print(f"text LM: {path}\ncard: {write_text_card(path, evaluate_text_lm(path, eval_limit))}")
