"""`mirage curate`: the questions that need the image, from runs with image-free sources, as a file: benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Device, Dtype, console, loading, names, user_errors


def curate_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (one per model) with real and image-free rows.")],
    out: Annotated[Path, typer.Option(help="Where to write questions.jsonl, images/ and curation.json.")] = ...,
    min_runs: Annotated[Optional[int], typer.Option(min=1, help="Keep a question that needs the image in K runs "
                                                    "(default: in every run).")] = None,
    also: Annotated[Optional[str], typer.Option(help="More sources that must fail, e.g. blank,noise.")] = None,
    prune: Annotated[Optional[str], typer.Option(help="tst: Iterative Bias Pruning by the run's trained-blind rows "
                                                 "(tst-rf or tst-lm, `mirage tst`) instead of MMStar's rule.")] = None,
    budget: Annotated[float, typer.Option(help="--prune: at most this many questions removed (a count, or a "
                                          "fraction of them when < 1).")] = 0.5,
    batch: Annotated[float, typer.Option(help="--prune: questions removed per round (count or fraction).")] = 0.05,
    tau: Annotated[float, typer.Option(help="--prune: stop once no bias score s(x) exceeds this.")] = 0.9,
    chance_stop: Annotated[bool, typer.Option(help="--prune: also stop once the trained-blind accuracy's 95% "
                                              "interval reaches chance in every question type (the paper's "
                                              "optional rule).")] = True,
    diagnostic: Annotated[str, typer.Option(help="--prune: the diagnostic that re-scores what remains each round: rf "
                                            "(the forest) or lm (LoRA on the LM the run's tst-lm rows tuned, "
                                            "refitted every round: minutes a round on a CPU).")] = "rf",
    device: Device = None,
    dtype: Dtype = None,
) -> None:
    """Keep the questions that need the image (right with real, wrong by none/text-model/--also): a file: benchmark.
    With --prune tst: remove the questions a model trained on the other questions' text answers (IBP)."""
    from ..curate import CURATION, QUESTIONS, curate, prune_tst
    from ..errors import UsageError

    with user_errors():
        if prune is not None:
            if prune != "tst":
                raise UsageError(f"--prune {prune!r}: the one pruning rule is tst")
            if len(runs) != 1 or min_runs is not None or also:
                raise UsageError("--prune tst: give one run directory (and no --min-runs, --also)")
            model = _tuned_lm(runs[0], device, dtype) if diagnostic == "lm" else None
            result = prune_tst(runs[0], out, budget, batch, tau, chance_stop, diagnostic, model)
            last = result["rounds"][-1]
            console.print(f"IBP ({result['diagnostic']}): {len(result['rounds'])} rounds, stopped: "
                          f"{result['stopped']}; trained-blind accuracy {result['rounds'][0]['accuracy']:.3f} -> "
                          f"{last['accuracy']:.3f} (chance {last['chance']:.3f}); removed by type: "
                          + ", ".join(f"{t} {v['removed']}/{v['n']}" for t, v in result["removed_by_type"].items()))
            console.print(f"kept {result['n_kept']} of {result['n_evaluated']} questions: {out / QUESTIONS} "
                          f"(mirage eval --benchmark file:{out / QUESTIONS}); {out / CURATION}")
            return
        result = curate(runs, out, min_runs, names(also) or ())
    console.print(f"kept {result['n_kept']} of {result['n_evaluated']} questions: {out / QUESTIONS} "
                  f"(mirage eval --benchmark file:{out / QUESTIONS}); {out / CURATION}")


def _tuned_lm(run: Path, device, dtype):
    """The LM a run's tst-lm rows fine-tuned (artifacts/tst.json): its `--text-model`, or the run's model."""
    import json

    from ..errors import MirageError
    from ..experiments.tst import read_state
    from ..models import load_model, parse_dtype
    from ..models.text_lm import load_text_model
    from ..runs import CONFIG
    from ..sources import TEXT_MODEL, TST_LM

    state = read_state(run).get(TST_LM)
    if state is None or not (run / CONFIG).is_file():
        raise MirageError(f"run {str(run)!r} has no tst-lm rows: run `mirage tst {run} --diagnostics lm` first")
    with loading():
        if state["settings"].get("zero_shot") == TEXT_MODEL:
            return load_text_model(state["settings"]["lm"], device=device, dtype=parse_dtype(dtype))
        config = json.loads((run / CONFIG).read_text(encoding="utf-8"))
        return load_model(config["model"], device=device, dtype=dtype)
