"""`mirage tst`: trained-blind baselines (Test-set Stress-Test) of a run's benchmark, added to the run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (AllowEnvChange, BatchSize, Device, Dtype, Limit, Lr, Quiet, Seed, TextModel, console, finish,
                     loading, names, user_errors, write_timings)


def tst_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (from `mirage eval` or a study's benchmark).")],
    diagnostics: Annotated[str, typer.Option(help="rf (random forest on the text), lm (LoRA-tuned LM), or both.")
                           ] = "rf,lm",
    folds: Annotated[int, typer.Option(min=2, help="k of the k-fold cross-fitting.")] = 5,
    seed: Seed("Seed of the fold assignment, the forest and the adapters.") = 0,
    limit: Limit("The run's first N questions only.") = None,
    text_model: TextModel("Tune this causal LM (hf:<id or dir>, demo: the demo's base LM) instead of the run's "
                          "model's own LM.") = None,
    epochs: Annotated[int, typer.Option(min=1, help="tst-lm: epochs over the training folds.")] = 5,
    lr: Lr("tst-lm: peak learning rate (cosine, 10% warm-up).") = 2e-4,
    lora_rank: Annotated[int, typer.Option(min=1, help="tst-lm: LoRA rank (alpha = 2 x rank).")] = 8,
    batch_size: BatchSize("tst-lm: questions per training step.") = 32,
    grad_checkpointing: Annotated[Optional[bool], typer.Option(
        "--grad-checkpointing/--no-grad-checkpointing",
        help="tst-lm: recompute the LM's activations in backward. Default: only for the batches whose step does not "
             "fit the memory without it, measured.")] = None,
    memory: Annotated[Optional[float], typer.Option(min=0.0, help="tst-lm: GiB that choice fits in (default: the "
                                                    "GPU's free memory; on the CPU, measures a fit too).")] = None,
    device: Device = None,
    dtype: Dtype = None,
    allow_env_change: AllowEnvChange = False,
    quiet: Quiet = False,
) -> None:
    """Cross-fitted blind models (no image): every question answered by a random forest on the text (tst-rf) and an
    LM LoRA-tuned on the text (tst-lm) that never trained on it; rows into RUN_DIR, resumable fold by fold, and the
    trained-blind measures into its summary.json. Under torchrun the folds are spread over the ranks."""
    from ..curate import run_benchmark
    from ..display import blind_table
    from ..errors import MirageError
    from ..evaluate import summarize_conditions
    from ..experiments.tst import DIAGNOSTICS, LoraSettings, run_tst
    from ..models import load_model, parse_dtype
    from ..models.text_lm import load_text_model
    from ..runs import CONFIG, SUMMARY
    from .common import open_run, scale_out

    with user_errors(run_dir):
        chosen = names(diagnostics) or []
        unknown = [d for d in chosen if d not in DIAGNOSTICS]
        if unknown or not chosen:
            raise MirageError(f"--diagnostics {diagnostics!r}: give rf, lm or rf,lm")
        if memory is not None and grad_checkpointing is not None:
            raise MirageError("--memory applies to the automatic choice of gradient checkpointing: give --memory "
                              "or --grad-checkpointing/--no-grad-checkpointing, not both")
        if not (run_dir / CONFIG).is_file():
            raise FileNotFoundError(f"run {str(run_dir)!r} has no {CONFIG}: make it with `mirage eval` first")
        config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
        world, device, scale_options = scale_out(device, 1)
        quiet = quiet or not world.main
        run = open_run(run_dir, {k: v for k, v in config.items() if k not in ("libraries", "environment",
                                                                             "environment_changes")},
                       False, world, allow_env_change)
        with loading():
            parse_dtype(dtype)
            bench = run_benchmark(config).subset(config.get("n_questions"))
        bench = bench.subset(limit)
        t0 = time.time()
        lm = model = None
        if "lm" in chosen:
            with loading():
                if text_model:
                    lm = load_text_model(text_model, device=device, dtype=parse_dtype(dtype))
                else:
                    model = load_model(config["model"], device=device, dtype=dtype, **scale_options)
        t1 = time.time()
        run_tst(model, bench, run, chosen, folds, seed, lm=lm, lm_name=text_model,
                lora=LoraSettings(epochs=epochs, lr=lr, rank=lora_rank, batch_size=batch_size,
                                  checkpointing=grad_checkpointing, memory_gib=memory), quiet=quiet,
                world=world)
        rows = finish(run, world)
    if not world.main:
        return
    write_timings(run, t1 - t0, time.time() - t1, world)
    summary_path = run_dir / SUMMARY
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    summary |= summarize_conditions(rows, bench, [])
    run.write_json(SUMMARY, summary)
    if "blind" in summary:
        console.print(blind_table(summary["blind"]))
    console.print(f"run directory: {run_dir}")
