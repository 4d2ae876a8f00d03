"""Evaluation: a source (condition) over a benchmark -> one row per (question, source); summaries from rows."""

from __future__ import annotations

import re
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .benchmarks.question import LETTERS, Benchmark, Question
from .blind import blind_measures, shuffle_decomposition, soft_prompt_control
from .conditions import ASKED_KEY, Condition, ConditionContext, parse_conditions
from .distributed import SINGLE, World
from .environment import model_environment
from .errors import MirageError, UsageError
from .models.vlm import VLM, Visual
from .prefetch import prompt_batches, visual_batches
from .progress import progress_bar, warn
from .runs import RunDir, release_locks
from .sources import TEXT_MODEL
from .stats import summarize


@dataclass
class EvalResult:
    """All rows of the sources asked for, and their summary (accuracy, intervals, per type, paired tests)."""

    rows: list[dict]
    summary: dict


SCORINGS = ("letter", "generate")
# A prompt with a larger share of words its model cannot read (e.g. the demo's word-level vocabulary on a JSONL
# set's own wording) would be scored at chance without a word: refused.
MAX_UNKNOWN_SHARE = 0.25
_WORDS = re.compile(r"\w+|[^\w\s]+")  # how a Whitespace pre-tokenizer splits words
_warned: set[tuple] = set()


class UnreadablePromptError(MirageError):
    """A prompt is mostly words the model's tokenizer cannot represent."""


def check_prompts(model: VLM, benchmark: Benchmark, questions: Sequence[Question] | None = None,
                  world: World = SINGLE) -> dict[str, int]:
    """Unknown words per question id (those with any). Refuses a benchmark with a prompt past MAX_UNKNOWN_SHARE;
    otherwise warns once (rank 0) how many prompts have unknown words, with an example."""
    counts, worst = {}, (0.0, None, [])
    for q in benchmark.questions if questions is None else questions:
        prompt = benchmark.prompt(q)
        unknown = model.unknown_words(prompt)
        if unknown:
            counts[q.id] = len(unknown)
            share = len(unknown) / max(1, len(_WORDS.findall(prompt)))
            worst = max(worst, (share, q.id, unknown), key=lambda w: w[0])
    share, qid, words = worst
    example = f"question {qid!r}: {len(words)} of its prompt's words are unknown ({', '.join(map(repr, words[:8]))})"
    # MIRAGE_MAX_UNKNOWN_SHARE moves the threshold (1: score every prompt, e.g. a test model on real benchmarks)
    if share > float(os.environ.get("MIRAGE_MAX_UNKNOWN_SHARE", MAX_UNKNOWN_SHARE)):
        raise UnreadablePromptError(
            f"{benchmark.name}: the model cannot read these prompts: {example}, {share:.0%} of the prompt. Write the "
            "questions in words its tokenizer knows (the demo knows ShapesQA's words only).")
    key = (id(model), benchmark.name, len(counts))
    if counts and world.main and key not in _warned:
        _warned.add(key)
        warn(f"{benchmark.name}: {len(counts)} of {len(benchmark.questions if questions is None else questions)} "
             f"prompts have words the model cannot read (recorded as `unknown_words` in their rows); {example}")
    return counts


def score(model: VLM, benchmark: Benchmark, questions: Sequence[Question], visual: Visual, source: str,
          scoring: str = "letter", seed: int = 0, max_new_tokens: int = 32) -> list[dict]:
    """Rows for one batch given `visual`. `letter`: probabilities of the option letters at the answer position;
    `generate`: greedy generation judged by the benchmark (`Benchmark.judge`). Open questions are always
    generated."""
    return score_later(model, benchmark, questions, visual, source, scoring, seed, max_new_tokens)()


def score_later(model: VLM, benchmark: Benchmark, questions: Sequence[Question], visual: Visual, source: str,
                scoring: str = "letter", seed: int = 0, max_new_tokens: int = 32) -> Callable[[], list[dict]]:
    """`score` in two halves: the letter forward is queued on the model's device now, and the returned function
    reads it back and writes the rows (generation, which reads every token, runs then too). On a GPU the next
    batch's forward can so be queued before this batch's readback waits for it: the GPU does not idle while the
    host writes rows."""
    by_letter = [i for i, q in enumerate(questions) if scoring == "letter" and q.kind == "mc"]
    probs = None
    if by_letter:
        qs = [questions[i] for i in by_letter]
        sub = visual if len(by_letter) == len(questions) else visual.select(by_letter)  # no copy in the usual case
        logits = model.choice_logits([benchmark.prompt(q) for q in qs], sub, [len(q.choices) for q in qs])
        probs = logits.float().softmax(-1)

    def rows_now() -> list[dict]:
        rows: dict[int, dict] = {}
        if probs is not None:
            for i, p in zip(by_letter, probs.cpu()):
                q = questions[i]
                pred = int(p[: len(q.choices)].argmax())
                rows[i] = {"question_id": q.id, "source": source, "pred": LETTERS[pred], "answer": q.answer_letter,
                           "correct": pred == q.answer, "probs": [round(float(x), 4) for x in p[: len(q.choices)]],
                           "type": q.type}
        generated = [i for i in range(len(questions)) if i not in rows]
        if generated:
            qs = [questions[i] for i in generated]
            responses = model.generate([benchmark.prompt(q) for q in qs], visual.select(generated), max_new_tokens)
            for i, q, text in zip(generated, qs, responses):
                pred, answer, correct, *metrics = benchmark.judge(q, text, seed)
                rows[i] = {"question_id": q.id, "source": source, "pred": pred, "answer": answer,
                           "correct": bool(correct), "response": text, "type": q.type}
                if metrics:  # the benchmark's own per-question scores (lmms-eval's process_results)
                    rows[i]["metrics"] = metrics[0]
        for i, q in enumerate(questions):  # circular evaluation: each row keeps its question's rotation
            if "circular" in q.meta:
                rows[i]["circular"] = q.meta["circular"]
            if ASKED_KEY in q.meta:  # asked with words not its own (image-only, both, captions): whose they are
                rows[i].update(q.meta[ASKED_KEY])
        for i, q in enumerate(questions):  # a prompt read in part is scored, and says so
            unknown = model.unknown_words(benchmark.prompt(q))
            if unknown:
                rows[i]["unknown_words"] = len(unknown)
        return [rows[i] for i in range(len(questions))]

    return rows_now


def pending(questions: Sequence[Question], source: str, run: RunDir | None = None, done: set | None = None
            ) -> list[Question]:
    """The `questions` that `run` (or `done`) holds no row of `source` for, in order."""
    if done is None:
        done = run.done() if run else set()
    return [q for q in questions if (q.id, source) not in done]


def score_pending(questions: Sequence[Question], source: str, rows_for: Callable[[list[Question]], list[dict]],
                  run: RunDir | None = None, batch_size: int = 32, done: set | None = None,
                  advance: Callable[[int], None] | None = None) -> list[dict]:
    """The `questions` of one source that `run` (or `done`) holds no row of, through `score_batches` in batches
    of `batch_size` in order, each scored by `rows_for(batch)`. Returns the new rows."""
    todo = pending(questions, source, run, done)
    batches = [(source, todo[i : i + batch_size]) for i in range(0, len(todo), batch_size)]
    return score_batches(batches, lambda _, batch: rows_for(batch), run, advance)


def score_batches(batches: Sequence[tuple[str, list[Question]]], rows_for: Callable[..., list[dict]],
                  run: RunDir | None = None, advance: Callable[[int], None] | None = None,
                  ahead: Callable | None = None) -> list[dict]:
    """The one resumable scoring loop: each (source, batch) scored by `rows_for(source, batch)` and appended to `run`
    at once, so a killed run loses at most one batch (two when rows come late, below). `ahead(batches)`: yields
    ((source, batch), prepared) with host work done ahead of the model (prefetch.py), scored by
    `rows_for(source, batch, prepared)`; one pipeline over all the batches, so the next source's first batch is
    prepared while this source's last ones are scored. `rows_for` may return a function that gives the rows
    (`score_later`): it is called after the next batch's `rows_for`, so that batch's device work is queued before
    this one's readback waits. Returns the new rows."""
    rows: list[dict] = []
    late: tuple | None = None

    def finish(batch, made) -> None:
        new = made() if callable(made) else made
        if run:
            run.append(new)
        rows.extend(new)
        if advance:
            advance(len(batch))

    for (source, batch), prepared in ahead(batches) if ahead else ((b, None) for b in batches):
        try:
            made = rows_for(source, batch, prepared) if ahead else rows_for(source, batch)
        except BaseException:
            if late is not None:  # the batch before is written before the error goes up
                finish(*late)
            raise
        if late is not None:
            finish(*late)
        late = (batch, made)
    if late is not None:
        finish(*late)
    return rows


def evaluate_conditions(model: VLM, benchmark: Benchmark, conditions: Sequence[Condition], *, seed: int = 0,
                        batch_size: int = 32, run: RunDir | None = None, quiet: bool = False,
                        scoring: str = "letter", world: World = SINGLE, workers: int | None = None) -> list[dict]:
    """Rows for every (question, condition), skipping those `run` already holds and appending new ones to it.
    Under torchrun each rank takes its shard of the questions (conditions still see the whole benchmark).
    `workers`: threads preparing images ahead of the model (default: `prefetch.default_workers`; 0: none)."""
    if scoring not in SCORINGS:
        raise UsageError(f"--scoring: unknown scoring {scoring!r} (allowed: {', '.join(SCORINGS)})")
    benchmark = benchmark.for_model(model)
    check_prompts(model, benchmark, world=world)
    if run:
        run.annotate(**model_environment(model), prompt=benchmark.prompt_name)
    # a condition built from the question's own image has nothing to show for a text-only question
    shown = {c.name: [q for q in world.shard(benchmark.questions) if q.images or not c.needs_image]
             for c in conditions}
    ctx = ConditionContext(benchmark, seed, captions=_captions(model, conditions, shown, run, batch_size, quiet,
                                                              world))
    # each condition's questions as the model is asked them (words, options, gold) and their images
    sources = [(c.name, [c.ask(q, ctx) for q in shown[c.name]], lambda batch, c=c: c.visual(model, batch, ctx))
               for c in conditions]
    return _score_sources(model, benchmark, sources, seed, batch_size, run, quiet, scoring, workers)


def _captions(model: VLM, conditions: Sequence[Condition], shown: dict, run: RunDir | None, batch_size: int,
              quiet: bool, world: World) -> dict[str, dict[str, str]]:
    """The captions the `caption:` conditions answer from, by captioner: made once (cached in the run)."""
    out = {}
    for cap in dict.fromkeys(c.captioner for c in conditions if c.captioner):
        from .captions import make_captions

        qs = list({q.id: q for c in conditions if c.captioner == cap for q in shown[c.name]}.values())
        out[cap] = make_captions(cap, model, qs, run, batch_size, quiet, world)
    return out


def evaluate_text_model(lm: VLM, benchmark: Benchmark, *, seed: int = 0, batch_size: int = 32,
                        run: RunDir | None = None, quiet: bool = False, scoring: str = "letter",
                        world: World = SINGLE, workers: int | None = None) -> list[dict]:
    """Rows `text-model`: a text-only LM (`models.text_lm`) on the same prompts with no image (MMStar's S_t)."""
    sources = [(TEXT_MODEL, world.shard(benchmark.questions), lambda batch: Visual.none())]
    return _score_sources(lm, benchmark, sources, seed, batch_size, run, quiet, scoring, workers)


def _score_sources(model: VLM, benchmark: Benchmark, sources, seed: int, batch_size: int, run: RunDir | None,
                   quiet: bool, scoring: str, workers: int | None) -> list[dict]:
    """Each (source name, its questions, the visual for a batch) through one `score_batches` pipeline; all rows of
    these sources (the run's, when there is one)."""
    done = run.done() if run else set()
    todo = [(name, pending(qs, name, done=done)) for name, qs, _ in sources]
    visual_of = {name: v for name, _, v in sources}
    # batches by prompt length, their visuals made (images processed) in worker threads ahead (prefetch.py), one
    # pipeline across the sources: a condition's first batch does not wait on the host
    batches = [(name, b) for name, qs in todo for b in prompt_batches(model, benchmark, qs, batch_size)]
    with torch.inference_mode(), progress_bar("evaluating", sum(len(qs) for _, qs in todo), quiet) as advance:
        new = score_batches(
            batches, lambda name, batch, visual: score_later(model, benchmark, batch, visual, name, scoring, seed), run,
            advance, lambda items: visual_batches(model, lambda item: visual_of[item[0]](item[1]), items, workers))
    if run is None:
        # the sources' and questions' order, not the batches'
        rank = {(q.id, name): (k, i) for k, (name, qs, _) in enumerate(sources) for i, q in enumerate(qs)}
        return sorted(new, key=lambda r: rank[r["question_id"], r["source"]])
    names = {name for name, _, _ in sources}
    return [r for r in run.rows() if r["source"] in names]


def skipped(benchmark: Benchmark, conditions: Sequence[Condition]) -> dict[str, int]:
    """Per condition, how many questions it skips because they have no image."""
    n = sum(not q.images for q in benchmark)
    return {c.name: n for c in conditions if c.needs_image and n}


def chance(benchmark: Benchmark) -> dict[str, float]:
    """Each multiple-choice question's chance of a right answer by a uniform guess (1 / its options), by id."""
    return {q.id: 1.0 / len(q.choices) for q in benchmark if q.kind == "mc"}


def summarize_conditions(rows: list[dict], benchmark: Benchmark, conditions: Sequence[Condition]) -> dict:
    """`stats.summarize`, `blind` (S_v, S_wv, S_t, MG, ML) where `none` or `text-model` rows exist, `shuffle` (the
    Multi-modal Data Spectrum's decomposition) where `image-only` or `both` rows exist, `soft_prompt` (crafted inputs
    against the soft-prompt control) where soft-prompt rows exist, `no_images` for a benchmark with no image, and
    `skipped_no_image` where conditions had nothing to show for text-only questions."""
    summary = summarize(rows)
    if any("circular" in r for r in rows):  # a question counts once, correct only when every rotation is
        from .benchmarks.circular import circular_rows

        summary["circular"] = summarize(circular_rows(rows))
    own = benchmark_metrics(rows, benchmark)
    if own:
        summary["metrics"] = own
    blind = blind_measures(rows)
    if blind:
        summary["blind"] = blind
    control = soft_prompt_control(rows)
    if control:  # crafted inputs against the soft prompt of their scope
        summary["soft_prompt"] = control
    if benchmark.questions and not any(q.images for q in benchmark):
        summary["no_images"] = True  # nothing to see: a crafted input's gain here is a prompt's (blind.text_only_match)
    shuffle = shuffle_decomposition(rows, chance(benchmark))
    if shuffle:
        summary["shuffle"] = shuffle
    if skipped(benchmark, conditions):
        summary["skipped_no_image"] = skipped(benchmark, conditions)
    unknown = {r["question_id"]: r["unknown_words"] for r in rows if r.get("unknown_words")}
    if unknown:  # prompts the model read only in part
        summary["unknown_words"] = {"questions": len(unknown), "max_per_prompt": max(unknown.values())}
    return summary


def benchmark_metrics(rows: list[dict], benchmark: Benchmark) -> dict:
    """Per source, the benchmark's own aggregation of its generated rows' `metrics` (lmms-eval's number)."""
    if benchmark.metrics is None:
        return {}
    by_source: dict[str, list] = {}
    for r in rows:
        if "metrics" in r:
            by_source.setdefault(r["source"], []).append(r["metrics"])
    return {source: benchmark.metrics(values) for source, values in by_source.items()}


def eval_config(model_name: str, benchmark: Benchmark, conditions: Sequence[Condition], seed: int,
                limit: int | None, batch_size: int, scoring: str = "letter", text_model: str | None = None,
                prompt: str | None = None) -> dict:
    """What identifies an evaluation run (batch size may change on resume)."""
    config = {"command": "eval", "model": model_name, **benchmark.identity(), "split": benchmark.split,
              "limit": limit, "n_questions": len(benchmark), "conditions": [c.name for c in conditions], "seed": seed,
              "batch_size": batch_size, "scoring": scoring}
    if text_model:  # only when given, so runs written before --text-model existed still resume
        config["text_model"] = text_model
    if prompt:  # --prompt (lmms-eval, model, official); the prompt it resolves to is in `environment.prompt`
        config["prompt"] = prompt
    if any(c.captioner for c in conditions):  # the fixed prompt the captions were made with
        from .captions import caption_settings

        config["captions"] = caption_settings()
    return config


def evaluate(model: VLM, benchmark: Benchmark, conditions: str | Sequence[str] = "real", *, seed: int = 0,
             batch_size: int = 32, out: str | Path | None = None, overwrite: bool = False,
             quiet: bool = True, text_model: VLM | None = None, prompt: str | None = None) -> EvalResult:
    """Evaluate `model` on `benchmark` under `conditions` (and `text_model`, a `models.text_lm.TextLM`, on the same
    prompts: rows `text-model`), asked in prompt variant `prompt` (`Benchmark.with_prompt`; None: the benchmark's
    own); with `out`, a resumable run directory is kept there."""
    conds = parse_conditions(conditions)
    benchmark = benchmark.with_prompt(prompt, model)
    run = None
    if out is not None:
        config = eval_config(getattr(model, "name_or_path", type(model).__name__), benchmark, conds, seed, None,
                             batch_size, text_model=getattr(text_model, "name_or_path", None), prompt=prompt)
        run = RunDir.open(out, config, overwrite=overwrite)
    rows = evaluate_conditions(model, benchmark, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet)
    if text_model is not None:
        rows += evaluate_text_model(text_model, benchmark, seed=seed, batch_size=batch_size, run=run, quiet=quiet)
    summary = summarize_conditions(rows, benchmark, conds)
    if run:
        run.write_json("summary.json", summary)
        release_locks()  # another process may write the run now
    return EvalResult(rows, summary)
