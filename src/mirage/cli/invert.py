"""`mirage invert`: two-stage inversion of optimized features into pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (AllowEnvChange, BatchSize, BenchmarkName, DataDir, Device, Dtype, Encoders, Limit, Lr, Model, Out,
                     Overwrite, Param, Quiet, Seed, Split, Steps, benchmark_options, console, loading, names,
                     user_errors)


def invert_cmd(
    model: Model = "demo",
    benchmark: BenchmarkName = "shapes",
    split: Split = None,
    data_dir: DataDir = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="Run directory holding the stage-1 features "
                                                  "(artifacts/features-question/); default: optimize them into "
                                                  "OUT.")] = None,
    encoders: Encoders("Invert through these encoders only, e.g. clip.") = None,
    start: Annotated[str, typer.Option(help="Stage 1 starts from random features (features-question) or from the "
                                       "blank image's (features-question-from-blank).")] = "random",
    steps: Steps("Adam steps of stage 2.") = 100,
    lr: Lr("Learning rate (default: the parameterization's).") = None,
    param: Param("Pixel parameterization: fourier, sigmoid or raw.") = "fourier",
    tv: Annotated[float, typer.Option(min=0.0, help="Weight of the total-variation penalty.")] = 0.0,
    augment: Annotated[bool, typer.Option(help="Random jitter, scale and rotation each step (kornia).")] = False,
    limit: Limit("Invert the first N questions.", type=int) = 16,
    batch_size: BatchSize("Questions inverted together.") = 16,
    seed: Seed("Seed of the starts (stage 1 and 2) and of the augmentations.") = 0,
    out: Out = ...,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    dtype: Dtype = None,
    quiet: Quiet = False,
) -> None:
    """Two-stage inversion: pixels whose encoder features match per-question optimized features; the model is
    asked with them directly (source inversion) and from their saved PNG (inversion-png)."""
    from ..benchmarks import load_benchmark
    from ..display import summary_table
    from ..errors import MirageError
    from ..experiments.inversion import InversionConfig, run_inversion
    from ..inputs import check_encoders
    from ..models import load_model, parse_dtype
    from ..optimize import OptimizeConfig
    from ..runs import RunDir
    from ..stats import summarize

    with user_errors(out):
        with loading():
            parse_dtype(dtype)
        if from_ is not None and not (from_ / "config.json").is_file():
            raise MirageError(f"--from: {str(from_)!r} is not a run directory (no config.json)")
        cfg = InversionConfig(steps=steps, lr=lr, param=param, tv=tv, augment=augment, batch_size=batch_size,
                              start=start, seed=seed)
        with loading():
            bench_options = benchmark_options(benchmark, data_dir, None, False)
            bench = load_benchmark(benchmark, split=split, **bench_options)
        # the encoder subset names its rows' source, so several subsets share one run directory
        config = {"command": "invert", "model": model, **bench.identity(), "split": bench.split, **bench_options,
                  "dtype": dtype, "from": str(from_) if from_ else None, "inversion": cfg.to_config()}
        with loading():
            vlm = load_model(model, device=device, dtype=dtype)
        check_encoders(vlm, names(encoders), "--encoders")  # before the run directory is written
        run = RunDir.open(out, config, overwrite=overwrite, allow_env_change=allow_env_change)
        result = run_inversion(vlm, bench, run, limit, encoders=names(encoders), targets_from=from_, cfg=cfg,
                               stage1=OptimizeConfig(seed=seed), quiet=quiet)
    summary = summarize(run.rows())
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{result['source']}: {model} on {benchmark}/{bench.split}"))
    for key in ("cos_start", "cos_end", "cos_real"):
        console.print(f"{key}: " + ", ".join(f"{e} {v:.3f}" for e, v in result[key].items()))
    console.print(f"run directory: {out}")
