"""`mirage study`: the default study on the bundled demo model and ShapesQA, one resumable run directory.

    mirage study      # 2 CPU cores: about 6.5 minutes (see bench/RESULTS.md for the measured table)

Parts: the six image conditions on the test split; per-question features (200 questions) and pixels (100, each
re-checked from its PNG); universal features and pixels (train 500, held out 500); per-question features through
one encoder at a time (100 each); gradient saliency maps with the pointing game (32); two-stage inversion of
blank-started per-question features into pixels (16, 100 steps). `limit` caps every part (universal: half train,
half held out); `steps` sets every loop's steps (inversion: twice as many).
The parts are data (`study_parts`: a list of named `Part`s), run by one loop over `RUNNERS`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .. import sources
from ..benchmarks import load_benchmark
from ..benchmarks.question import Benchmark
from ..conditions import parse_conditions
from ..evaluate import EvalResult, evaluate_conditions
from ..inputs import Reference
from ..models import load_model
from ..models.vlm import VLM
from ..optimize import OptimizeConfig
from ..runs import RunDir
from ..stats import summarize
from .inversion import InversionConfig, run_inversion
from .optimization import OptimizeSpec, run_optimization
from .saliency import run_saliency

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


@dataclass(frozen=True)
class Part:
    """One named part of a study (big_vision's config style): which experiment runs, on how many of the benchmark's
    first questions (None: all), with what settings. The name keys the part's time in timings.json."""

    name: str
    experiment: str  # a key of RUNNERS
    n: int | None = None
    settings: dict = field(default_factory=dict)


def study_parts(plan: StudyPlan, encoders: Sequence[str], seed: int = 0) -> list[Part]:
    """The default study as a list of named parts, in the order they run."""
    cfg = OptimizeConfig(steps=plan.steps, batch_size=plan.batch_size, seed=seed)
    ucfg = OptimizeConfig(steps=plan.universal_steps, batch_size=min(2 * plan.batch_size, plan.universal_train),
                          seed=seed)
    universal = plan.universal_train + plan.universal_heldout
    specs = [(OptimizeSpec("features"), plan.features_question, cfg),
             (OptimizeSpec("pixels"), plan.pixels_question, cfg),
             (OptimizeSpec("features", scope="universal", train=plan.universal_train), universal, ucfg),
             (OptimizeSpec("pixels", scope="universal", train=plan.universal_train), universal, ucfg)]
    specs += [(OptimizeSpec("features", encoders=[e]), plan.single_encoder, cfg) for e in encoders]
    return [Part("conditions", "conditions", settings={"conditions": plan.conditions, "seed": seed}),
            *(Part(spec.source, "optimization", n, {"spec": spec, "cfg": c}) for spec, n, c in specs),
            Part("saliency-gradient", "saliency", settings={"method": "gradient", "n": plan.saliency}),
            Part(sources.inversion(start="blank"), "inversion", settings={
                "n": plan.inversion, "steps": plan.inversion_steps, "cfg": InversionConfig(start="blank", seed=seed),
                "stage1": cfg})]


def _conditions(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, conditions: str,
                seed: int) -> None:
    evaluate_conditions(model, bench, parse_conditions(conditions), seed=seed, batch_size=32, run=run, quiet=quiet)


def _optimization(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool,
                  spec: OptimizeSpec, cfg: OptimizeConfig) -> None:
    run_optimization(model, bench, spec, cfg, run, ref, quiet)


def _saliency(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, **settings) -> None:
    run_saliency(model, bench, run, quiet=quiet, **settings)


def _inversion(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, **settings) -> None:
    run_inversion(model, bench, run, quiet=quiet, **settings)


# experiment -> runner(model, bench, run, ref, quiet, **settings): one call shape for every part
RUNNERS: dict[str, Callable[..., None]] = {"conditions": _conditions, "optimization": _optimization,
                                           "saliency": _saliency, "inversion": _inversion}


def run_study(model: str = "demo", benchmark: str = "shapes", split: str = "test", out: str | Path = "mirage-study",
              limit: int | None = None, steps: int = 50, seed: int = 0, batch_size: int = 16,
              device: str | None = None, overwrite: bool = False, quiet: bool = False) -> EvalResult:
    """Run every part of the study into `out` (resuming what is there); returns all rows and their summary."""
    plan = study_plan(limit, steps, batch_size)
    bench = load_benchmark(benchmark, split=split, limit=limit)
    config = {"command": "study", "model": model, "benchmark": benchmark, "split": split, "limit": limit,
              "n_questions": len(bench), "seed": seed, "plan": asdict(plan), "batch_size": batch_size}
    run = RunDir.open(out, config, overwrite=overwrite)
    vlm = load_model(model, device=device)
    timings: dict[str, float] = {}
    ref = None  # the optimized inputs' reference statistics, from the whole benchmark once the conditions ran
    for part in study_parts(plan, [s.name for s in vlm.encoders], seed):
        if part.experiment == "optimization" and ref is None:
            ref = Reference.from_benchmark(vlm, bench)
        t = time.time()
        RUNNERS[part.experiment](vlm, bench.subset(part.n), run, ref, quiet, **part.settings)
        timings[part.name] = time.time() - t
    summary = summarize(run.rows())
    run.write_json("summary.json", summary)
    run.log_invocation({"batch_size": batch_size, "parts": {k: round(v, 1) for k, v in timings.items()}})
    return EvalResult(run.rows(), summary)
