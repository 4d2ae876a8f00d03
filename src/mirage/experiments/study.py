"""`mirage study`: the whole study of one model on several benchmarks, one resumable study directory.

    mirage study      # the demo preset: the demo model on ShapesQA; 2 CPU cores: 5-6.5 minutes (bench/RESULTS.md)
    mirage study --model hf:DIR --benchmark mmstar,scienceqa --preset quick --out runs/q

Per benchmark: the image conditions and `none` (no image at all), with a base LM on the same prompts as text
(`text-model`, for MMStar's S_t, MG and ML; by default the demo's own base LM for the demo); per-question features
and pixels (each re-checked from its PNG); universal features and pixels with a held-out split; per-question features
through one encoder at a time (models with several encoders); gradient saliency maps; two-stage inversion. Sizes come
from a preset (`presets.py`), capped by `limit`; `steps` sets every loop's steps (inversion's pixels: twice as many).
The parts are data (`study_parts`: a list of named `Part`s), run by one loop over `RUNNERS`. The directory holds the
study's config.json and summary.json (each benchmark's summary and the cross-benchmark table) and one run directory
per benchmark.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

from .. import sources
from ..benchmarks import load_benchmark
from ..benchmarks.question import Benchmark
from ..blind import CRAFTED, MEASURES, SHUFFLE_MEASURES, SOURCES, run_difference, text_only_match
from ..conditions import parse_conditions
from ..distributed import SINGLE, World, open_run
from ..errors import loading_user_input
from ..evaluate import evaluate_conditions, evaluate_text_model, summarize_conditions
from ..inputs import Reference
from ..models import load_model
from ..models.text_lm import DEMO_TEXT_LM, check_text_model, load_text_model
from ..models.vlm import VLM
from ..optimize import OptimizeConfig
from ..progress import warn
from ..runs import RunDir
from ..sources import parse_source
from ..stats import paired_difference
from .inversion import InversionConfig, run_inversion
from .optimization import OptimizeSpec, most_images, run_optimization
from .presets import preset as preset_config
from .saliency import run_saliency
from .tst import LoraSettings, run_tst

STUDY_CONDITIONS = "real,none,blank,noise,wrong,blur,shuffle,image-only,both"
DEMO_TEXT_MODEL = "demo"  # the demo's base LM (models/demo/weights/text-lm), scored when the model is the demo


@dataclass
class StudyPlan:
    """How many questions each part of the study uses (None: all the benchmark's), and the loop settings."""

    conditions: str = STUDY_CONDITIONS
    condition_questions: int | None = None
    features_question: int = 200
    pixels_question: int = 100
    universal_train: int = 500
    universal_heldout: int = 500
    single_encoder: int = 100
    saliency: int = 32  # gradient saliency maps (the cheapest method), with the pointing game where boxes exist
    inversion: int = 16  # two-stage inversion from blank-started per-question features
    # the soft-prompt control: free vectors in the text-only prompt, the crafted inputs' optimizer, steps and seeds
    soft_prompt_question: int = 100
    soft_prompt_universal: bool = True  # on the universal inputs' split (the same held-out questions)
    soft_prompt_text_model: bool = False  # also on the base LLM (with a text model), as many vectors
    steps: int = 50
    universal_steps: int = 50
    inversion_steps: int = 100
    batch_size: int = 16
    tst_rf: int | None = None  # trained blind (TsT), cross-fitted: the random forest's questions (None: all)
    tst_lm: int | None = 200  # the LoRA-tuned LM's questions (the base LM's when the study has one, else the VLM's)
    tst_folds: int = 5
    tst_epochs: int = 2  # the demo's (presets: quick and paper 5, the paper's)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "StudyPlan":
        """The plan of preset `name` (its `expected` numbers and other notes left out), with `overrides`."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in preset_config(name).items() if k in known} | overrides)

    def capped(self, limit: int | None, kept: dict | None = None) -> "StudyPlan":
        """Every part at most `limit` questions (universal: half train, half held out). `kept`: the plan of the
        study made before in the same directory (its config.json's), whose `KEPT` sizes a larger --limit keeps:
        the universal inputs' train split (the new questions are held out) and the trained-blind parts' questions
        (cross-fitted: every row depends on every question's fold). The other sizes grow (`GROWS`)."""
        plan = self
        if limit is not None:
            train = min(self.universal_train, max(1, limit // 2))
            cap = {k: min(getattr(self, k), limit) for k in ("features_question", "pixels_question", "single_encoder",
                                                             "saliency", "inversion", "soft_prompt_question")}
            cap |= {k: min(getattr(self, k) or limit, limit) for k in ("tst_rf", "tst_lm")}
            plan = replace(self, condition_questions=min(self.condition_questions or limit, limit),
                           universal_train=train, universal_heldout=min(self.universal_heldout,
                                                                        max(1, limit - train)), **cap)
        if kept:
            plan = replace(plan, **{k: kept[k] for k in KEPT if k in kept})
            if limit is not None:
                plan = replace(plan, universal_heldout=min(self.universal_heldout,
                                                           max(1, limit - plan.universal_train)))
        return plan


# A study grown by a larger --limit (the same directory): the sizes that grow with it, each part taking its new
# questions and keeping its rows, and those its first call fixed (`StudyPlan.capped`).
GROWS = ("condition_questions", "features_question", "pixels_question", "universal_heldout", "single_encoder",
         "saliency", "inversion", "soft_prompt_question")
KEPT = ("universal_train", "tst_rf", "tst_lm")


def _stored_plan(out: Path, overwrite: bool) -> dict | None:
    """The plan in the study directory's config.json (None: none yet, unreadable, or --overwrite)."""
    import json

    try:
        return None if overwrite else json.loads((out / "config.json").read_text(encoding="utf-8")).get("plan")
    except (OSError, ValueError, AttributeError):  # open_run says what is wrong with it
        return None


@dataclass(frozen=True)
class Part:
    """One named part of a study (big_vision's config style): which experiment runs, on how many of the benchmark's
    first questions (None: all), with what settings. The name keys the part's time in timings.json."""

    name: str
    experiment: str  # a key of RUNNERS
    n: int | None = None
    settings: dict = field(default_factory=dict)


def study_parts(plan: StudyPlan, encoders: Sequence[str], seed: int = 0, text_model: str | None = None,
                soft_prompts: bool = True) -> list[Part]:
    """The study as a list of named parts, in the order they run (parts of size 0 left out; single-encoder runs
    only for a model with several encoders; `text_model`: its base LM's part, on the conditions' questions;
    the VLM's soft-prompt parts only where its text path takes soft prompts: `soft_prompts`)."""
    cfg = OptimizeConfig(steps=plan.steps, batch_size=plan.batch_size, seed=seed)
    ucfg = OptimizeConfig(steps=plan.universal_steps, batch_size=min(2 * plan.batch_size, plan.universal_train),
                          seed=seed)
    universal = plan.universal_train + plan.universal_heldout
    specs = [(OptimizeSpec("features"), plan.features_question, cfg),
             (OptimizeSpec("pixels"), plan.pixels_question, cfg),
             (OptimizeSpec("features", scope="universal", train=plan.universal_train), universal, ucfg),
             (OptimizeSpec("pixels", scope="universal", train=plan.universal_train), universal, ucfg)]
    # the soft-prompt control: the same configs (optimizer steps, lr rule, early stop, seeds) as the crafted inputs
    soft = [(OptimizeSpec("soft-prompt"), plan.soft_prompt_question, cfg),
            (OptimizeSpec("soft-prompt", scope="universal", train=plan.universal_train),
             universal if plan.soft_prompt_universal else 0, ucfg)]
    specs += soft if soft_prompts else []
    if len(encoders) > 1:
        specs += [(OptimizeSpec("features", encoders=[e]), plan.single_encoder, cfg) for e in encoders]
    base_lm = [Part("text-model", "text_model", plan.condition_questions, {"spec": text_model, "seed": seed})
               ] if text_model else []
    parts = [Part("conditions", "conditions", plan.condition_questions,
                  {"conditions": plan.conditions, "seed": seed}), *base_lm,
             *(Part(spec.source, "optimization", n, {"spec": spec, "cfg": c}) for spec, n, c in specs if n),
             *(Part(sources.optimized(spec.input, spec.scope, text_model=True), "text_model_optimization", n,
                    {"spec": spec, "cfg": c, "lm": text_model})
               for spec, n, c in soft if n and text_model and plan.soft_prompt_text_model),
             Part("saliency-gradient", "saliency", settings={"method": "gradient", "n": plan.saliency}),
             Part(sources.inversion(start="blank"), "inversion", settings={
                 "n": plan.inversion, "steps": plan.inversion_steps,
                 "cfg": InversionConfig(start="blank", seed=seed), "stage1": cfg}),
             Part(sources.TST_RF, "tst", plan.tst_rf, {"diagnostics": ("rf",), "folds": plan.tst_folds, "seed": seed}),
             Part(sources.TST_LM, "tst", plan.tst_lm, {"diagnostics": ("lm",), "folds": plan.tst_folds, "seed": seed,
                                                       "text_model": text_model, "epochs": plan.tst_epochs})]
    return [p for p in parts if p.n != 0 and p.settings.get("n", 1) != 0]


def _conditions(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, world: World,
                conditions: str, seed: int) -> None:
    evaluate_conditions(model, bench, parse_conditions(conditions), seed=seed, batch_size=32, run=run, quiet=quiet,
                        world=world)


@functools.lru_cache(maxsize=1)  # one base LM for every benchmark of a study
def _base_lm(spec: str, device: str) -> VLM:
    return load_text_model(spec, device=device)


def _text_model(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, world: World,
                spec: str, seed: int) -> None:
    evaluate_text_model(_base_lm(spec, str(model.device)), bench, seed=seed, batch_size=32, run=run, quiet=quiet,
                        world=world)


def _tst(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, world: World,
         diagnostics: Sequence[str], folds: int, seed: int, text_model: str | None = None, epochs: int = 5) -> None:
    # tst-lm tunes the study's base LM (the zero-shot S_t's) when it has one, else the VLM's own LM (S_wv's)
    if len(bench) < 2 * folds:  # a --limit too small to cross-fit
        if world.main and not quiet:
            warn(f"{bench.name}: {len(bench)} questions are too few for {folds}-fold trained-blind rows; skipped")
        return
    lm = _base_lm(text_model, str(model.device)) if text_model and "lm" in diagnostics else None
    run_tst(model, bench, run, diagnostics, folds, seed, lm=lm, lm_name=text_model, lora=LoraSettings(epochs=epochs),
            quiet=quiet, world=world)


def _optimization(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, world: World,
                  spec: OptimizeSpec, cfg: OptimizeConfig) -> None:
    run_optimization(model, bench, spec, cfg, run, ref, quiet, world)


def _text_model_optimization(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool,
                             world: World, spec: OptimizeSpec, cfg: OptimizeConfig, lm: str) -> None:
    """An input optimized on the base LM (the soft prompt), on the prompts as the VLM is asked them, with as many
    vectors as the VLM's image tokens."""
    spec = replace(spec, soft_tokens=spec.soft_tokens or getattr(model, "num_image_tokens", None))
    run_optimization(_base_lm(lm, str(model.device)), bench.for_model(model), spec, cfg, run, ref, quiet, world)


def _main_only(runner: Callable[..., object]) -> Callable[..., None]:
    """A part that does not shard yet: rank 0 runs it, the other ranks wait for it."""
    def run_part(model: VLM, bench: Benchmark, run: RunDir, ref: Reference | None, quiet: bool, world: World,
                 **settings) -> None:
        if world.main:
            runner(model, bench, run, quiet=quiet, **settings)
        world.barrier()
    return run_part


# experiment -> runner(model, bench, run, ref, quiet, world, **settings): one call shape for every part
RUNNERS: dict[str, Callable[..., None]] = {"conditions": _conditions, "text_model": _text_model,
                                           "optimization": _optimization,
                                           "text_model_optimization": _text_model_optimization,
                                           "tst": _tst, "saliency": _main_only(run_saliency),
                                           "inversion": _main_only(run_inversion)}


def benchmark_dir(name: str) -> str:
    """The sub-directory of benchmark `name` in a study directory (`file:path/x.jsonl` -> `file_x`)."""
    kind, sep, path = name.partition(":")
    if sep and kind in ("file", "spec"):
        name = f"{kind}_{Path(path).stem}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def best_crafted(summary: dict, rows: Sequence[dict]) -> dict | None:
    """The optimized input with the highest accuracy (held-out rows; `-train` rows and the soft-prompt control left
    out), and its paired difference from `real` on the questions both have. None when the run has no optimized
    input."""
    crafted = [s for s in summary["n"] if parse_source(s).group in ("optimized", "single-encoder")
               and parse_source(s).suffix != "train" and parse_source(s).input != sources.SOFT_PROMPT]
    if not crafted:
        return None
    best = max(crafted, key=lambda s: (summary["accuracy"][s], summary["n"][s]))  # ties: the one on more questions
    correct = {}
    for r in rows:
        if r["source"] in (best, "real"):
            correct.setdefault(r["source"], {})[r["question_id"]] = bool(r["correct"])
    out = {"source": best, "n": summary["n"][best], "value": summary["accuracy"][best],
           "ci95": summary["ci95"][best]}
    if "real" in correct:
        shared = sorted(correct[best].keys() & correct["real"].keys(), key=str)
        diff = paired_difference([correct[best][q] for q in shared], [correct["real"][q] for q in shared])
        out["vs_real"] = {"n": len(shared), "difference": diff["difference"], "ci95": diff["ci95"],
                          "p": diff["mcnemar"]["p"]}
    return out


def _measure(summary: dict, name: str, source: str) -> dict | None:
    # summary.json's `blind` block where the run has one; S_v (real) is also a plain accuracy
    if name in (summary.get("blind") or {}):
        return summary["blind"][name]
    if name == "S_v" and source in summary["n"]:
        return {"n": summary["n"][source], "value": summary["accuracy"][source], "ci95": summary["ci95"][source]}
    return None


def table_row(name: str, directory: str, summary: dict) -> dict:
    """One benchmark's line of the cross-benchmark table, read off its summary.json: MMStar's measures, the
    shuffle decomposition (overall; `shuffle`, without its per-type blocks), the best crafted input."""
    line = {"benchmark": name, "dir": directory, "n_questions": summary.get("n_questions")}
    for m in MEASURES:
        line[m] = _measure(summary, m, SOURCES.get(m))
    shuffle = summary.get("shuffle")
    line["shuffle"] = {k: v for k, v in shuffle.items() if k in (*SHUFFLE_MEASURES, "chance")} if shuffle else None
    line["best_crafted"] = summary.get("best_crafted")
    # universal crafted inputs' gains over blank (paired), for blind.text_only_match across benchmarks
    gains = {s: {"n": p["blank"]["n"], "difference": p["blank"]["difference"], "ci95": p["blank"]["ci95"]}
             for s, p in summary.get("paired", {}).items() if "blank" in p and _universal_crafted(s)}
    if gains:
        line["universal_gain"] = gains
    if summary.get("no_images"):
        line["no_images"] = True
    return line


def _universal_crafted(source: str) -> bool:
    info = parse_source(source)
    return (info.group == "optimized" and info.input in CRAFTED and info.scope == "universal" and info.suffix is None
            and not info.text_model)


@dataclass
class StudyResult:
    """Each benchmark's summary (by benchmark name) and the cross-benchmark table."""

    path: Path
    summaries: dict[str, dict]
    table: list[dict]
    prompts: dict | None = None  # two prompt variants: each benchmark's measures, second minus first

    @property
    def summary(self) -> dict:
        """Each benchmark's summary, the cross-benchmark table, `prompts` (two prompt variants) and, with a benchmark
        that has no image at all, `text_only_match` (its universal crafted gains beside the vision benchmarks')."""
        matches = text_only_match(self.table)
        return {"benchmarks": self.summaries, "table": self.table, **({"prompts": self.prompts} if self.prompts
                                                                          else {}),
                **({"text_only_match": matches} if matches else {})}


def prompt_dir(directory: str, variant: str) -> str:
    """The run directory of a benchmark's measures in a study's second prompt variant."""
    return f"{directory}.prompt-{variant}"


def _rows(run: RunDir, world: World) -> list[dict]:
    return run.merge() if world.distributed else run.rows()


def run_study(model: str = "demo", benchmarks: str | Sequence[str] = "shapes", preset: str = "demo",
              out: str | Path = "mirage-study", limit: int | None = None, split: str | None = None,
              options: dict[str, dict] | None = None, steps: int | None = None, seed: int = 0,
              batch_size: int | None = None, device: str | None = None, load_options: dict | None = None,
              text_model: str | None = None, overwrite: bool = False, quiet: bool = False,
              world: World = SINGLE, allow_env_change: bool = False,
              prompts: str | Sequence[str] | None = None) -> StudyResult:
    """Run (or resume) every part of the study of `model` on each of `benchmarks` into `out`, one run directory per
    benchmark, then summary.json (each benchmark's summary, the cross-benchmark table). `options`: loader options by
    benchmark; `text_model`: the base LM for S_t (the demo's own for `demo`); `load_options`: to `load_model`.
    `prompts`: the prompt variant the study asks in (`Benchmark.with_prompt`), or two ("lmms-eval,model"): the
    study in the first, its conditions and text model again in the second (`<dir>.prompt-<second>/`), and every
    measure's difference, second minus first, with a paired interval (summary.json's `prompts`)."""
    names = [b.strip() for b in benchmarks.split(",")] if isinstance(benchmarks, str) else list(benchmarks)
    variants = [v.strip() for v in prompts.split(",")] if isinstance(prompts, str) else list(prompts or [])
    if len(variants) > 2 or len(set(variants)) < len(variants) or "" in variants:
        from ..errors import UsageError

        raise UsageError(f"--prompt: one variant, or two different ones to compare, not {','.join(variants)!r}")
    # `steps` sets every loop's steps, inversion's included (the presets give inversion twice the others' steps; the
    # README promises every loop bounded by --steps)
    overrides = {k: v for k, v in {"steps": steps, "universal_steps": steps,
                                  "inversion_steps": steps,
                                  "batch_size": batch_size}.items() if v is not None}
    plan = StudyPlan.from_preset(preset, **overrides).capped(limit, _stored_plan(Path(out), overwrite))
    check_text_model(text_model, model)
    options = options or {}
    with loading_user_input():
        benches = {name: load_benchmark(name, split=split, limit=limit, **options.get(name, {})) for name in names}
        for bench in benches.values():  # a variant a benchmark lacks is refused before any work
            for v in variants:
                if v != "model":
                    bench.with_prompt(v)
    dirs = {name: benchmark_dir(name) for name in names}
    if len(set(dirs.values())) < len(dirs):
        from ..errors import UsageError

        raise UsageError(f"--benchmark: two benchmarks share a sub-directory name ({', '.join(names)})")
    if text_model is None and model == "demo" and (DEMO_TEXT_LM / "config.json").is_file():
        # shipped weights only (demo:DIR has its own LM); a checkout without the base LM's weights runs without S_t
        text_model = DEMO_TEXT_MODEL
    out = Path(out)
    load_options = load_options or {}
    identity = {k: v for k, v in load_options.items() if k != "gpus"}  # where the model runs is not the run's identity
    config = {"command": "study", "model": model, "benchmarks": names, "dirs": dirs, "preset": preset,
              "text_model": text_model, "split": split, "limit": limit, "options": options, "seed": seed,
              "plan": asdict(plan), "batch_size": plan.batch_size, **identity,
              **({"prompt": variants} if variants else {})}  # only when given: older studies still resume
    grows = {"plan": GROWS}  # a larger --limit: more questions per part (`StudyPlan.capped`)
    study = open_run(out, config, world, overwrite, allow_env_change, grows)
    bench_config = {name: {
        "command": "study", "model": model, **bench.identity(), "split": bench.split, "limit": limit,
        "n_questions": len(bench), "seed": seed, "plan": asdict(plan), "batch_size": plan.batch_size,
        "preset": preset, "text_model": text_model, **options.get(name, {}), **identity}
        for name, bench in benches.items()}
    runs = {name: open_run(out / dirs[name], bench_config[name] | ({"prompt": variants[0]} if variants else {}),
                           world, overwrite, allow_env_change, grows)  # every benchmark's directory checked first
            for name in names}
    second = {name: open_run(out / prompt_dir(dirs[name], variants[1]), bench_config[name] | {"prompt": variants[1]},
                             world, overwrite, allow_env_change, grows)
              for name in names} if len(variants) == 2 else {}
    if world.main:  # timings.json records this call from now on, whether it finishes or not
        for run in [*runs.values(), *second.values()]:
            run.start_invocation({"batch_size": plan.batch_size})
    with loading_user_input():
        vlm = load_model(model, device=device, **load_options)
    parts = study_parts(plan, [s.name for s in vlm.encoders], seed, text_model, vlm.soft_prompts)
    if not vlm.soft_prompts and world.main and not quiet and (plan.soft_prompt_question or plan.soft_prompt_universal):
        warn(f"{type(vlm).__name__}'s text path takes no soft prompt yet: the study's soft-prompt control is left out")
    if variants:
        benches = {name: bench.with_prompt(variants[0], vlm) for name, bench in benches.items()}
    summaries, timings, differences = {}, {}, {}
    for name, bench in benches.items():
        timings[name] = run_parts(vlm, bench, runs[name], parts, quiet or not world.main, world)
        rows = _rows(runs[name], world)
        summaries[name] = summarize_conditions(rows, bench, parse_conditions(plan.conditions))
        summaries[name] |= {"n_questions": len(bench), "best_crafted": best_crafted(summaries[name], rows)}
        if world.main:  # timings.json keeps every invocation (a resumed study adds to it)
            runs[name].write_json("summary.json", summaries[name])
            log = runs[name].log_invocation({"batch_size": plan.batch_size, "parts": timings[name]})
            timings[name] = log["total"].get("parts", {})  # the study's timings: every invocation's, summed
        if name in second:  # the measures again in the second prompt, and their differences
            again = [p for p in parts if p.experiment in ("conditions", "text_model")]
            took = run_parts(vlm, bench.with_prompt(variants[1], vlm), second[name], again, quiet or not world.main,
                             world)
            rows_b = _rows(second[name], world)
            if world.main:
                second[name].write_json("summary.json", summarize_conditions(rows_b, bench, parse_conditions(
                    plan.conditions)))
                second[name].log_invocation({"batch_size": plan.batch_size, "parts": took})
            differences[name] = run_difference(rows, rows_b)
    result = StudyResult(out, summaries, [table_row(n, dirs[n], summaries[n]) for n in names],
                         {"variants": variants, "dirs": {n: prompt_dir(dirs[n], variants[1]) for n in names},
                          "difference": differences} if len(variants) == 2 else None)
    if world.main:
        study.write_json("summary.json", result.summary)
        study.write_json("timings.json", timings)
    return result


ONE_IMAGE = ("saliency", "inversion")  # parts built for one image per question (the rest take several)


def run_parts(model: VLM, bench: Benchmark, run: RunDir, parts: Sequence[Part], quiet: bool = True,
              world: World = SINGLE) -> dict[str, float]:
    """Each part on its first questions of `bench` into `run` (resuming what it holds); seconds per part."""
    ref = None  # the optimized inputs' reference statistics, from the benchmark's first real images
    timings = {}
    k, many = most_images(bench)
    for part in parts:
        if k > 1 and part.experiment in ONE_IMAGE:
            if world.main and not quiet:
                warn(f"{bench.name}: question {many.id!r} is asked with {k} images; the {part.name} part is built "
                     "for one image per question and is left out")
            continue
        if part.experiment == "optimization" and ref is None:
            ref = Reference.from_benchmark(model, bench)
        t = time.time()
        RUNNERS[part.experiment](model, bench.subset(part.n), run, ref, quiet, world, **part.settings)
        timings[part.name] = round(time.time() - t, 1)
        run.tick(parts=timings)  # timings.json: the parts this call finished, should it be interrupted
    return timings


def study(model: str = "demo", benchmarks: str | Sequence[str] = "shapes", preset: str = "demo", **kwargs) -> dict:
    """The Python API of `mirage study`: run (or resume) the study and return its summary (each benchmark's
    summary and the cross-benchmark table), as summary.json holds it. `kwargs` as `run_study`'s."""
    return run_study(model, benchmarks, preset, **kwargs).summary


__all__ = ["Part", "RUNNERS", "StudyPlan", "StudyResult", "benchmark_dir", "best_crafted", "run_parts", "run_study",
           "study", "study_parts", "table_row"]
