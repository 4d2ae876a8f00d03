"""Curation, as MMStar kept only the questions its LLMs could not answer without the image: from one or more runs
(one per model), the questions answered right with the real image and wrong by every image-free source (`none`,
`text-model`, optionally `blank`/`noise`...) in every run (or in `min_runs` of them), written as a `file:` JSONL
benchmark with the images beside it, and `curation.json` saying which sources solved each question in which run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

from .benchmarks.question import Benchmark, Question
from .errors import MirageError
from .runs import CONFIG, RESULTS, read_rows, unique_rows

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
    write_benchmark(out, kept, bench.prompt)
    curation = {"runs": [{"path": p, "model": c.get("model"), "text_model": c.get("text_model"),
                          "image_free_sources": verdicts[p]["sources"]} for p, c in configs.items()],
                "benchmark": first.get("benchmark"), "split": first.get("split"), "min_runs": k,
                "n_evaluated": len(qids), "n_kept": len(kept), "questions": per_q}
    (out / CURATION).write_text(json.dumps(curation, indent=2) + "\n")
    return curation


def run_benchmark(config: dict) -> Benchmark:
    """The benchmark a run's config.json names (its split and loader options), loaded in full."""
    from .benchmarks import load_benchmark
    from .report.questions import LOADER_OPTIONS

    if not config.get("benchmark"):
        raise MirageError("curate: the run's config.json names no benchmark")
    bench = load_benchmark(config["benchmark"], split=config.get("split"),
                           **{k: config[k] for k in LOADER_OPTIONS if config.get(k)})
    if config.get("benchmark_sha256") not in (None, bench.digest):
        raise MirageError(f"curate: {config['benchmark'][5:]} has changed since the run evaluated it (sha256 "
                          f"{config['benchmark_sha256'][:12]}... then, {bench.digest[:12]}... now)")
    return bench


def write_benchmark(out: Path, questions: Sequence[Question], prompt: Callable[[Question], str]) -> Path:
    """OUT/questions.jsonl in the `file:` format (benchmarks/local.py), each question with its first image under
    OUT/images/ and the prompt its benchmark asked it with (`prompt`), so a curated set is asked as the original."""
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
        if q.images:
            name = f"images/{i:05d}.png"
            q.image(0).save(out / name)
            row["image"] = name
        lines.append(json.dumps(row, ensure_ascii=False))
    path = out / QUESTIONS
    path.write_text("".join(line + "\n" for line in lines))
    return path
