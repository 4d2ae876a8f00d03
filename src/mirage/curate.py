"""Curation, as MMStar kept only the questions its LLMs could not answer without the image: from one or more runs
(one per model), the questions answered right with the real image and wrong by every image-free source (`none`,
`text-model`, optionally `blank`/`noise`...) in every run (or in `min_runs` of them), written as a `file:` JSONL
benchmark with the images beside it, and `curation.json` saying which sources solved each question in which run.

`prune_tst` is the other rule: Iterative Bias Pruning (Brown et al., 2025) of the questions a trained-blind model
(`tst-rf` or `tst-lm`, experiments/tst.py) answers from the text alone, re-diagnosing what remains after each batch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

from .benchmarks.question import Benchmark, Question
from .errors import MirageError
from .runs import CONFIG, RESULTS, SKIPPED_KEY, read_rows, unique_rows

IMAGE_FREE = ("none", "text-model")
QUESTIONS = "questions.jsonl"
CURATION = "curation.json"


def _read_run(path: Path) -> tuple[dict, dict[str, dict[str, bool]]]:
    """config.json and {source: {question id: correct}} of a run directory, read only."""
    for f in (CONFIG, RESULTS):
        if not (path / f).is_file():
            raise FileNotFoundError(f"run {str(path)!r} has no {f}")
    config = json.loads((path / CONFIG).read_text())
    correct: dict[str, dict[str, bool]] = {}
    for r in unique_rows(read_rows(path / RESULTS, repair=False)):
        correct.setdefault(r["source"], {})[r["question_id"]] = bool(r["correct"])
    return config, correct


def needs_image(correct: dict[str, dict[str, bool]], blind: Sequence[str]) -> dict[str, dict]:
    """Per question the run has `real` for: {"real", "solved_by": the blind sources that got it right, "needs_image":
    right with the real image and wrong by every blind source}. Questions a blind source lacks do not qualify."""
    out = {}
    for qid, real in correct.get("real", {}).items():
        have = [s for s in blind if qid in correct.get(s, {})]
        solved = [s for s in have if correct[s][qid]]
        out[qid] = {"real": real, "solved_by": solved, "needs_image": real and not solved and len(have) == len(blind)}
    return out


def curate(runs: Sequence[str | Path], out: str | Path, min_runs: int | None = None,
           also: Sequence[str] = ()) -> dict:
    """Write OUT/questions.jsonl (+ OUT/images/) with the questions that need the image in at least `min_runs` of
    `runs` (default: all), judged by `none` and `text-model` where a run has them plus the sources in `also`; and
    OUT/curation.json. Returns curation.json's content."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise MirageError("curate: give at least one run directory")
    k = len(runs) if min_runs is None else min_runs
    if not 1 <= k <= len(runs):
        raise MirageError(f"--min-runs {k}: must be between 1 and the number of runs ({len(runs)})")
    verdicts, configs = {}, {}
    for path in runs:
        config, correct = _read_run(path)
        blind = [s for s in IMAGE_FREE if s in correct] + list(also)
        if "real" not in correct:
            raise MirageError(f"run {str(path)!r} has no `real` rows: run it with --conditions real,none,...")
        if not [s for s in IMAGE_FREE if s in correct]:
            raise MirageError(f"run {str(path)!r} has no image-free source (none, text-model): run it with "
                             "--conditions real,none and/or --text-model")
        missing = [s for s in also if s not in correct]
        if missing:
            raise MirageError(f"--also {','.join(missing)}: run {str(path)!r} has no rows of {', '.join(missing)}")
        verdicts[str(path)], configs[str(path)] = {"sources": blind, "questions": needs_image(correct, blind)}, config
    first = configs[str(runs[0])]
    for path, config in configs.items():
        if [config.get(k) for k in ("benchmark", "benchmark_sha256", "split")] != \
                [first.get(k) for k in ("benchmark", "benchmark_sha256", "split")]:
            raise MirageError(f"run {path!r} evaluated {config.get('benchmark')}/{config.get('split')}, run "
                             f"{str(runs[0])!r} {first.get('benchmark')}/{first.get('split')}: curate one benchmark")
    bench = run_benchmark(first)
    if bench.ref and Path(bench.ref.partition(":")[2]).parent == Path(out).resolve():
        raise MirageError(f"--out {str(out)!r} holds the benchmark being curated ({bench.ref.partition(':')[2]}): "
                          "write the new set to another --out")
    questions = {q.id: q for q in bench}
    qids = sorted({q for v in verdicts.values() for q in v["questions"]}, key=str)
    per_q = {}
    for qid in qids:
        runs_of = {p: v["questions"][qid] for p, v in verdicts.items() if qid in v["questions"]}
        count = sum(r["needs_image"] for r in runs_of.values())
        per_q[qid] = {"kept": count >= k, "needs_image_in": count,
                      "runs": {p: {"real": r["real"], "solved_by": r["solved_by"]} for p, r in runs_of.items()}}
    kept = [questions[q] for q in qids if per_q[q]["kept"] and q in questions]
    lost = [q for q in qids if per_q[q]["kept"] and q not in questions]
    if lost:
        raise MirageError(f"curate: {len(lost)} kept question(s) are not in benchmark {first.get('benchmark')!r} "
                         f"(first: {lost[0]!r})")
    out = Path(out)
    write_benchmark(out, kept, bench.prompt, bench.all_images)
    curation = {"runs": [{"path": p, "model": c.get("model"), "text_model": c.get("text_model"),
                          "image_free_sources": verdicts[p]["sources"]} for p, c in configs.items()],
                "benchmark": first.get("benchmark"), "split": first.get("split"), "min_runs": k,
                "n_evaluated": len(qids), "n_kept": len(kept), "questions": per_q}
    (out / CURATION).write_text(json.dumps(curation, indent=2) + "\n")
    return curation


def run_benchmark(config: dict) -> Benchmark:
    """The benchmark a run's config.json names (its split and loader options), loaded in full, less the questions
    the run skipped because an image of theirs cannot be decoded (its `skipped_unreadable`)."""
    from .benchmarks import load_benchmark
    from .report.questions import LOADER_OPTIONS

    if not config.get("benchmark"):
        raise MirageError("curate: the run's config.json names no benchmark")
    bench = load_benchmark(config["benchmark"], split=config.get("split"), check_images=False,
                           **{k: config[k] for k in LOADER_OPTIONS if config.get(k)})
    if config.get("benchmark_sha256") not in (None, bench.digest):
        raise MirageError(f"curate: {config['benchmark'][5:]} has changed since the run evaluated it (sha256 "
                          f"{config['benchmark_sha256'][:12]}... then, {bench.digest[:12]}... now)")
    return bench.skipping(config.get(SKIPPED_KEY, {}))


def write_benchmark(out: Path, questions: Sequence[Question], prompt: Callable[[Question], str],
                    all_images: bool = False) -> Path:
    """OUT/questions.jsonl in the `file:` format (benchmarks/local.py), each question with its image under OUT/images/
    (`all_images`: every image it is asked with, in order, as `images`; else its first) and the prompt its benchmark
    asked it with (`prompt`, which keeps the `<image>` markers), so a curated set is asked as the original."""
    images = out / "images"
    if images.exists():
        shutil.rmtree(images)  # a re-curation must not leave images of questions no longer kept
    images.mkdir(parents=True)
    lines = []
    for i, q in enumerate(questions):
        if q.kind != "mc":
            continue  # the file: format holds multiple-choice questions
        row = {"id": q.id, "question": q.text, "choices": list(q.choices), "answer": q.answer_letter,
               "type": q.type, "prompt": prompt(q)}
        if all_images and len(q.images) > 1:
            row["images"] = [f"images/{i:05d}-{k + 1}.png" for k in range(len(q.images))]
            for k, name in enumerate(row["images"]):
                q.image(k).save(out / name)
        elif q.images:
            name = f"images/{i:05d}.png"
            q.image(0).save(out / name)
            row["image"] = name
        lines.append(json.dumps(row, ensure_ascii=False))
    path = out / QUESTIONS
    path.write_text("".join(line + "\n" for line in lines))
    return path


# --- Iterative Bias Pruning (Brown et al., 2025, Algorithm 1) ---------------------------------------------------


def _amount(value: float, n: int, flag: str) -> int:
    """A count of questions given as a count (>= 1) or a fraction of `n` (< 1)."""
    if value <= 0:
        raise MirageError(f"--{flag} {value}: give a count of questions or a fraction of them (> 0)")
    return int(value) if value >= 1 else max(1, round(value * n))


def bias_pruning(questions: Sequence[Question], scores: dict[str, float] | None = None, budget: float = 0.5,
                 batch: float = 0.05, tau: float = 0.9, chance_stop: bool = True, folds: int = 5, seed: int = 0,
                 diagnose: Callable | None = None, forest=None) -> tuple[list[Question], list[dict], str]:
    """IBP as the paper's Algorithm 1: while fewer than the budget B are removed, re-diagnose what remains (bias
    scores s(x) of `diagnose(questions)`, a cross-fitted diagnostic refitted on the remaining questions: by default
    the forest with `forest`'s settings; round 0 may use `scores`, the run's own), stop early when max s(x) <= tau
    or (the paper's optional rule, `chance_stop`) when the trained-blind accuracy is near chance, else remove the
    min(b, B - R) questions of highest s(x).
    Near chance: in every question type, the 95% interval of the accuracy reaches chance (the paper diagnoses each
    question type with its own model; a bias confined to one type, ShapesQA's `prior` questions, would otherwise stop
    it while the type is still learnt, once the other types dilute the overall accuracy). With that rule, the batch
    (the paper's SelectBatch, which it leaves open: top-k, weighted or group-aware) is the highest s(x) among the
    types still above chance: a type at chance has no bias to remove, and its highest scores are the forest's noise.
    `budget` and `batch` are counts or fractions of the questions. Returns (kept, rounds, why it stopped)."""
    from .experiments.tst import ForestSettings, forest_diagnostic
    from .stats import accuracy_ci

    cross_fitted = diagnose or forest_diagnostic(folds, seed, forest or ForestSettings())

    def blind_accuracy(qs: list[Question], diag: dict) -> dict:
        acc, lo, hi = accuracy_ci([diag[q.id][1] for q in qs])
        return {"n": len(qs), "accuracy": round(acc, 4), "ci95": [round(lo, 4), round(hi, 4)],
                "chance": round(sum(1 / len(q.choices) for q in qs) / len(qs), 4)}

    remaining = list(questions)
    n = len(remaining)
    cap, step = _amount(budget, n, "budget"), _amount(batch, n, "batch")
    removed_total, rounds, why = 0, [], "budget"
    current = scores
    while True:
        diag = current if current is not None else cross_fitted(remaining)
        current = None
        s = {q.id: diag[q.id][0] for q in remaining}
        by_type = {t: blind_accuracy([q for q in remaining if q.type == t], diag)
                   for t in sorted({q.type for q in remaining}, key=str)}
        record = {"round": len(rounds)} | blind_accuracy(remaining, diag) | {
            "max_score": round(max(s.values()), 4), "by_type": by_type,
            "scores": {q: round(v, 4) for q, v in s.items()}, "removed": []}
        rounds.append(record)
        if removed_total >= cap:
            break
        if max(s.values()) <= tau:
            why = f"max s(x) <= tau ({tau})"
            break
        above = sorted((t for t, v in by_type.items() if v["ci95"][0] > v["chance"]), key=str)
        if chance_stop and not above:
            why = "trained-blind accuracy within chance in every question type"
            break
        if len(remaining) - min(step, cap - removed_total) < folds:
            why = "too few questions left to cross-fit"
            break
        k = min(step, cap - removed_total)
        candidates = [q for q in remaining if q.type in above] if chance_stop else remaining
        record["selected_from"] = above if chance_stop else "all"
        drop = sorted(candidates, key=lambda q: (-s[q.id], str(q.id)))[:k]
        record["removed"] = [q.id for q in drop]
        gone = set(record["removed"])
        remaining = [q for q in remaining if q.id not in gone]
        removed_total += k
    return remaining, rounds, why


def prune_tst(run: str | Path, out: str | Path, budget: float = 0.5, batch: float = 0.05, tau: float = 0.9,
              chance_stop: bool = True, diagnostic: str = "rf", model=None) -> dict:
    """`mirage curate --prune tst`: Iterative Bias Pruning of a run's questions with its trained-blind rows (from
    `mirage tst`) as round 0's bias scores, the same diagnostic refitted on what remains each round: `rf`, the
    forest (with the settings those rows were made with; a run from before the answer maps refits without them), or
    `lm`, LoRA on `model` (the LM the tst-lm rows tuned, loaded by the caller) with the rows' LoRA settings; writes
    the kept set as a `file:` benchmark (OUT/questions.jsonl, images/) and OUT/curation.json (every round: the
    questions removed, the scores, the trained-blind accuracy of what remained). Returns curation.json's content."""
    from .experiments.tst import (DIAGNOSTICS, ForestSettings, LoraSettings, forest_diagnostic, lora_diagnostic,
                                  read_state)

    if diagnostic not in DIAGNOSTICS:
        raise MirageError(f"--diagnostic {diagnostic!r}: give {' or '.join(DIAGNOSTICS)}")
    source = DIAGNOSTICS[diagnostic]
    path = Path(run)
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"run {str(path)!r} has no {CONFIG}")
    config = json.loads((path / CONFIG).read_text())
    rows = [r for r in read_rows(path / RESULTS, repair=False) if r["source"] == source]
    state = read_state(path).get(source)
    if not rows or state is None:
        raise MirageError(f"run {str(path)!r} has no {source} rows: run `mirage tst {path} --diagnostics "
                          f"{diagnostic}` first")
    bench = run_benchmark(config)
    by_id = {q.id: q for q in bench}
    lost = [r["question_id"] for r in rows if r["question_id"] not in by_id]
    if lost:
        raise MirageError(f"curate: {len(lost)} question(s) of the run are not in benchmark "
                          f"{config.get('benchmark')!r} (first: {lost[0]!r})")
    questions = [by_id[r["question_id"]] for r in rows]
    scores = {r["question_id"]: (r["probs"][by_id[r["question_id"]].answer], bool(r["correct"])) for r in rows}
    if diagnostic == "rf":
        forest = ForestSettings(**({"answer_maps": False} | {k: v for k, v in state["settings"].items()
                                                              if k in ForestSettings.__dataclass_fields__}))
        diagnose = forest_diagnostic(state["k"], state["seed"], forest)
    else:
        if model is None:
            raise MirageError("--diagnostic lm: give the LM the tst-lm rows tuned")
        lora = LoraSettings(**{k: v for k, v in state["settings"].items() if k in LoraSettings.__dataclass_fields__})
        diagnose = lora_diagnostic(model, bench, state["k"], state["seed"], lora)
    kept, rounds, why = bias_pruning(questions, scores, budget, batch, tau, chance_stop, state["k"], state["seed"],
                                     diagnose=diagnose)
    out = Path(out)
    write_benchmark(out, kept, bench.prompt, bench.all_images)
    removed = {q for r in rounds for q in r["removed"]}
    by_type: dict[str, dict[str, int]] = {}
    for q in questions:
        t = by_type.setdefault(q.type, {"n": 0, "removed": 0})
        t["n"] += 1
        t["removed"] += q.id in removed
    curation = {"method": "iterative bias pruning (Brown et al. 2025, Algorithm 1)", "run": str(path),
                "model": config.get("model"), "benchmark": config.get("benchmark"), "split": config.get("split"),
                "diagnostic": source, "diagnostic_settings": state["settings"], "folds": state["k"],
                "seed": state["seed"], "budget": budget, "batch": batch,
                "tau": tau, "chance_stop": chance_stop, "stopped": why, "n_evaluated": len(questions),
                "n_kept": len(kept), "removed_by_type": by_type, "rounds": rounds}
    (out / CURATION).write_text(json.dumps(curation, indent=2) + "\n")
    return curation
