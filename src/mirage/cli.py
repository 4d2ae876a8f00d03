"""The `mirage` command line: a thin typer layer over the library."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .benchmarks import ImageLoadError, load_benchmark
from .display import summary_table
from .registry import UnknownNameError
from .runs import RunConfigMismatch

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="How much of a vision-language model's benchmark score needs a real image?")
console = Console(width=None if sys.stdout.isatty() else 130)  # logs and pipes get full tables
EXPECTED = (UnknownNameError, RunConfigMismatch, ImageLoadError, FileNotFoundError, ValueError)


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {err}", highlight=False)
    raise typer.Exit(2)


def _names(csv: Optional[str]) -> Optional[list[str]]:
    return [x.strip() for x in csv.split(",") if x.strip()] if csv else None


def _benchmark_options(name: str, data_dir: Optional[Path], subjects: Optional[str], all_questions: bool) -> dict:
    """The loader options a benchmark takes; a flag given to a benchmark that has no use for it is refused."""
    opts = {}
    if data_dir is not None:
        if name not in ("mmmu", "scienceqa"):
            raise ValueError(f"--data-dir applies to mmmu and scienceqa, not {name!r}")
        opts["data_dir"] = str(data_dir)
    if subjects:
        if name != "mmmu":
            raise ValueError(f"--subjects applies to mmmu, not {name!r}")
        opts["subjects"] = _names(subjects)
    if all_questions:
        if name != "scienceqa":
            raise ValueError(f"--all-questions applies to scienceqa, not {name!r}")
        opts["all_questions"] = True
    return opts


def _model_options(device_map: Optional[str], image_size: Optional[int]) -> dict:
    """Backend options from the command line (a backend that takes none of them refuses them by name)."""
    return {k: v for k, v in {"device_map": device_map, "image_size": image_size}.items() if v is not None}


def _scale_out(device: Optional[str], gpus_per_rank: int):
    """Under torchrun: this rank's world, its device (cuda:<local rank> by default) and, with several GPUs per
    rank, the GPUs the model is split over. A single process gets rank 0 of 1."""
    import torch

    from .distributed import init_world

    world = init_world()
    options = {}
    if torch.cuda.is_available() and device is None and (world.distributed or gpus_per_rank > 1):
        gpus = world.gpus(gpus_per_rank)
        device = f"cuda:{gpus[0]}"
        if len(gpus) > 1:
            options["gpus"] = gpus
    return world, device, options


def _open_run(out: Path, config: dict, overwrite: bool, world):
    from .distributed import ShardedRun
    from .runs import RunDir

    if world.distributed:
        return ShardedRun.open_shared(out, config, world, overwrite)
    return RunDir.open(out, config, overwrite=overwrite)


def _finish(run, world) -> list[dict]:
    """All rows of the run; under torchrun, rank 0 first merges every rank's rows into results.jsonl."""
    return run.merge() if world.distributed else run.rows()


def _write_timings(run, load_s: float, work_s: float, world) -> None:
    """timings.json: this invocation's model loading and work (a resumed run times only what it did), with the
    peak GPU memory of rank 0's devices."""
    import torch

    t = {"load_s": round(load_s, 1), "work_s": round(work_s, 1), "ranks": world.size}
    if torch.cuda.is_available():
        t["peak_gb"] = {i: round(torch.cuda.max_memory_allocated(i) / 2**30, 2)
                        for i in range(torch.cuda.device_count()) if torch.cuda.max_memory_allocated(i)}
    run.write_json("timings.json", t)


GPUS_HELP = "torchrun: GPUs per rank; the model is split over them (e.g. 8 GPUs as 4 ranks x 2)."
DTYPE_HELP = "float32/fp32, bfloat16/bf16 or float16/fp16 (default: bf16 on GPU, fp32 on CPU; demo: fp32)."
DEVICE_MAP_HELP = "hf: accelerate device map, e.g. auto (the default when several GPUs are visible)."
IMAGE_SIZE_HELP = "hf Qwen2-VL family: the fixed square resolution of optimized inputs (a multiple of 28; 448)."


@app.command("eval")
def eval_cmd(
    model: str = typer.Option("demo", help="Model spec: demo, demo:DIR or hf:<hub id or dir>."),
    benchmark: str = typer.Option("shapes", help="Benchmark name."),
    split: Optional[str] = typer.Option(None, help="Benchmark split (default: the benchmark's own; mmmu: validation)."),
    conditions: str = typer.Option("real,blank,noise,wrong,blur,shuffle", help="Comma-separated conditions."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate the first N questions only."),
    seed: int = typer.Option(0, help="Seed of the conditions (noise, wrong, shuffle)."),
    batch_size: int = typer.Option(32, min=1, help="Questions per forward pass."),
    scoring: str = typer.Option("letter", help="letter (option-letter probabilities) or generate (parsed answer)."),
    data_dir: Optional[Path] = typer.Option(None, help="mmmu/scienceqa: a local copy in the hub's layout."),
    subjects: Optional[str] = typer.Option(None, help="mmmu: comma-separated subjects."),
    all_questions: bool = typer.Option(False, help="scienceqa: include questions without an image."),
    out: Path = typer.Option(..., help="Run directory (resumed if it exists with the same config)."),
    overwrite: bool = typer.Option(False, help="Discard an existing run in OUT."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, help=DEVICE_MAP_HELP),
    image_size: Optional[int] = typer.Option(None, min=28, help=IMAGE_SIZE_HELP),
    gpus_per_rank: int = typer.Option(1, min=1, help=GPUS_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Evaluate a model on a benchmark under image conditions; writes OUT/results.jsonl and OUT/summary.json.
    Under `torchrun --nproc-per-node N -m mirage eval ...` the questions are sharded over the ranks."""
    from .conditions import parse_conditions
    from .evaluate import SCORINGS, eval_config, evaluate_conditions, summarize_conditions
    from .models import load_model, parse_dtype

    try:
        world, device, scale_options = _scale_out(device, gpus_per_rank)
        quiet = quiet or not world.main
        parse_dtype(dtype)  # refused before anything is written
        conds = parse_conditions(conditions)
        if scoring not in SCORINGS:  # refused before the model loads
            raise ValueError(f"--scoring: unknown scoring {scoring!r} (allowed: {', '.join(SCORINGS)})")
        bench = load_benchmark(benchmark, split=split, limit=limit,
                               **_benchmark_options(benchmark, data_dir, subjects, all_questions))
        config = eval_config(model, bench, conds, seed, limit, batch_size, scoring) | {
            "data_dir": str(data_dir) if data_dir else None, "subjects": _names(subjects), "all_questions": all_questions,
            "dtype": dtype, **_model_options(device_map, image_size)}
        run = _open_run(out, config, overwrite, world)
        t0 = time.time()
        vlm = load_model(model, device=device, dtype=dtype, **_model_options(device_map, image_size),
                         **scale_options)
        t1 = time.time()
        evaluate_conditions(vlm, bench, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet,
                            scoring=scoring, world=world)
        names = {c.name for c in conds}
        rows = [r for r in _finish(run, world) if r["source"] in names]
    except EXPECTED as e:
        _fail(e)
    if not world.main:
        return
    _write_timings(run, t1 - t0, time.time() - t1, world)
    summary = summarize_conditions(rows, bench, conds)
    if "skipped_no_image" in summary:
        console.print(f"skipped, questions without an image: {summary['skipped_no_image']}")
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{model} on {benchmark}/{bench.split}"))
    console.print(f"run directory: {out}")


@app.command()
def optimize(
    model: str = typer.Option("demo", help="Model spec."),
    benchmark: str = typer.Option("shapes"),
    split: Optional[str] = typer.Option(None, help="Benchmark split (default: the benchmark's own)."),
    data_dir: Optional[Path] = typer.Option(None, help="mmmu/scienceqa: a local copy in the hub's layout."),
    subjects: Optional[str] = typer.Option(None, help="mmmu: comma-separated subjects."),
    all_questions: bool = typer.Option(False, help="scienceqa: include questions without an image."),
    input: str = typer.Option("features", "--input", help="features, pixels, tokens, patch or generator."),
    param: str = typer.Option("sigmoid", help="Pixel parameterization: raw, sigmoid or fourier."),
    scope: str = typer.Option("question", help="question (one input each) or universal (one for all)."),
    encoders: Optional[str] = typer.Option(None, help="Optimize through these encoders only, e.g. clip,dino."),
    detach: Optional[str] = typer.Option(None, help="Encoders whose feature tensors stay frozen at their init."),
    objective: str = typer.Option("ce", help="ce (answer cross-entropy) or margin."),
    steps: int = typer.Option(50, min=1, help="Adam steps (per question, or universal steps)."),
    lr: Optional[float] = typer.Option(None, min=0.0, help="Learning rate (default: the input's)."),
    early_stop: int = typer.Option(3, min=0, help="Stop a question once its margin held this many steps (0: off)."),
    train: int = typer.Option(500, min=1, help="Universal: train on the first N questions, hold out the rest."),
    accum: int = typer.Option(1, min=1, help="Universal: mini-batches whose gradients are summed per step."),
    limit: Optional[int] = typer.Option(None, min=1, help="First N questions only."),
    quantize: bool = typer.Option(False, help="Pixels: optimize the 8-bit image (straight-through rounding)."),
    resolution: Optional[int] = typer.Option(None, min=8, help="Pixels: image side (default: largest encoder input)."),
    goal: str = typer.Option("untargeted", help="Patch: untargeted (away from the answer) or targeted."),
    target: Optional[str] = typer.Option(None, help="Patch, targeted: a letter (e.g. B) or 'wrong'."),
    patch_size: Optional[int] = typer.Option(None, min=4, help="Patch: side in pixels (default: 64/336 of the input)."),
    method: str = typer.Option("reinforce", help="Generator: reinforce (policy gradient) or backprop (control)."),
    grad_checkpointing: bool = typer.Option(False, help="Recompute activations in the backward pass."),
    offload_unused_encoders: bool = typer.Option(False, help="Move encoders the input bypasses to the CPU."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model's layers (GPU: ~1.4x faster "
                                 "steps on 7B after a compile of ~10-20 s; bench/RESULTS.md)."),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, help=DEVICE_MAP_HELP),
    image_size: Optional[int] = typer.Option(None, min=28, help=IMAGE_SIZE_HELP),
    gpus_per_rank: int = typer.Option(1, min=1, help=GPUS_HELP),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(16, min=1, help="Questions optimized together."),
    out: Path = typer.Option(..., help="Run directory (resumed if it exists with the same config)."),
    overwrite: bool = typer.Option(False),
    device: Optional[str] = typer.Option(None),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Optimize inputs that make the model answer without a real image; writes rows, artifacts and PNG re-checks."""
    from .experiment import OptimizeSpec, apply_switches, run_optimization
    from .models import load_model, parse_dtype
    from .optimize import OptimizeConfig
    from .stats import summarize

    try:
        world, device, scale_options = _scale_out(device, gpus_per_rank)
        quiet = quiet or not world.main
        parse_dtype(dtype)  # refused before anything is written
        own = {"patch": {"goal": goal, "target": target, "size": patch_size}, "generator": {"method": method}}
        spec = OptimizeSpec(input=input, scope=scope, param=param, encoders=_names(encoders), detach=_names(detach),
                            objective=objective, quantize=quantize, resolution=resolution, train=train,
                            options=own.get(input, {}))
        cfg = OptimizeConfig(steps=steps, lr=lr, batch_size=batch_size, early_stop=early_stop, seed=seed, accum=accum)
        bench = load_benchmark(benchmark, split=split, limit=limit,
                               **_benchmark_options(benchmark, data_dir, subjects, all_questions))
        spec_config = spec.to_config()
        if spec.scope == "question":
            spec_config.pop("train")  # only universal runs split the questions
        config = {"command": "optimize", "model": model, "benchmark": benchmark, "split": bench.split, "limit": limit,
                  "n_questions": len(bench), "spec": spec_config, "steps": steps, "lr": lr,
                  "early_stop": early_stop, "seed": seed, "dtype": dtype, "batch_size": batch_size, "accum": accum,
                  "grad_checkpointing": grad_checkpointing, "offload_unused_encoders": offload_unused_encoders,
                  "compile": compile,
                  "data_dir": str(data_dir) if data_dir else None, "subjects": _names(subjects),
                  "all_questions": all_questions, **_model_options(device_map, image_size)}
        run = _open_run(out, config, overwrite, world)
        t0 = time.time()
        vlm = load_model(model, device=device, dtype=dtype, **_model_options(device_map, image_size),
                         **scale_options)
        t1 = time.time()
        apply_switches(vlm, spec, grad_checkpointing, offload_unused_encoders, compile)
        run_optimization(vlm, bench, spec, cfg, run, quiet=quiet, world=world)
        rows = _finish(run, world)
    except EXPECTED as e:
        _fail(e)
    if not world.main:
        return
    _write_timings(run, t1 - t0, time.time() - t1, world)
    summary = summarize(rows)
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{spec.source}: {model} on {benchmark}/{bench.split}"))
    console.print(f"run directory: {out}")


@app.command()
def study(
    out: Path = typer.Option(Path("mirage-study"), help="Run directory."),
    model: str = typer.Option("demo", help="Model spec."),
    limit: Optional[int] = typer.Option(None, min=2, help="Cap every part at N questions (a quick look)."),
    steps: int = typer.Option(50, min=1, help="Adam steps of the optimized inputs."),
    batch_size: int = typer.Option(16, min=1, help="Questions optimized together."),
    overwrite: bool = typer.Option(False, help="Discard an existing run in OUT."),
    device: Optional[str] = typer.Option(None),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """The default study on ShapesQA: image conditions, per-question and universal optimized features and pixels
    (with PNG re-checks), and single-encoder feature runs; one table, one run directory."""
    from .study import run_study

    t0 = time.time()
    try:
        result = run_study(model=model, out=out, limit=limit, steps=steps, batch_size=batch_size, device=device,
                           overwrite=overwrite, quiet=quiet)
    except EXPECTED as e:
        _fail(e)
    console.print(summary_table(result.summary, title=f"mirage study: {model} on ShapesQA test"))
    console.print(f"run directory: {out}  ({time.time() - t0:.0f} s)")
    console.print(f"report: {_write_report(out)}")


@app.command("train-demo")
def train_demo_cmd(
    out: Path = typer.Option(..., help="Training directory (resumed if it holds a checkpoint)."),
    steps: int = typer.Option(5000, min=1),
    text_steps: int = typer.Option(800, min=0, help="Steps of text-only LM training first."),
    vision_steps: int = typer.Option(600, min=0, help="Then steps of dense-head vision pretraining."),
    batch_size: int = typer.Option(256, min=1),
    lr: float = typer.Option(5e-4, min=0.0),
    workers: int = typer.Option(4, min=0, help="Data worker processes."),
    init: Optional[Path] = typer.Option(None, help="Continue from this model directory (joint phase only)."),
    type_weights: Optional[str] = typer.Option(None, help="Training question mix, e.g. position=0.5,colour=0.1."),
    aux_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of row/column auxiliary questions."),
    eval_limit: int = typer.Option(1000, min=1, help="Test questions for the model card."),
    max_minutes: Optional[float] = typer.Option(None, min=0.0, help="Checkpoint and stop after this long."),
    device: Optional[str] = typer.Option(None),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train the demo VLM from scratch (resumable), then evaluate it on ShapesQA test and write its model card."""
    import torch

    from .benchmarks import Benchmark
    from .benchmarks.shapes import generate_questions
    from .evaluate import evaluate
    from .models.demo.card import write_card
    from .models.demo.modeling import DemoVLM
    from .models.demo.train import TrainConfig, train_demo
    from .progress import progress_bar

    try:
        weights = _parse_type_weights(type_weights) if type_weights else None
    except ValueError as e:
        _fail(e)
    if init is not None:
        text_steps = vision_steps = 0  # the phases before joint training were done by the stage that made `init`
    cfg = TrainConfig(steps=steps, text_steps=text_steps, vision_steps=vision_steps, batch_size=batch_size, lr=lr,
                      workers=workers, type_weights=weights, aux_fraction=aux_fraction,
                      init=str(init) if init else None)
    t0 = time.time()
    with progress_bar("training", steps, quiet) as advance:
        def on_step(step: int, rec: dict) -> None:
            advance(1)
            if "acc_real" in rec:  # a log line, not a progress bar: printed under --quiet too
                console.print(f"step {step}: val accuracy real {rec['acc_real']:.3f}, blank {rec['acc_blank']:.3f}")
        try:
            model_dir = train_demo(out, cfg, device=device, on_step=on_step,
                                   max_seconds=None if max_minutes is None else 60 * max_minutes)
        except ValueError as e:
            _fail(e)
    seconds = time.time() - t0
    if model_dir == out:
        console.print(f"stopped after {max_minutes} minutes; rerun the same command to resume")
        return
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    model = DemoVLM.from_pretrained(model_dir, device=dev)
    # Generated directly (same questions as the cached split), so no parquet cache is needed where training runs.
    test = Benchmark("shapes", "test", generate_questions("test", cfg.seed, eval_limit))
    result = evaluate(model, test, "real,blank", quiet=quiet)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    stages = json.loads((init / "training.json").read_text())["stages"] if init and (init / "training.json").exists() else []
    stages.append({"command": "mirage " + " ".join(sys.argv[1:]), "device": f"{dev} ({name})", "seconds": seconds,
                   "steps": steps})
    card = write_card(model_dir, stages, log, result.summary)
    console.print(summary_table(result.summary, title="demo model on ShapesQA test"))
    console.print(f"model: {model_dir}\ncard: {card}")


def _parse_type_weights(spec: str) -> dict[str, float]:
    """"position=0.5,colour=0.1" -> the benchmark's type mix with those weights replaced."""
    from .benchmarks.shapes.questions import TYPE_WEIGHTS
    from .registry import did_you_mean

    weights = dict(TYPE_WEIGHTS)
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in weights:
            raise ValueError(f"--type-weights: {did_you_mean('question type', name.strip(), list(weights))}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--type-weights: {part!r} is not NAME=NUMBER") from None
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"--type-weights: weights must be >= 0 and not all zero, got {weights}")
    return weights


def main() -> None:
    app()


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Run directory (config.json, results.jsonl, artifacts/)."),
    max_images: int = typer.Option(16, min=0, help="Images shown per gallery; the rest are counted, not shown."),
    questions: bool = typer.Option(True, help="Load the run's benchmark for question text and real images."),
    out: Optional[Path] = typer.Option(None, help="Where to write the page (default: RUN_DIR/report.html)."),
) -> None:
    """Write RUN_DIR/report.html: one self-contained page of the run's images, tables and plots (no model)."""
    path = _write_report(run_dir, out, max_images, questions)
    console.print(f"report: {path}  ({path.stat().st_size / 1e6:.1f} MB)")


def _write_report(run_dir: Path, out: Optional[Path] = None, max_images: int = 16, questions: bool = True) -> Path:
    from .report import write_report

    try:
        return write_report(run_dir, out, max_images=max_images, questions=questions)
    except EXPECTED as e:
        _fail(e)


def _register_analyses() -> None:
    """Analysis commands live in their own modules; registered here so `mirage --help` lists them."""
    from .analyses2_cli import transfer_cmd, transfer_types_cmd
    from .analyses_cli import invert_cmd, saliency_cmd

    app.command("saliency")(saliency_cmd)
    app.command("invert")(invert_cmd)
    app.command("transfer")(transfer_cmd)
    app.command("transfer-types")(transfer_types_cmd)


_register_analyses()
