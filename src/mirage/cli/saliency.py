"""`mirage saliency`: saliency maps of the answer w.r.t. the pixels, with the pointing game."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (AllowEnvChange, BatchSize, BenchmarkName, DataDir, Device, Dtype, Limit, Method, Model, Out,
                     Overwrite, Quiet, Seed, Split, benchmark_options, console, loading, user_errors)


def saliency_cmd(
    model: Model = "demo",
    benchmark: BenchmarkName = "shapes",
    split: Split = None,
    data_dir: DataDir = None,
    method: Method("gradient, smoothgrad, ig (integrated gradients) or gxi.") = "gradient",
    per_encoder: Annotated[bool, typer.Option(help="Also one map per encoder (gradient through it alone).")] = False,
    limit: Limit("Maps for the first N questions with an image.", type=int) = 32,
    batch_size: BatchSize("Questions per attribution call (real and wrong together).") = 8,
    seed: Seed("Seed of the wrong image and of smoothgrad's noise.") = 0,
    out: Out = ...,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    dtype: Dtype = None,
    quiet: Quiet = False,
) -> None:
    """Saliency maps of the answer w.r.t. the pixels, real and wrong image, with the pointing game and
    energy-in-box on the target object; writes OUT/saliency.jsonl, OUT/saliency-summary.json and overlay PNGs."""
    from ..benchmarks import load_benchmark
    from ..experiments.saliency import SALIENCY_METHODS, SaliencyConfig, run_saliency, saliency_config
    from ..models import load_model, parse_dtype
    from ..runs import RunDir

    with user_errors(out):
        with loading():
            parse_dtype(dtype)
        SALIENCY_METHODS.get(method)  # refused before anything is written
        cfg = SaliencyConfig(batch_size=batch_size, seed=seed)
        with loading():
            bench_options = benchmark_options(benchmark, data_dir, None, False)
            bench = load_benchmark(benchmark, split=split, **bench_options)  # whole: `wrong` draws over all of it
        # neither the method nor the limit: several methods and a growing N share one run directory
        config = {"command": "saliency", "model": model, **bench.identity(), "split": bench.split, **bench_options,
                  "dtype": dtype, "saliency": saliency_config(cfg)}
        run = RunDir.open(out, config, overwrite=overwrite, allow_env_change=allow_env_change)
        with loading():
            vlm = load_model(model, device=device, dtype=dtype)
        summary = run_saliency(vlm, bench, run, method, limit, per_encoder, batch_size, cfg, quiet)
    if any(per for per in summary.values()):
        console.print(saliency_table(summary, f"saliency: {model} on {benchmark}/{bench.split}"))
    elif not any(q.images for q in bench):
        console.print(f"no maps: none of the questions of {benchmark} has an image")
    else:  # the pointing game needs each question's target box, which only ShapesQA records
        console.print(f"no pointing-game figures: the questions of {benchmark} have no target box (ShapesQA's do); "
                      f"the maps are in {out / 'artifacts'}")
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
