"""`mirage study`: the default study on the bundled demo model and ShapesQA, one resumable run directory.

    mirage study      # 2 CPU cores: about 6.5 minutes (see bench/RESULTS.md for the measured table)

Parts: the six image conditions on the test split; per-question features (200 questions) and pixels (100, each
re-checked from its PNG); universal features and pixels (train 500, held out 500); per-question features through
one encoder at a time (100 each); gradient saliency maps with the pointing game (32); two-stage inversion of
blank-started per-question features into pixels (16, 100 steps). `limit` caps every part (universal: half train,
half held out); `steps` sets every loop's steps (inversion: twice as many).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .benchmarks import load_benchmark
from .conditions import parse_conditions
from .evaluate import EvalResult, evaluate_conditions
from .experiment import OptimizeSpec, run_optimization
from .inputs import Reference
from .inversion import InversionConfig, run_inversion
from .models import load_model
from .optimize import OptimizeConfig
from .runs import RunDir
from .saliency import run_saliency
from .stats import summarize

STUDY_CONDITIONS = "real,blank,noise,wrong,blur,shuffle"


@dataclass
class StudyPlan:
    """How many questions each part of the study uses."""

    conditions: str = STUDY_CONDITIONS
    features_question: int = 200
    pixels_question: int = 100
    universal_train: int = 500
    universal_heldout: int = 500
    single_encoder: int = 100
    steps: int = 50
    universal_steps: int = 50
    batch_size: int = 16
    saliency: int = 32  # gradient saliency maps (the cheapest method) with the pointing game
    inversion: int = 16  # two-stage inversion from blank-started per-question features
    inversion_steps: int = 100

    def capped(self, limit: int | None) -> "StudyPlan":
        if limit is None:
            return self
        train = min(self.universal_train, max(1, limit // 2))
        return StudyPlan(self.conditions, min(self.features_question, limit), min(self.pixels_question, limit),
                         train, min(self.universal_heldout, max(1, limit - train)), min(self.single_encoder, limit),
                         self.steps, self.universal_steps, self.batch_size, min(self.saliency, limit),
                         min(self.inversion, limit), self.inversion_steps)


def study_plan(limit: int | None = None, steps: int = 50, batch_size: int = 16) -> StudyPlan:
    """The parts' sizes for `--limit` and `--steps`: every count within `limit`, every loop's steps scale with
    `steps` (inversion's pixels take twice as many: 100 at the default 50)."""
    return StudyPlan(steps=steps, universal_steps=steps, inversion_steps=2 * steps, batch_size=batch_size).capped(limit)


def run_study(model: str = "demo", benchmark: str = "shapes", split: str = "test", out: str | Path = "mirage-study",
              limit: int | None = None, steps: int = 50, seed: int = 0, batch_size: int = 16,
              device: str | None = None, overwrite: bool = False, quiet: bool = False) -> EvalResult:
    """Run every part of the study into `out` (resuming what is there); returns all rows and their summary."""
    plan = study_plan(limit, steps, batch_size)
    conds = parse_conditions(plan.conditions)
    bench = load_benchmark(benchmark, split=split, limit=limit)
    config = {"command": "study", "model": model, "benchmark": benchmark, "split": split, "limit": limit,
              "n_questions": len(bench), "seed": seed, "plan": asdict(plan), "batch_size": batch_size}
    run = RunDir.open(out, config, overwrite=overwrite)
    vlm = load_model(model, device=device)
    timings: dict[str, float] = {}
    t0 = time.time()
    evaluate_conditions(vlm, bench, conds, seed=seed, batch_size=32, run=run, quiet=quiet)
    timings["conditions"] = time.time() - t0
    ref = Reference.from_benchmark(vlm, bench)
    cfg = OptimizeConfig(steps=plan.steps, batch_size=plan.batch_size, seed=seed)
    ucfg = OptimizeConfig(steps=plan.universal_steps, batch_size=min(2 * plan.batch_size, plan.universal_train),
                          seed=seed)
    parts = [(OptimizeSpec("features"), plan.features_question, cfg),
             (OptimizeSpec("pixels"), plan.pixels_question, cfg),
             (OptimizeSpec("features", scope="universal", train=plan.universal_train),
              plan.universal_train + plan.universal_heldout, ucfg),
             (OptimizeSpec("pixels", scope="universal", train=plan.universal_train),
              plan.universal_train + plan.universal_heldout, ucfg)]
    parts += [(OptimizeSpec("features", encoders=[s.name]), plan.single_encoder, cfg) for s in vlm.encoders]
    for spec, n, c in parts:
        t = time.time()
        run_optimization(vlm, bench.subset(n), spec, c, run, ref, quiet)
        timings[spec.source] = time.time() - t
    t = time.time()
    run_saliency(vlm, bench, run, "gradient", n=plan.saliency, quiet=quiet)
    timings["saliency-gradient"] = time.time() - t
    t = time.time()
    run_inversion(vlm, bench, run, n=plan.inversion, steps=plan.inversion_steps,
                  cfg=InversionConfig(start="blank", seed=seed), stage1=cfg, quiet=quiet)
    timings["inversion_blank"] = time.time() - t
    summary = summarize(run.rows())
    run.write_json("summary.json", summary)
    run.write_json("timings.json", {k: round(v, 1) for k, v in timings.items()})
    return EvalResult(run.rows(), summary)
