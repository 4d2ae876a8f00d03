"""The generator experiment (`--input generator`), `run_generator`: train the question-conditioned generator on a
train split, then judge it on held-out questions beside `blank`, `noise` and a universal pixel input trained on the
same questions; sample images per question type go to artifacts/<source>/ for the report."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from typing import Sequence

import torch
from PIL import Image

from .. import sources
from ..benchmarks.question import Benchmark, Question
from ..inputs.generator import GeneratorConfig, GeneratorInput, to_pixels
from ..models.vlm import VLM
from ..runs import RunDir
from .common import check_train
from .generator_train import TrainConfig, question_noise, train_generator


@torch.no_grad()
def generated_images(bench: Benchmark, gen: GeneratorInput, questions: Sequence[Question],
                     seed: int) -> list[Image.Image]:
    """One 8-bit sample per question (noise fixed by the question id) at the model's resolution."""
    cond, mask = gen.condition([bench.prompt(q) for q in questions])
    x = to_pixels(gen.net.sample(cond, mask, question_noise(gen, questions, seed)).final, gen.resolution)
    return [Image.fromarray(a) for a in (x * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()]


def generator_rows(model: VLM, bench: Benchmark, gen: GeneratorInput, questions: Sequence[Question], source: str,
                   seed: int, run: RunDir | None = None, batch_size: int = 32, quiet: bool = True) -> list[dict]:
    """Rows of the generator's 8-bit samples read by the model's real processor (skipping rows `run` holds)."""
    from ..evaluate import score, score_pending
    from ..progress import progress_bar

    def rows_for(qs: list[Question]) -> list[dict]:
        with torch.inference_mode():
            return score(model, bench, qs, model.visual_from_images(generated_images(bench, gen, qs, seed)), source)

    done = run.done() if run else set()
    with progress_bar(f"evaluating {source}", sum((q.id, source) not in done for q in questions), quiet) as advance:
        return score_pending(questions, source, rows_for, run, batch_size, done, advance)


def save_samples(run: RunDir, bench: Benchmark, gen: GeneratorInput, questions: Sequence[Question], source: str,
                 seed: int, per_type: int = 3) -> list[str]:
    """artifacts/<source>/<qid>.png: the evaluated samples of the first `per_type` held-out questions of each type."""
    picked, count = [], {}
    for q in questions:
        if count.get(q.type, 0) < per_type:
            picked.append(q)
            count[q.type] = count.get(q.type, 0) + 1
    folder = run.artifacts_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    for q, im in zip(picked, generated_images(bench, gen, picked, seed) if picked else []):
        im.save(folder / f"{q.id}.png")
    return [q.id for q in picked]


def run_generator(model: VLM, bench: Benchmark, run: RunDir, method: str = "reinforce", train: int = 200,
                  steps: int = 100, heldout: int | None = None, config: GeneratorConfig | None = None,
                  lr: float = 3e-4, questions: int = 8, samples: int = 2, reward: str = "prob",
                  universal_steps: int | None = None, eval_train: int = 100, seed: int = 0, quiet: bool = True,
                  stop_after: int | None = None, **train_options) -> dict:
    """Train the generator (`reinforce` or the `backprop` control) on the first `train` questions of `bench`, then
    evaluate it on the next `heldout` (default: the rest) beside blank, noise and a universal pixel input trained
    `universal_steps` steps on the same questions (default: `steps`, the generator's own budget; 0: skipped). Resumable; returns (and writes
    `<source>.summary.json`) accuracies with 95% intervals, McNemar against blank, and the reward curve's ends."""
    from ..conditions import parse_conditions
    from ..evaluate import evaluate_conditions
    from ..optimize import save_artifact
    from ..stats import summarize

    check_train(train, len(bench))
    cfg = TrainConfig(method=method, steps=steps, lr=lr, questions=questions, samples=samples, reward=reward,
                      seed=seed, **train_options)
    source = sources.generator(method)
    universal_steps = steps if universal_steps is None else universal_steps
    t0 = time.time()
    train_qs, held = bench.questions[:train], bench.questions[train:][:heldout]
    gen = GeneratorInput(model, 1, config, seed).to(model.device)
    history = train_generator(model, bench, train_qs, gen, cfg, run.artifacts_dir / f"{source}.ckpt.pt", quiet,
                              stop_after)
    if len(history) < steps:
        return {"source": source, "stopped_at": len(history)}
    timings = {"train": round(time.time() - t0, 1)}
    save_artifact(gen, 0, run.artifacts_dir, source)
    (run.artifacts_dir / f"{source}.history.json").write_text(json.dumps(history))
    (run.artifacts_dir / f"{source}.config.json").write_text(json.dumps(
        {"generator": gen.config.to_dict(), "train": asdict(cfg)}, indent=1))

    t = time.time()
    generator_rows(model, bench, gen, held, source, seed, run, quiet=quiet)
    generator_rows(model, bench, gen, train_qs[:eval_train], sources.train(source), seed, run, quiet=quiet)
    samples_saved = save_samples(run, bench, gen, held, source, seed)
    held_bench = replace(bench, questions=list(held))
    evaluate_conditions(model, held_bench, parse_conditions("blank,noise"), run=run, quiet=quiet)
    timings["evaluate"] = round(time.time() - t, 1)
    names = [source, "blank", "noise"]
    if universal_steps:
        from ..optimize import OptimizeConfig
        from .optimization import OptimizeSpec, run_optimization

        t = time.time()
        both = replace(bench, questions=list(train_qs) + list(held))
        run_optimization(model, both, OptimizeSpec("pixels", scope="universal", train=len(train_qs)),
                         OptimizeConfig(steps=universal_steps, batch_size=16, seed=seed), run, quiet=quiet)
        pixels = sources.optimized("pixels", "universal")
        names += [pixels, sources.png(pixels)]
        timings["universal_pixels"] = round(time.time() - t, 1)
    held_ids = {q.id for q in held}
    rows = [r for r in run.rows() if r["source"] in names and r["question_id"] in held_ids]
    summary = summarize(rows)
    k = max(1, len(history) // 10)
    out = {"source": source, "method": method, "n_train": len(train_qs), "n_heldout": len(held), "steps": steps,
           "config": {"generator": gen.config.to_dict(), "train": asdict(cfg)},
           "heldout": {s: {"n": summary["n"][s], "accuracy": summary["accuracy"][s], "ci95": summary["ci95"][s],
                           "by_type": summary["by_type"][s], "vs_blank": summary["paired"][s].get("blank")}
                       for s in summary["n"]},
           "train_accuracy": summarize([r for r in run.rows() if r["source"] == sources.train(source)])["accuracy"].get(
               sources.train(source)),
           "reward_first": round(sum(h["reward"] for h in history[:k]) / k, 4),
           "reward_last": round(sum(h["reward"] for h in history[-k:]) / k, 4),
           "samples": samples_saved, "seconds": {**timings, "total": round(time.time() - t0, 1)}}
    run.write_json(f"{source}.summary.json", out)
    return out
