"""Evaluation: a source (condition) over a benchmark -> one row per (question, source); summaries from rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .benchmarks.question import LETTERS, Benchmark, Question
from .blind import blind_measures
from .conditions import Condition, ConditionContext, parse_conditions
from .distributed import SINGLE, World
from .errors import UsageError
from .models.vlm import VLM, Visual
from .progress import progress_bar
from .runs import RunDir
from .sources import TEXT_MODEL
from .stats import summarize


@dataclass
class EvalResult:
    """All rows of the sources asked for, and their summary (accuracy, intervals, per type, paired tests)."""

    rows: list[dict]
    summary: dict


SCORINGS = ("letter", "generate")


def score(model: VLM, benchmark: Benchmark, questions: Sequence[Question], visual: Visual, source: str,
          scoring: str = "letter", seed: int = 0, max_new_tokens: int = 32) -> list[dict]:
    """Rows for one batch given `visual`. `letter`: probabilities of the option letters at the answer position;
    `generate`: greedy generation judged by the benchmark (`Benchmark.judge`). Open questions are always
    generated."""
    by_letter = [i for i, q in enumerate(questions) if scoring == "letter" and q.kind == "mc"]
    rows: dict[int, dict] = {}
    if by_letter:
        qs = [questions[i] for i in by_letter]
        sub = visual if len(by_letter) == len(questions) else visual.select(by_letter)  # no copy in the usual case
        logits = model.choice_logits([benchmark.prompt(q) for q in qs], sub, [len(q.choices) for q in qs])
        for i, q, p in zip(by_letter, qs, logits.float().softmax(-1).cpu()):
            pred = int(p[: len(q.choices)].argmax())
            rows[i] = {"question_id": q.id, "source": source, "pred": LETTERS[pred], "answer": q.answer_letter,
                       "correct": pred == q.answer, "probs": [round(float(x), 4) for x in p[: len(q.choices)]],
                       "type": q.type}
    generated = [i for i in range(len(questions)) if i not in rows]
    if generated:
        qs = [questions[i] for i in generated]
        responses = model.generate([benchmark.prompt(q) for q in qs], visual.select(generated), max_new_tokens)
        for i, q, text in zip(generated, qs, responses):
            pred, answer, correct = benchmark.judge(q, text, seed)
            rows[i] = {"question_id": q.id, "source": source, "pred": pred, "answer": answer, "correct": bool(correct),
                       "response": text, "type": q.type}
    for i, q in enumerate(questions):  # circular evaluation: each row keeps its question's rotation
        if "circular" in q.meta:
            rows[i]["circular"] = q.meta["circular"]
    return [rows[i] for i in range(len(questions))]


def score_pending(questions: Sequence[Question], source: str, rows_for: Callable[[list[Question]], list[dict]],
                  run: RunDir | None = None, batch_size: int = 32, done: set | None = None,
                  advance: Callable[[int], None] | None = None) -> list[dict]:
    """The one resumable scoring loop: the `questions` that `run` (or `done`) holds no row of `source` for, in
    batches of `batch_size`, each scored by `rows_for(batch)` and appended to `run` at once, so a killed run loses
    at most one batch. Returns the new rows."""
    if done is None:
        done = run.done() if run else set()
    todo = [q for q in questions if (q.id, source) not in done]
    rows: list[dict] = []
    for i in range(0, len(todo), batch_size):
        batch = todo[i : i + batch_size]
        new = rows_for(batch)
        if run:
            run.append(new)
        rows += new
        if advance:
            advance(len(batch))
    return rows


def environment(model: VLM) -> dict:
    """What a run should record about how the model ran."""
    import transformers

    env = {"device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
           "attn_implementation": getattr(model, "attn_implementation", "sdpa"), "torch": torch.__version__,
           "transformers": transformers.__version__}
    if getattr(model, "device_map", None):
        env["device_map"] = model.device_map
    if getattr(model, "image_aspect_ratio", None):  # LLaVA-1.5's preprocessing: pad (official) or crop
        env["image_aspect_ratio"] = model.image_aspect_ratio
    return env


def evaluate_conditions(model: VLM, benchmark: Benchmark, conditions: Sequence[Condition], *, seed: int = 0,
                        batch_size: int = 32, run: RunDir | None = None, quiet: bool = False,
                        scoring: str = "letter", world: World = SINGLE) -> list[dict]:
    """Rows for every (question, condition), skipping those `run` already holds and appending new ones to it.
    Under torchrun each rank takes its shard of the questions (conditions still see the whole benchmark)."""
    if scoring not in SCORINGS:
        raise UsageError(f"--scoring: unknown scoring {scoring!r} (allowed: {', '.join(SCORINGS)})")
    if run:
        run.annotate(**environment(model))
    # a condition built from the question's own image has nothing to show for a text-only question
    shown = {c.name: [q for q in world.shard(benchmark.questions) if q.images or not c.needs_image]
             for c in conditions}
    ctx = ConditionContext(benchmark, seed)
    sources = [(c.name, shown[c.name], lambda batch, c=c: c.visual(model, batch, ctx)) for c in conditions]
    return _score_sources(model, benchmark, sources, seed, batch_size, run, quiet, scoring)


def evaluate_text_model(lm: VLM, benchmark: Benchmark, *, seed: int = 0, batch_size: int = 32,
                        run: RunDir | None = None, quiet: bool = False, scoring: str = "letter",
                        world: World = SINGLE) -> list[dict]:
    """Rows `text-model`: a text-only LM (`models.text_lm`) on the same prompts with no image (MMStar's S_t)."""
    sources = [(TEXT_MODEL, world.shard(benchmark.questions), lambda batch: Visual.none())]
    return _score_sources(lm, benchmark, sources, seed, batch_size, run, quiet, scoring)


def _score_sources(model: VLM, benchmark: Benchmark, sources, seed: int, batch_size: int, run: RunDir | None,
                   quiet: bool, scoring: str) -> list[dict]:
    """Each (source name, its questions, the visual for a batch) through `score_pending`; all rows of these
    sources (the run's, when there is one)."""
    done = run.done() if run else set()
    total = sum((q.id, name) not in done for name, qs, _ in sources for q in qs)
    new: list[dict] = []
    with torch.inference_mode(), progress_bar("evaluating", total, quiet) as advance:
        for name, qs, visual_of in sources:
            def rows_for(batch: list[Question], name=name, visual_of=visual_of) -> list[dict]:
                return score(model, benchmark, batch, visual_of(batch), name, scoring, seed)

            new += score_pending(qs, name, rows_for, run, batch_size, done, advance)
    if run is None:
        return new
    names = {name for name, _, _ in sources}
    return [r for r in run.rows() if r["source"] in names]


def skipped(benchmark: Benchmark, conditions: Sequence[Condition]) -> dict[str, int]:
    """Per condition, how many questions it skips because they have no image."""
    n = sum(not q.images for q in benchmark)
    return {c.name: n for c in conditions if c.needs_image and n}


def summarize_conditions(rows: list[dict], benchmark: Benchmark, conditions: Sequence[Condition]) -> dict:
    """`stats.summarize`, `blind` (S_v, S_wv, S_t, MG, ML) where `none` or `text-model` rows exist, and
    `skipped_no_image` where conditions had nothing to show for text-only questions."""
    summary = summarize(rows)
    if any("circular" in r for r in rows):  # a question counts once, correct only when every rotation is
        from .benchmarks.circular import circular_rows

        summary["circular"] = summarize(circular_rows(rows))
    blind = blind_measures(rows)
    if blind:
        summary["blind"] = blind
    if skipped(benchmark, conditions):
        summary["skipped_no_image"] = skipped(benchmark, conditions)
    return summary


def eval_config(model_name: str, benchmark: Benchmark, conditions: Sequence[Condition], seed: int,
                limit: int | None, batch_size: int, scoring: str = "letter", text_model: str | None = None) -> dict:
    """What identifies an evaluation run (batch size may change on resume)."""
    config = {"command": "eval", "model": model_name, "benchmark": benchmark.name, "split": benchmark.split,
              "limit": limit, "n_questions": len(benchmark), "conditions": [c.name for c in conditions], "seed": seed,
              "batch_size": batch_size, "scoring": scoring}
    if text_model:  # only when given, so runs written before --text-model existed still resume
        config["text_model"] = text_model
    return config


def evaluate(model: VLM, benchmark: Benchmark, conditions: str | Sequence[str] = "real", *, seed: int = 0,
             batch_size: int = 32, out: str | Path | None = None, overwrite: bool = False,
             quiet: bool = True, text_model: VLM | None = None) -> EvalResult:
    """Evaluate `model` on `benchmark` under `conditions` (and `text_model`, a `models.text_lm.TextLM`, on the same
    prompts: rows `text-model`); with `out`, a resumable run directory is kept there."""
    conds = parse_conditions(conditions)
    run = None
    if out is not None:
        config = eval_config(getattr(model, "name_or_path", type(model).__name__), benchmark, conds, seed, None,
                             batch_size, text_model=getattr(text_model, "name_or_path", None))
        run = RunDir.open(out, config, overwrite=overwrite)
    rows = evaluate_conditions(model, benchmark, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet)
    if text_model is not None:
        rows += evaluate_text_model(text_model, benchmark, seed=seed, batch_size=batch_size, run=run, quiet=quiet)
    summary = summarize_conditions(rows, benchmark, conds)
    if run:
        run.write_json("summary.json", summary)
    return EvalResult(rows, summary)
