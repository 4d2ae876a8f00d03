"""`mirage train-demo-text`: the demo's base LM (its LM alone, trained on text), for `--text-model demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import BatchSize, Device, EvalLimit, Quiet, Steps, console, user_errors


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
    from ..models.demo.train_text import train_text_lm
    from ..progress import progress_bar

    with user_errors(), progress_bar("training", steps, quiet) as advance:
        path = train_text_lm(out, demo or DEMO_WEIGHTS, steps, batch_size, device=device, on_step=lambda s, l: advance(1))
    console.print(f"text LM: {path}\ncard: {write_text_card(path, evaluate_text_lm(path, eval_limit))}")


def evaluate_text_lm(path: Path, limit: int = 1000) -> dict:
    """`stats.summarize` of the LM's `text-model` rows on the first `limit` ShapesQA test questions, for its card
    (here, not beside the training in models/: a model does not run evaluations, arrows point down)."""
    from ..benchmarks.question import Benchmark
    from ..benchmarks.shapes import generate_questions
    from ..evaluate import evaluate_text_model
    from ..models.text_lm import load_text_model
    from ..stats import summarize

    test = Benchmark("shapes", "test", generate_questions("test", 0, limit))  # as train-demo's card: no cache
    return summarize(evaluate_text_model(load_text_model(f"demo:{path}", device="cpu"), test, quiet=True))
