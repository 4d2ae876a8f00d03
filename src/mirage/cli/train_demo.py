"""`mirage train-demo`: train the bundled demo VLM from scratch (resumable) and write its model card."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import (BatchSize, Device, EvalLimit, Quiet, Steps, console, user_errors)


def train_demo_cmd(
    out: Annotated[Path, typer.Option(help="Training directory (resumed if it holds a checkpoint).")] = ...,
    steps: Steps("Training steps in all, the text and vision phases included.") = 5000,
    text_steps: Annotated[int, typer.Option(min=0, help="Steps of text-only LM training first.")] = 800,
    vision_steps: Annotated[int, typer.Option(min=0, help="Then steps of dense-head vision pretraining.")] = 600,
    batch_size: BatchSize("Questions per training step.") = 256,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak AdamW learning rate (after warm-up; cosine decay).")
                  ] = 5e-4,
    workers: Annotated[int, typer.Option(min=0, help="Data worker processes.")] = 4,
    init: Annotated[Optional[Path], typer.Option(help="Continue from this model directory (joint phase only).")
                    ] = None,
    type_weights: Annotated[Optional[str], typer.Option(help="Training question mix, e.g. "
                                                        "position=0.5,colour=0.1.")] = None,
    aux_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of row/column auxiliary questions.")
                            ] = 0.0,
    eval_limit: EvalLimit("Test questions for the model card.") = 1000,
    max_minutes: Annotated[Optional[float], typer.Option(min=0.0, help="Checkpoint and stop after this long.")
                           ] = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Train the demo VLM from scratch (resumable), then evaluate it on ShapesQA test and write its model card."""
    import torch

    from ..benchmarks import Benchmark
    from ..benchmarks.shapes import generate_questions
    from ..display import summary_table
    from ..evaluate import evaluate
    from ..models.demo.card import write_card
    from ..models.demo.modeling import DemoVLM
    from ..models.demo.train import TrainConfig, train_demo
    from ..progress import progress_bar

    with user_errors():
        weights = parse_type_weights(type_weights) if type_weights else None
    if init is not None:
        text_steps = vision_steps = 0  # the phases before joint training were done by the stage that made `init`
    with user_errors():
        cfg = TrainConfig(steps=steps, text_steps=text_steps, vision_steps=vision_steps, batch_size=batch_size, lr=lr,
                          workers=workers, type_weights=weights, aux_fraction=aux_fraction,
                          init=str(init) if init else None)
    t0 = time.time()
    with progress_bar("training", steps, quiet) as advance:
        def on_step(step: int, rec: dict) -> None:
            advance(1)
            if "acc_real" in rec:  # a log line, not a progress bar: printed under --quiet too
                console.print(f"step {step}: val accuracy real {rec['acc_real']:.3f}, blank {rec['acc_blank']:.3f}")
        with user_errors():
            model_dir = train_demo(out, cfg, device=device, on_step=on_step,
                                   max_seconds=None if max_minutes is None else 60 * max_minutes)
    seconds = time.time() - t0
    if model_dir == out:
        console.print(f"stopped after {max_minutes} minutes; rerun the same command to resume")
        return
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    model = DemoVLM.from_pretrained(model_dir, device=dev)
    # Generated directly (same questions as the cached split), so no parquet cache is needed where training runs.
    test = Benchmark("shapes", "test", generate_questions("test", cfg.seed, eval_limit))
    result = evaluate(model, test, "real,blank", quiet=quiet)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    stages = json.loads((init / "training.json").read_text())["stages"] if init and (init / "training.json").exists() else []
    stages.append({"command": "mirage " + " ".join(sys.argv[1:]), "device": f"{dev} ({name})", "seconds": seconds,
                   "steps": steps})
    card = write_card(model_dir, stages, log, result.summary)
    console.print(summary_table(result.summary, title="demo model on ShapesQA test"))
    console.print(f"model: {model_dir}\ncard: {card}")


def parse_type_weights(spec: str) -> dict[str, float]:
    """"position=0.5,colour=0.1" -> the benchmark's type mix with those weights replaced."""
    from ..benchmarks.shapes.questions import TYPE_WEIGHTS
    from ..registry import did_you_mean

    weights = dict(TYPE_WEIGHTS)
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in weights:
            raise UsageError(f"--type-weights: {did_you_mean('question type', name.strip(), list(weights))}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--type-weights: {part!r} is not NAME=NUMBER") from None
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise UsageError(f"--type-weights: weights must be >= 0 and not all zero, got {weights}")
    return weights
