"""Evaluation: a source (condition) over a benchmark -> one row per (question, source); summaries from rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .benchmarks.question import LETTERS, Benchmark, Question
from .conditions import Condition, ConditionContext, parse_conditions
from .models.vlm import VLM, Visual
from .progress import progress_bar
from .runs import RunDir
from .stats import summarize


@dataclass
class EvalResult:
    """All rows of the sources asked for, and their summary (accuracy, intervals, per type, paired tests)."""

    rows: list[dict]
    summary: dict


def score(model: VLM, benchmark: Benchmark, questions: Sequence[Question], visual: Visual, source: str) -> list[dict]:
    """Rows for one batch: the model's letter choice and choice probabilities, given `visual`."""
    logits = model.choice_logits([benchmark.prompt(q) for q in questions], visual, [len(q.choices) for q in questions])
    probs = logits.float().softmax(-1).cpu()
    rows = []
    for q, p in zip(questions, probs):
        pred = int(p[: len(q.choices)].argmax())
        rows.append({"question_id": q.id, "source": source, "pred": LETTERS[pred], "answer": q.answer_letter,
                     "correct": pred == q.answer, "probs": [round(float(x), 4) for x in p[: len(q.choices)]],
                     "type": q.type})
    return rows


def evaluate_conditions(model: VLM, benchmark: Benchmark, conditions: Sequence[Condition], *, seed: int = 0,
                        batch_size: int = 32, run: RunDir | None = None, quiet: bool = False) -> list[dict]:
    """Rows for every (question, condition), skipping those `run` already holds and appending new ones to it."""
    done = run.done() if run else set()
    todo = [(c, q) for c in conditions for q in benchmark if (q.id, c.name) not in done]
    ctx = ConditionContext(benchmark, seed)
    new: list[dict] = []
    with torch.inference_mode(), progress_bar("evaluating", len(todo), quiet) as advance:
        for c in conditions:
            qs = [q for cc, q in todo if cc is c]
            for i in range(0, len(qs), batch_size):
                batch = qs[i : i + batch_size]
                visual = model.visual_from_images([c.image(q, ctx) for q in batch])
                rows = score(model, benchmark, batch, visual, c.name)
                if run:
                    run.append(rows)
                new += rows
                advance(len(batch))
    if run is None:
        return new
    names = {c.name for c in conditions}
    return [r for r in run.rows() if r["source"] in names]


def eval_config(model_name: str, benchmark: Benchmark, conditions: Sequence[Condition], seed: int,
                limit: int | None, batch_size: int) -> dict:
    """What identifies an evaluation run (batch size may change on resume)."""
    return {"command": "eval", "model": model_name, "benchmark": benchmark.name, "split": benchmark.split,
            "limit": limit, "n_questions": len(benchmark), "conditions": [c.name for c in conditions], "seed": seed,
            "batch_size": batch_size}


def evaluate(model: VLM, benchmark: Benchmark, conditions: str | Sequence[str] = "real", *, seed: int = 0,
             batch_size: int = 32, out: str | Path | None = None, overwrite: bool = False,
             quiet: bool = True) -> EvalResult:
    """Evaluate `model` on `benchmark` under `conditions`; with `out`, a resumable run directory is kept there."""
    conds = parse_conditions(conditions)
    run = None
    if out is not None:
        config = eval_config(getattr(model, "name_or_path", type(model).__name__), benchmark, conds, seed, None,
                             batch_size)
        run = RunDir.open(out, config, overwrite=overwrite)
    rows = evaluate_conditions(model, benchmark, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet)
    summary = summarize(rows)
    if run:
        run.write_json("summary.json", summary)
    return EvalResult(rows, summary)
