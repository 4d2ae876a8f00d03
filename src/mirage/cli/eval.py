"""`mirage eval`: a model on a benchmark under image conditions."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from .common import (AllQuestions, AllowEnvChange, AspectRatio, BatchSize, BenchmarkName, Circular, Compile, Config,
                     Conversation, DataDir, Device, DeviceMap, Dtype, GpusPerRank, ImageSize, Limit, Model, Out,
                     Overwrite, Prompt, Quiet, Seed, Split, Subjects, TextModel, benchmark_options, console, finish,
                     loading, model_options, names, open_run, scale_out, user_errors, write_timings)


def eval_cmd(
    model: Model = "demo",
    benchmark: BenchmarkName = "shapes",
    split: Split = None,
    conditions: Annotated[str, typer.Option(help="Comma-separated conditions (none: no image at all).")
                          ] = "real,none,blank,noise,wrong,blur,shuffle",
    limit: Limit("Evaluate the first N questions only.") = None,
    seed: Seed("Seed of the conditions (noise, wrong, shuffle).") = 0,
    batch_size: BatchSize("Questions per forward pass.") = 32,
    scoring: Annotated[str, typer.Option(help="letter (option-letter probabilities) or generate (parsed answer).")
                       ] = "letter",
    data_dir: DataDir = None,
    subjects: Subjects = None,
    all_questions: AllQuestions = False,
    config: Config = None,
    circular: Circular = False,
    out: Out = ...,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    dtype: Dtype = None,
    device_map: DeviceMap = None,
    image_size: ImageSize = None,
    image_aspect_ratio: AspectRatio = None,
    conversation: Conversation = None,
    gpus_per_rank: GpusPerRank = 1,
    compile: Compile("torch.compile the model's layers (GPU: ~1.3x faster letter scoring on 7B after ~30 s of "
                     "compiling; bench/RESULTS.md).") = False,
    text_model: TextModel("Base LLM scoring the same prompts as text (rows text-model, S_t): hf:<id or dir> (a "
                          "causal LM), or demo.") = None,
    prompt: Prompt = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a model on a benchmark under image conditions; writes OUT/results.jsonl and OUT/summary.json.
    Under `torchrun --nproc-per-node N -m mirage eval ...` the questions are sharded over the ranks."""
    from ..conditions import parse_conditions
    from ..display import blind_table, metrics_table, shuffle_table, summary_table
    from ..errors import UsageError
    from ..evaluate import (SCORINGS, TEXT_MODEL, eval_config, evaluate_conditions, evaluate_text_model,
                            summarize_conditions)
    from ..benchmarks import load_benchmark
    from ..models import load_model, parse_dtype
    from ..models.text_lm import check_text_model, load_text_model

    with user_errors(out):
        world, device, scale_options = scale_out(device, gpus_per_rank)
        quiet = quiet or not world.main
        with loading():
            parse_dtype(dtype)  # refused before anything is written
        conds = parse_conditions(conditions)
        check_text_model(text_model, model)
        if scoring not in SCORINGS:  # refused before the model loads
            raise UsageError(f"--scoring: unknown scoring {scoring!r} (allowed: {', '.join(SCORINGS)})")
        with loading():
            bench_options = benchmark_options(benchmark, data_dir, subjects, all_questions, config, circular)
            bench = load_benchmark(benchmark, split=split, limit=limit, **bench_options)
        if prompt != "model":  # an unknown variant, or one the benchmark lacks: refused before anything is written
            bench.with_prompt(prompt)
        run_config = eval_config(model, bench, conds, seed, limit, batch_size, scoring, text_model, prompt) | {
            "data_dir": str(data_dir) if data_dir else None, "subjects": names(subjects),
            "all_questions": all_questions,
            "dtype": dtype, **model_options(device_map, image_size, image_aspect_ratio, conversation)} | {
            k: v for k, v in bench_options.items() if k not in ("data_dir", "subjects", "all_questions")}
        run = open_run(out, run_config, overwrite, world, allow_env_change)
        t0 = time.time()
        with loading():
            vlm = load_model(model, device=device, dtype=dtype, **scale_options,
                             **model_options(device_map, image_size, image_aspect_ratio, conversation))
            lm = load_text_model(text_model, device=device or vlm.device, dtype=parse_dtype(dtype)) if text_model \
                else None
        t1 = time.time()
        bench = bench.with_prompt(prompt, vlm)
        if compile:  # a speed switch, not part of the run's identity
            from .. import compiling
            compiling.compile_blocks(vlm)
        evaluate_conditions(vlm, bench, conds, seed=seed, batch_size=batch_size, run=run, quiet=quiet,
                            scoring=scoring, world=world)
        if lm is not None:
            evaluate_text_model(lm, bench, seed=seed, batch_size=batch_size, run=run, quiet=quiet, scoring=scoring,
                                world=world)
        # the run's every source: a run grown by this call reports what it holds, not only what this call added
        held = parse_conditions(",".join(run.stored_config.get("conditions", [c.name for c in conds])))
        names_ = {c.name for c in held} | ({TEXT_MODEL} if run.stored_config.get("text_model") else set())
        rows = [r for r in finish(run, world) if r["source"] in names_]
    if not world.main:
        return
    write_timings(run, t1 - t0, time.time() - t1, world)
    summary = summarize_conditions(rows, bench, held)
    if "skipped_no_image" in summary:
        console.print(f"skipped, questions without an image: {summary['skipped_no_image']}")
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{model} on {benchmark}/{bench.split}"))
    if "circular" in summary:
        console.print(summary_table(summary["circular"], title="circular: correct only when every rotation is"))
    if "blind" in summary:
        console.print(blind_table(summary["blind"]))
    if "shuffle" in summary:
        console.print(shuffle_table(summary["shuffle"]))
    if "metrics" in summary:
        console.print(metrics_table(summary["metrics"]))
    console.print(f"run directory: {out}")
