"""`mirage study`: the default study on the bundled demo model and ShapesQA, one resumable run directory.

    mirage study      # 2 CPU cores: about 6.5 minutes (see bench/RESULTS.md for the measured table)

Parts: the six image conditions and `none` (no image at all) on the test split, with the demo's base LM on the same
prompts (`text-model`, for MMStar's S_t, MG and ML); per-question features (200 questions) and pixels (100, each
re-checked from its PNG); universal features and pixels (train 500, held out 500); per-question features through
one encoder at a time (100 each); gradient saliency maps with the pointing game (32); two-stage inversion of
blank-started per-question features into pixels (16). `limit` caps every part (universal: half train, half held out).
The parts are data (`study_parts`: a list of named `Part`s), run by one loop over `RUNNERS`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..benchmarks import load_benchmark
from ..benchmarks.question import Benchmark
from ..blind import blind_measures
from ..conditions import parse_conditions
from ..errors import loading_user_input
from ..evaluate import EvalResult, evaluate_conditions, evaluate_text_model
from ..inputs import Reference
from ..models import load_model
from ..models.vlm import VLM
from ..optimize import OptimizeConfig
from ..runs import RunDir
from ..stats import summarize
from .inversion import InversionConfig, run_inversion
from .optimization import OptimizeSpec, run_optimization
from .saliency import run_saliency

STUDY_CONDITIONS = "real,none,blank,noise,wrong,blur,shuffle"
DEMO_TEXT_MODEL = "demo"  # the demo's base LM (models/demo/weights/text-lm), scored when the model is the demo


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


@dataclass(frozen=True)
class Part:
    """One named part of a study (big_vision's config style): which experiment runs, on how many of the benchmark's
    first questions (None: all), with what settings. The name keys the part's time in timings.json."""

    name: str
    experiment: str  # a key of RUNNERS
    n: int | None = None
    settings: dict = field(default_factory=dict)


def study_parts(plan: StudyPlan, encoders: Sequence[str], seed: int = 0, text_model: str | None = None) -> list[Part]:
    """The default study as a list of named parts, in the order they run (`text_model`: its base LM's part)."""
    cfg = OptimizeConfig(steps=plan.steps, batch_size=plan.batch_size, seed=seed)
    ucfg = OptimizeConfig(steps=plan.universal_steps, batch_size=min(2 * plan.batch_size, plan.universal_train),
                          seed=seed)
    universal = plan.universal_train + plan.universal_heldout
    specs = [(OptimizeSpec("features"), plan.features_question, cfg),
             (OptimizeSpec("pixels"), plan.pixels_question, cfg),
             (OptimizeSpec("features", scope="universal", train=plan.universal_train), universal, ucfg),
             (OptimizeSpec("pixels", scope="universal", train=plan.universal_train), universal, ucfg)]
    specs += [(OptimizeSpec("features", encoders=[e]), plan.single_encoder, cfg) for e in encoders]
    base_lm = [Part("text-model", "text_model", settings={"spec": text_model, "seed": seed})] if text_model else []
    return [Part("conditions", "conditions", settings={"conditions": plan.conditions, "seed": seed}), *base_lm,
            *(Part(spec.source, "optimization", n, {"spec": spec, "cfg": c}) for spec, n, c in specs),
            Part("saliency-gradient", "saliency", settings={"method": "gradient", "n": plan.saliency}),
            Part("inversion_blank", "inversion", settings={
                "n": plan.inversion, "steps": plan.inversion_steps, "cfg": InversionConfig(start="blank", seed=seed),
                "stage1": cfg})]


def _conditions(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, conditions: str,
                seed: int) -> None:
    evaluate_conditions(model, bench, parse_conditions(conditions), seed=seed, batch_size=32, run=run, quiet=quiet)


def _text_model(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, spec: str,
                seed: int) -> None:
    from ..models.text_lm import load_text_model

    evaluate_text_model(load_text_model(spec, device=model.device), bench, seed=seed, batch_size=32, run=run,
                        quiet=quiet)


def _optimization(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool,
                  spec: OptimizeSpec, cfg: OptimizeConfig) -> None:
    run_optimization(model, bench, spec, cfg, run, ref, quiet)


def _saliency(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, **settings) -> None:
    run_saliency(model, bench, run, quiet=quiet, **settings)


def _inversion(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, **settings) -> None:
    run_inversion(model, bench, run, quiet=quiet, **settings)


# experiment -> runner(model, bench, run, ref, quiet, **settings): one call shape for every part
RUNNERS: dict[str, Callable[..., None]] = {"conditions": _conditions, "text_model": _text_model,
                                           "optimization": _optimization,
                                           "saliency": _saliency, "inversion": _inversion}


def run_study(model: str = "demo", benchmark: str = "shapes", split: str = "test", out: str | Path = "mirage-study",
              limit: int | None = None, steps: int = 50, seed: int = 0, batch_size: int = 16,
              device: str | None = None, overwrite: bool = False, quiet: bool = False,
              allow_env_change: bool = False) -> EvalResult:
    """Run every part of the study into `out` (resuming what is there); returns all rows and their summary."""
    plan = StudyPlan(steps=steps, universal_steps=steps, batch_size=batch_size).capped(limit)
    with loading_user_input():
        bench = load_benchmark(benchmark, split=split, limit=limit)
    text_model = DEMO_TEXT_MODEL if model == "demo" else None  # shipped weights only: demo:DIR has its own LM
    config = {"command": "study", "model": model, "benchmark": benchmark, "split": split, "limit": limit,
              "n_questions": len(bench), "seed": seed, "plan": asdict(plan), "batch_size": batch_size,
              "text_model": text_model}
    run = RunDir.open(out, config, overwrite=overwrite, allow_env_change=allow_env_change)
    with loading_user_input():
        vlm = load_model(model, device=device)
    timings: dict[str, float] = {}
    ref = None  # the optimized inputs' reference statistics, from the whole benchmark once the conditions ran
    for part in study_parts(plan, [s.name for s in vlm.encoders], seed, text_model):
        if part.experiment == "optimization" and ref is None:
            ref = Reference.from_benchmark(vlm, bench)
        t = time.time()
        RUNNERS[part.experiment](vlm, bench.subset(part.n), run, ref, quiet, **part.settings)
        timings[part.name] = time.time() - t
    summary = summarize(run.rows())
    summary["blind"] = blind_measures(run.rows())
    run.write_json("summary.json", summary)
    run.write_json("timings.json", {k: round(v, 1) for k, v in timings.items()})
    return EvalResult(run.rows(), summary)
