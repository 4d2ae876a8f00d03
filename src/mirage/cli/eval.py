"""`mirage eval`: a model on a benchmark under image conditions."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from .common import (AllQuestions, BenchmarkName, DataDir, Device, DeviceMap, Dtype, GpusPerRank, ImageSize, Model, Out,
                     Overwrite, Quiet, Split, Subjects, benchmark_options, console, finish, loading, model_options,
                     names, open_run, scale_out, user_errors, write_timings)


def eval_cmd(
    model: Model = "demo",
    benchmark: BenchmarkName = "shapes",
    split: Split = None,
    conditions: Annotated[str, typer.Option(help="Comma-separated conditions.")] = "real,blank,noise,wrong,blur,shuffle",
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate the first N questions only.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the conditions (noise, wrong, shuffle).")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per forward pass.")] = 32,
    scoring: Annotated[str, typer.Option(help="letter (option-letter probabilities) or generate (parsed answer).")
                       ] = "letter",
    data_dir: DataDir = None,
    subjects: Subjects = None,
    all_questions: AllQuestions = False,
    out: Out = ...,
    overwrite: Overwrite = False,
    device: Device = None,
    dtype: Dtype = None,
    device_map: DeviceMap = None,
    image_size: ImageSize = None,
    gpus_per_rank: GpusPerRank = 1,
    quiet: Quiet = False,
) -> None:
    """Evaluate a model on a benchmark under image conditions; writes OUT/results.jsonl and OUT/summary.json.
    Under `torchrun --nproc-per-node N -m mirage eval ...` the questions are sharded over the ranks."""
    from ..conditions import parse_conditions
    from ..display import summary_table
    from ..errors import UsageError
    from ..evaluate import SCORINGS, eval_config, evaluate_conditions, summarize_conditions
    from ..benchmarks import load_benchmark
    from ..models import load_model, parse_dtype

    with user_errors(out):
        world, device, scale_options = scale_out(device, gpus_per_rank)
        quiet = quiet or not world.main
        with loading():
            parse_dtype(dtype)  # refused before anything is written
        conds = parse_conditions(conditions)
        if scoring not in SCORINGS:  # refused before the model loads
            raise UsageError(f"--scoring: unknown scoring {scoring!r} (allowed: {', '.join(SCORINGS)})")
        with loading():
            bench = load_benchmark(benchmark, split=split, limit=limit,
                                   **benchmark_options(benchmark, data_dir, subjects, all_questions))
        config = eval_config(model, bench, conds, seed, limit, batch_size, scoring) | {
            "data_dir": str(data_dir) if data_dir else None, "subjects": names(subjects), "all_questions": all_questions,
            "dtype": dtype, **model_options(device_map, image_size)}
        run = open_run(out, config, overwrite, world)
        t0 = time.time()
        with loading():
            vlm = load_model(model, device=device, dtype=dtype, **model_options(device_map, image_size),
                             **scale_options)
        t1 = time.time()
        evaluate_conditions(vlm, bench, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet,
                            scoring=scoring, world=world)
        names_ = {c.name for c in conds}
        rows = [r for r in finish(run, world) if r["source"] in names_]
    if not world.main:
        return
    write_timings(run, t1 - t0, time.time() - t1, world)
    summary = summarize_conditions(rows, bench, conds)
    if "skipped_no_image" in summary:
        console.print(f"skipped, questions without an image: {summary['skipped_no_image']}")
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{model} on {benchmark}/{bench.split}"))
    console.print(f"run directory: {out}")
