"""`mirage saliency` and `mirage invert`: thin typer commands over `saliency.run_saliency` and
`inversion.run_inversion`. cli.py registers them: `app.command("saliency")(saliency_cmd)`,
`app.command("invert")(invert_cmd)`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def saliency_cmd(
    model: str = typer.Option("demo", help="Model spec: demo, demo:DIR or hf:<hub id or dir>."),
    benchmark: str = typer.Option("shapes", help="Benchmark name."),
    split: Optional[str] = typer.Option(None, help="Benchmark split (default: the benchmark's own)."),
    method: str = typer.Option("gradient", help="gradient, smoothgrad, ig (integrated gradients) or gxi."),
    per_encoder: bool = typer.Option(False, help="Also one map per encoder (gradient through it alone)."),
    limit: int = typer.Option(32, min=1, help="Maps for the first N questions with an image."),
    batch_size: int = typer.Option(8, min=1, help="Questions per attribution call (real and wrong together)."),
    seed: int = typer.Option(0, help="Seed of the wrong image and of smoothgrad's noise."),
    out: Path = typer.Option(..., help="Run directory (resumed if it exists with the same config)."),
    overwrite: bool = typer.Option(False, help="Discard an existing run in OUT."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, help="float32/fp32, bfloat16/bf16 or float16/fp16."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Saliency maps of the answer w.r.t. the pixels, real and wrong image, with the pointing game and
    energy-in-box on the target object; writes OUT/saliency.jsonl, OUT/saliency-summary.json and overlay PNGs."""
    from .benchmarks import load_benchmark
    from .cli import EXPECTED, _fail, console
    from .models import load_model, parse_dtype
    from .runs import RunDir
    from .saliency import SALIENCY_METHODS, SaliencyConfig, run_saliency, saliency_config

    try:
        parse_dtype(dtype)
        SALIENCY_METHODS.get(method)  # refused before anything is written
        cfg = SaliencyConfig(batch_size=batch_size, seed=seed)
        bench = load_benchmark(benchmark, split=split)  # whole: the wrong image is drawn over all its questions
        # neither the method nor the limit: several methods and a growing N share one run directory
        config = {"command": "saliency", "model": model, "benchmark": benchmark, "split": bench.split,
                  "dtype": dtype, "saliency": saliency_config(cfg)}
        run = RunDir.open(out, config, overwrite=overwrite)
        vlm = load_model(model, device=device, dtype=dtype)
        summary = run_saliency(vlm, bench, run, method, limit, per_encoder, batch_size, cfg, quiet)
    except EXPECTED as e:
        _fail(e)
    console.print(saliency_table(summary, f"saliency: {model} on {benchmark}/{bench.split}"))
    console.print(f"run directory: {out}")


def saliency_table(summary: dict, title: str):
    """Per source and question type: n, pointing game and energy-in-box (real / wrong image) beside the baseline."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("source", "type", "n", "pointing real", "pointing wrong", "energy real", "energy wrong",
                "random baseline"):
        table.add_column(col, justify="left" if col in ("source", "type") else "right")
    for source, per in summary.items():
        for qtype, f in per.items():
            table.add_row(source, qtype, str(f["n"]), f"{f['pointing_real']:.2f}", f"{f['pointing_wrong']:.2f}",
                          f"{f['energy_real']:.3f}", f"{f['energy_wrong']:.3f}", f"{f['baseline']:.3f}")
    return table


def invert_cmd(
    model: str = typer.Option("demo", help="Model spec: demo, demo:DIR or hf:<hub id or dir>."),
    benchmark: str = typer.Option("shapes", help="Benchmark name."),
    split: Optional[str] = typer.Option(None, help="Benchmark split (default: the benchmark's own)."),
    from_: Optional[Path] = typer.Option(None, "--from", help="Run directory holding the stage-1 features "
                                         "(artifacts/features-question/); default: optimize them into OUT."),
    encoders: Optional[str] = typer.Option(None, help="Invert through these encoders only, e.g. clip."),
    start: str = typer.Option("random", help="Stage 1 starts from random features (features-question) or from "
                              "the blank image's (features_blank-question)."),
    steps: int = typer.Option(100, min=1, help="Adam steps of stage 2."),
    lr: Optional[float] = typer.Option(None, min=0.0, help="Learning rate (default: the parameterization's)."),
    param: str = typer.Option("fourier", help="Pixel parameterization: fourier, sigmoid or raw."),
    tv: float = typer.Option(0.0, min=0.0, help="Weight of the total-variation penalty."),
    augment: bool = typer.Option(False, help="Random jitter, scale and rotation each step (kornia)."),
    limit: int = typer.Option(16, min=1, help="Invert the first N questions."),
    batch_size: int = typer.Option(16, min=1, help="Questions inverted together."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="Run directory (resumed if it exists with the same config)."),
    overwrite: bool = typer.Option(False, help="Discard an existing run in OUT."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, help="float32/fp32, bfloat16/bf16 or float16/fp16."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Two-stage inversion: pixels whose encoder features match per-question optimized features; the model is
    asked with them directly (source inversion) and from their saved PNG (inversion-png)."""
    from .benchmarks import load_benchmark
    from .cli import EXPECTED, _fail, _names, console
    from .display import summary_table
    from .inputs import check_encoders
    from .inversion import InversionConfig, run_inversion
    from .models import load_model, parse_dtype
    from .optimize import OptimizeConfig
    from .runs import RunDir
    from .stats import summarize

    try:
        parse_dtype(dtype)
        if from_ is not None and not (from_ / "config.json").is_file():
            raise FileNotFoundError(f"--from: {str(from_)!r} is not a run directory (no config.json)")
        cfg = InversionConfig(steps=steps, lr=lr, param=param, tv=tv, augment=augment, batch_size=batch_size,
                              start=start, seed=seed)
        bench = load_benchmark(benchmark, split=split)
        # the encoder subset names its rows' source, so several subsets share one run directory
        config = {"command": "invert", "model": model, "benchmark": benchmark, "split": bench.split,
                  "dtype": dtype, "from": str(from_) if from_ else None, "inversion": cfg.to_config()}
        vlm = load_model(model, device=device, dtype=dtype)
        check_encoders(vlm, _names(encoders), "--encoders")  # before the run directory is written
        run = RunDir.open(out, config, overwrite=overwrite)
        result = run_inversion(vlm, bench, run, limit, encoders=_names(encoders), targets_from=from_, cfg=cfg,
                               stage1=OptimizeConfig(seed=seed), quiet=quiet)
    except EXPECTED as e:
        _fail(e)
    summary = summarize(run.rows())
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{result['source']}: {model} on {benchmark}/{bench.split}"))
    for key in ("cos_start", "cos_end", "cos_real"):
        console.print(f"{key}: " + ", ".join(f"{e} {v:.3f}" for e, v in result[key].items()))
    console.print(f"run directory: {out}")
