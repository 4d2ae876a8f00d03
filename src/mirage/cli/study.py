"""`mirage study`: the whole study of a model on several benchmarks, one study directory and its report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (AllowEnvChange, AspectRatio, BatchSize, Conversation, DataDirs, Device, DeviceMap, Dtype,
                     GpusPerRank, ImageSize, Limit, Model, Overwrite, Quiet, Seed, Split, Steps, TextModel, console,
                     data_dirs, loading, model_options, names, scale_out, user_errors)
from .report import write_page


def study_cmd(
    model: Model = "demo",
    benchmark: Annotated[str, typer.Option(help="Comma-separated benchmarks, e.g. mmstar,scienceqa.")] = "shapes",
    preset: Annotated[str, typer.Option(help="Sizes of every part: demo, quick or paper (experiments/presets.py).")
                      ] = "demo",
    limit: Limit("Cap every part at N questions (a quick look).", min=2) = None,
    out: Annotated[Path, typer.Option(help="Study directory (one sub-directory per benchmark).")
                   ] = Path("mirage-study"),
    split: Split = None,
    data_dir: DataDirs = None,
    text_model: TextModel("Base LLM scoring the same prompts as text (S_t; demo, hf:<id or dir>; default: the "
                          "demo's own for the demo).") = None,
    steps: Steps("Adam steps (default: the preset's).", type=Optional[int]) = None,
    batch_size: BatchSize("Questions optimized together, or auto: on a GPU each optimization part's largest batch "
                          "(and memory switches only where needed) that one measured step shows to fit, universal "
                          "parts keeping the preset's batch; on the CPU the preset's sizes.", type=str,
                          min=None) = "auto",
    memory: Annotated[Optional[float], typer.Option(min=0.0, help="--batch-size auto: GiB to fit in (default: the "
                                                    "GPU's free memory; on the CPU, measures a fit too).")] = None,
    seed: Seed("Seed of everything random in the command.") = 0,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    dtype: Dtype = None,
    device_map: DeviceMap = None,
    image_size: ImageSize = None,
    image_aspect_ratio: AspectRatio = None,
    conversation: Conversation = None,
    gpus_per_rank: GpusPerRank = 1,
    prompt: Annotated[Optional[str], typer.Option(help="The prompt variant (lmms-eval, model, official), or two "
                                                  "to compare (e.g. lmms-eval,model): the study in the first, "
                                                  "its conditions again in the second, and every measure's "
                                                  "difference with a paired interval.")] = None,
    quiet: Quiet = False,
) -> None:
    """The study: per benchmark the image conditions, per-question and universal optimized features and pixels
    (with PNG re-checks), single-encoder runs, saliency and inversion; one study directory and one report.
    Under `torchrun -m mirage study ...` the conditions and optimized inputs are sharded over the ranks."""
    from ..display import blind_table, difference_table, soft_prompt_table, study_table, summary_table
    from ..experiments.fit import parse_batch_size
    from ..experiments.study import run_study

    t0 = time.time()
    with user_errors(out):
        world, device, scale_options = scale_out(device, gpus_per_rank)
        benches = names(benchmark) or ["shapes"]
        with loading():
            result = run_study(model=model, benchmarks=benches, preset=preset, out=out, limit=limit, split=split,
                               options=data_dirs(data_dir or [], benches), steps=steps, seed=seed,
                               batch_size=parse_batch_size(batch_size), memory=memory, device=device,
                               text_model=text_model, overwrite=overwrite,
                               quiet=quiet or not world.main, world=world, allow_env_change=allow_env_change,
                               prompts=prompt,
                               load_options={**({"dtype": dtype} if dtype else {}), **scale_options,
                                             **model_options(device_map, image_size, image_aspect_ratio, conversation)})
    if not world.main:
        return
    for name, summary in result.summaries.items():
        console.print(summary_table(summary, title=f"mirage study: {model} on {name}"))
        if summary.get("blind"):
            console.print(blind_table(summary["blind"], title=f"image-free measures (MMStar) on {name}"))
        if summary.get("soft_prompt"):
            console.print(soft_prompt_table(summary["soft_prompt"], title=f"crafted inputs against the soft prompt "
                                                                          f"on {name}"))
            for scope in ("question", "universal"):
                for sentence in summary["soft_prompt"].get(scope, {}).get("sentences", []):
                    console.print(f"  {sentence}")
    if len(result.table) > 1:
        console.print(study_table(result.table, title=f"mirage study: {model}, every benchmark"))
    for match in result.summary.get("text_only_match", []):  # a benchmark with no image beside the vision ones
        console.print(f"  {match['sentence']}")
    if result.prompts:
        first, other = result.prompts["variants"]
        for name, diff in result.prompts["difference"].items():
            console.print(difference_table(diff, first, other, title=f"prompt {other} minus {first} on {name}"))
    console.print(f"study directory: {out}  ({time.time() - t0:.0f} s)")
    console.print(f"report: {write_page(out)}")
