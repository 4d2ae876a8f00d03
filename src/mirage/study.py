"""`mirage study`: the default study on the bundled demo model and ShapesQA (grows with later analyses)."""

from __future__ import annotations

from pathlib import Path

from .benchmarks import load_benchmark
from .conditions import parse_conditions
from .evaluate import EvalResult, eval_config, evaluate_conditions
from .models import load_model
from .runs import RunDir
from .stats import summarize

STUDY_CONDITIONS = "real,blank,noise,wrong,blur,shuffle"


def run_study(model: str = "demo", benchmark: str = "shapes", split: str = "test", out: str | Path = "mirage-study",
              limit: int | None = None, seed: int = 0, batch_size: int = 32, device: str | None = None,
              overwrite: bool = False, quiet: bool = False) -> EvalResult:
    """The six image conditions on `benchmark`; writes a resumable run directory at `out`.

    `mirage study` on 2 CPU cores: demo model, ShapesQA test (1,000 questions x 6 conditions).
    """
    conds = parse_conditions(STUDY_CONDITIONS)
    bench = load_benchmark(benchmark, split=split, limit=limit)
    config = eval_config(model, bench, conds, seed, limit, batch_size) | {"command": "study"}
    run = RunDir.open(out, config, overwrite=overwrite)
    vlm = load_model(model, device=device)
    rows = evaluate_conditions(vlm, bench, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet)
    summary = summarize(rows)
    run.write_json("summary.json", summary)
    return EvalResult(rows, summary)
