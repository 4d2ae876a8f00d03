"""`mirage optimize`: inputs that make the model answer without a real image, by `--input` through its runner."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .common import (AllQuestions, AllowEnvChange, AspectRatio, BatchSize, BenchmarkName, Compile, Conversation,
                     DataDir, Device, DeviceMap, Dtype, Encoders, GpusPerRank, ImageSize, InputKind, Limit, Lr, Method,
                     Model, Out, Overwrite, Param, Quiet, Seed, Split, Steps, Subjects, TextModel, benchmark_options, console,
                     finish, loading, model_options, names, open_run, scale_out, user_errors, write_timings)


def own_options(input: str, goal: str, target: Optional[str], patch_size: Optional[int], method: str) -> dict:
    """The options of inputs with their own experiment; one given to another input is refused by name."""
    given = {"patch": {"--goal": goal != "untargeted", "--target": target is not None, "--patch-size":
                       patch_size is not None}, "generator": {"--method": method != "reinforce"}}
    for owner, flags in given.items():
        for flag, set_ in flags.items():
            if set_ and input != owner:
                raise UsageError(f"{flag} applies to --input {owner}, not {input}")
    return {"patch": {"goal": goal, "target": target, "size": patch_size}, "generator": {"method": method}}.get(input, {})


def optimize_cmd(
    model: Model = "demo",
    benchmark: BenchmarkName = "shapes",
    split: Split = None,
    data_dir: DataDir = None,
    subjects: Subjects = None,
    all_questions: AllQuestions = False,
    input: InputKind("features, pixels, tokens, soft-prompt (free vectors in the text-only prompt, no image: the "
                     "control), patch or generator.") = "features",
    param: Param("Pixel parameterization: raw, sigmoid or fourier.") = "sigmoid",
    scope: Annotated[Optional[str], typer.Option(help="question (one input each) or universal (one for all); "
                                                 "default: universal for patch and generator, else question.")
                     ] = None,
    encoders: Encoders("Optimize through these encoders only, e.g. clip,dino.") = None,
    detach: Annotated[Optional[str], typer.Option(help="Encoders whose feature tensors stay frozen at their init.")
                      ] = None,
    objective: Annotated[str, typer.Option(help="ce (answer cross-entropy) or margin.")] = "ce",
    steps: Steps("Adam steps (per question, or universal steps).") = 50,
    lr: Lr("Learning rate (default: the input's).") = None,
    early_stop: Annotated[int, typer.Option(min=0, help="Stop a question once its margin held this many steps "
                                            "(0: off).")] = 3,
    train: Annotated[int, typer.Option(min=1, help="Universal: train on the first N questions, hold out the rest.")
                     ] = 500,
    accum: Annotated[int, typer.Option(min=1, help="Universal: mini-batches whose gradients are summed per step.")
                     ] = 1,
    limit: Limit("First N questions only.") = None,
    quantize: Annotated[bool, typer.Option(help="Pixels: optimize the 8-bit image (straight-through rounding).")
                        ] = False,
    resolution: Annotated[Optional[int], typer.Option(min=8, help="Pixels: image side (default: largest encoder "
                                                      "input).")] = None,
    soft_tokens: Annotated[Optional[int], typer.Option(min=1, help="Soft prompt: its vectors (default: as many as "
                                                       "the model's image tokens).")] = None,
    text_model: TextModel("Soft prompt: optimize it on this base LLM (hf:<id or dir>, or demo) instead of the VLM, "
                          "on the prompts as --model is asked them (rows soft-prompt-<scope>-text-model).") = None,
    goal: Annotated[str, typer.Option(help="Patch: untargeted (away from the answer) or targeted.")] = "untargeted",
    target: Annotated[Optional[str], typer.Option(help="Patch, targeted: a letter (e.g. B) or 'wrong'.")] = None,
    patch_size: Annotated[Optional[int], typer.Option(min=4, help="Patch: side in pixels (default: 64/336 of the "
                                                      "input).")] = None,
    method: Method("Generator: reinforce (policy gradient) or backprop (control).") = "reinforce",
    grad_checkpointing: Annotated[bool, typer.Option(help="Recompute activations in the backward pass.")] = False,
    offload_unused_encoders: Annotated[bool, typer.Option(help="Move encoders the input bypasses to the CPU.")
                                       ] = False,
    compile: Compile("torch.compile the model's layers (GPU: ~1.4x faster steps on 7B after a compile of ~10-20 s; "
                     "bench/RESULTS.md).") = False,
    dtype: Dtype = None,
    device_map: DeviceMap = None,
    image_size: ImageSize = None,
    image_aspect_ratio: AspectRatio = None,
    conversation: Conversation = None,
    gpus_per_rank: GpusPerRank = 1,
    seed: Seed("Seed of the inputs' starts and the training order.") = 0,
    batch_size: BatchSize("Questions optimized together, or auto: on a GPU the largest batch (and the memory "
                          "switches only where needed) that one measured step shows to fit; on the CPU 16.",
                          type=str, min=None) = "auto",
    memory: Annotated[Optional[float], typer.Option(min=0.0, help="--batch-size auto: GiB to fit in (default: the "
                                                    "GPU's free memory; on the CPU, measures a fit too).")] = None,
    out: Out = ...,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Optimize inputs that make the model answer without a real image; writes rows, artifacts and PNG re-checks."""
    from ..benchmarks import load_benchmark
    from ..display import summary_table
    from ..experiments import OptimizeSpec, apply_switches, own_loop, run_input
    from ..experiments.fit import AUTO, fit_batch, parse_batch_size
    from ..models import load_model, parse_dtype
    from ..optimize import OptimizeConfig
    from ..stats import summarize

    with user_errors(out):
        world, device, scale_options = scale_out(device, gpus_per_rank)
        quiet = quiet or not world.main
        with loading():
            parse_dtype(dtype)  # refused before anything is written
        own = own_options(input, goal, target, patch_size, method)
        spec = OptimizeSpec(input=input, scope=scope, param=param, encoders=names(encoders), detach=names(detach),
                            objective=objective, quantize=quantize, resolution=resolution, train=train,
                            soft_tokens=soft_tokens, options=own)
        if text_model and spec.input != "soft-prompt":
            raise UsageError(f"--text-model applies to --input soft-prompt, not {spec.input} (a text model takes no "
                             "image)")
        batch = parse_batch_size(batch_size)
        if memory is not None and batch != AUTO:
            raise UsageError("--memory applies to --batch-size auto")
        cfg = OptimizeConfig(steps=steps, lr=lr, batch_size=batch if batch != AUTO else 16, early_stop=early_stop,
                             seed=seed, accum=accum)
        with loading():
            bench = load_benchmark(benchmark, split=split, limit=limit,
                                   **benchmark_options(benchmark, data_dir, subjects, all_questions))
        spec_config = spec.to_config()
        if spec.scope == "question":
            spec_config.pop("train")  # only universal runs split the questions
        if spec.soft_tokens is None:
            spec_config.pop("soft_tokens")  # runs from before the soft prompt resume unchanged
        config = {"command": "optimize", "model": model, **bench.identity(), "split": bench.split, "limit": limit,
                  "n_questions": len(bench), "spec": spec_config, "steps": steps, "lr": lr,
                  "early_stop": early_stop, "seed": seed, "dtype": dtype, "batch_size": batch_size, "accum": accum,
                  "grad_checkpointing": grad_checkpointing, "offload_unused_encoders": offload_unused_encoders,
                  "compile": compile,
                  "data_dir": str(data_dir) if data_dir else None, "subjects": names(subjects),
                  "all_questions": all_questions, **model_options(device_map, image_size, image_aspect_ratio, conversation)}
        if text_model:
            config["text_model"] = text_model
        run = open_run(out, config, overwrite, world, allow_env_change)
        t0 = time.time()
        with loading():
            vlm = load_model(model, device=device, dtype=dtype, **scale_options,
                             **model_options(device_map, image_size, image_aspect_ratio, conversation))
        if text_model:  # the soft prompt on the base LLM: the VLM's prompts, as many vectors as its image tokens
            from ..models.text_lm import load_text_model

            with loading():
                lm = load_text_model(text_model, device=device or vlm.device, dtype=parse_dtype(dtype))
            bench = bench.for_model(vlm)
            spec = replace(spec, soft_tokens=spec.soft_tokens or getattr(vlm, "num_image_tokens", None))
            vlm = lm
        t1 = time.time()
        fit = None
        apply_switches(vlm, spec, compile=compile)  # first: auto then measures the compiled step the run will take
        if batch == AUTO and own_loop(spec.input) is None:  # patch and generator take no --batch-size
            fit = fit_batch(vlm, bench, spec, cfg, memory_gib=memory,
                            fixed=cfg.batch_size if spec.scope == "universal" else None,
                            grad_checkpointing=grad_checkpointing, offload=offload_unused_encoders)
            cfg, spec = replace(cfg, batch_size=fit.batch_size), fit.spec(spec, vlm)
            if world.main:
                console.print(fit.describe(), highlight=False)
        else:
            apply_switches(vlm, spec, grad_checkpointing, offload_unused_encoders)
        run_input(vlm, bench, spec, cfg, run, quiet=quiet, world=world)
        rows = finish(run, world)
    if not world.main:
        return
    write_timings(run, t1 - t0, time.time() - t1, world,
                  {"batch_size": cfg.batch_size, **({"auto": fit.record()} if fit else {})})
    summary = summarize(rows)
    run.write_json("summary.json", summary)
    console.print(summary_table(summary, title=f"{spec.source_for(vlm)}: {text_model or model} on "
                                               f"{benchmark}/{bench.split}"))
    console.print(f"run directory: {out}")
