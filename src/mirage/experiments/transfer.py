"""Cross-benchmark transfer: universal inputs trained on one benchmark, evaluated on others, beside `blank`.

`transfer.json` (written by `transfer_matrix` into the run directory) is what the report draws as a heat map:

    {"rows": [input names: trained on],            "columns": [benchmark names: evaluated on],
     "cells": [[cell, ...], ...],                  # row-major: cells[i][j] = rows[i] evaluated on columns[j]
     "blank": {benchmark: {"n", "accuracy", "ci95": [lo, hi]}},
     "inputs": {input name: {"path": artifact file, "kind": "features" | "pixels" | "tokens"}},
     "benchmarks": {benchmark: {"name", "split", "n"}}}

    cell = {"trained_on", "evaluated_on", "n", "accuracy", "ci95": [lo, hi], "blank_accuracy",
            "gain": accuracy - blank_accuracy on the same questions, "gain_ci95": [lo, hi] (paired, Newcombe),
            "mcnemar": {"n", "a_only" (input right, blank wrong), "b_only" (blank right, input wrong), "p"}}

Result rows go to the run too (source: the input's name; `blank` for the baseline), so a killed run resumes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from .. import sources
from ..benchmarks.question import Benchmark, Question
from ..conditions import CONDITIONS, get_condition
from ..errors import MirageError, UsageError
from ..evaluate import evaluate_conditions, score, score_pending
from ..models.vlm import VLM, Visual
from ..progress import progress_bar
from ..runs import RunDir
from ..stats import accuracy_ci, json_number, paired_difference

TRANSFER_JSON = "transfer.json"
ARTIFACT_SUFFIXES = (".png", ".safetensors")


def type_benchmarks(bench: Benchmark) -> dict[str, Benchmark]:
    """One benchmark per question type (`<name>-<type>`), questions in the original order."""
    return {t: replace(bench, name=f"{bench.name}-{t}", questions=[q for q in bench if q.type == t])
            for t in bench.types()}


def universal_artifacts(path: str | Path) -> dict[str, Path]:
    """The universal inputs a path names: an artifact file itself ({stem: file}), or every
    artifacts/<source>.png|.safetensors of a run directory whose source is universal ({"<dir>/<source>": file})."""
    path = Path(path)
    if path.is_file():
        if path.suffix not in ARTIFACT_SUFFIXES:
            raise MirageError(f"{str(path)!r}: a universal input is a .png or .safetensors artifact")
        return {path.stem: path}
    folder = path / "artifacts"
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(path)!r} is neither an artifact file nor a run directory with artifacts/")
    found = {f"{path.name}/{p.stem}": p for p in sorted(folder.iterdir())
             if p.suffix in ARTIFACT_SUFFIXES and sources.is_universal(p.stem)}
    if not found:
        raise FileNotFoundError(f"{folder}: no universal input (artifacts/<input>-universal*.png or .safetensors)")
    return found


def _encoders_of(source: str, model: VLM) -> list[str]:
    """Encoders a universal source went through (`pixels-universal-clip+dino`), default all."""
    names = [s.name for s in model.encoders]
    return [e for e in sources.parse_source(source).encoders if e in names] or names


@torch.no_grad()
def check_trained_for(inputs: dict[str, Path], model: str) -> None:
    """Refuse an input whose run (artifacts/ beside a config.json) was made with another model than `model`: its
    features or tokens are another model's (the tensor names would be all the error says)."""
    import json

    for name, path in inputs.items():
        config = Path(path).parent.parent / "config.json"
        if Path(path).parent.name != "artifacts" or not config.is_file():
            continue
        made_with = json.loads(config.read_text()).get("model")
        if made_with not in (None, model):
            raise MirageError(f"--from {name}: {Path(path).parent.parent} was made with --model {made_with}, not "
                              f"{model}; evaluate it with --model {made_with}")


def load_universal(model: VLM, path: str | Path) -> tuple[str, Visual]:
    """A universal artifact as (kind, Visual of batch 1): a PNG read by the model's real processor (through the
    encoders its source name lists; the others see the blank image, as in training), or saved features or tokens
    (encoders missing from the file were held at the blank image's features)."""
    path = Path(path)
    blank = model.encode(model.process_images([Image.new("RGB", (224, 224), (128, 128, 128))]))
    if path.suffix == ".png":
        with Image.open(path) as im:
            processed = model.process_images([im.convert("RGB")])
        through = _encoders_of(path.stem, model)
        if len(through) == len(model.encoders):
            return "pixels", Visual("processed", processed)
        feats = model.encode({k: v for k, v in processed.items() if k in through})
        return "pixels", Visual("features", {s.name: feats.get(s.name, blank[s.name]) for s in model.encoders})
    tensors = load_file(str(path))
    if "tokens" in tensors:
        return "tokens", Visual("tokens", tensors["tokens"][None].to(model.device))
    unknown = set(tensors) - {s.name for s in model.encoders}
    if unknown:
        raise MirageError(f"{path}: tensors {sorted(unknown)} are not encoders of this model")
    feats = {s.name: tensors[s.name][None].to(model.device) if s.name in tensors else blank[s.name]
             for s in model.encoders}
    return "features", Visual("features", feats)


def _expand(visual: Visual, n: int) -> Visual:
    if isinstance(visual.value, dict):
        return Visual(visual.stage, {k: v.expand(n, *v.shape[1:]) for k, v in visual.value.items()})
    return Visual(visual.stage, visual.value.expand(n, *visual.value.shape[1:]))


def visual_rows(model: VLM, bench: Benchmark, visual: Visual, source: str, run: RunDir | None = None,
                batch_size: int = 32) -> list[dict]:
    """Rows of one fixed input (a Visual of batch 1) on every question of `bench` (skipping rows `run` holds)."""
    def rows_for(qs: list[Question]) -> list[dict]:
        return score(model, bench, qs, _expand(visual, len(qs)), source)

    with torch.inference_mode():
        return score_pending(bench.questions, source, rows_for, run, batch_size)


def _cell(name: str, bench: str, rows: dict[str, dict], blank: dict[str, dict]) -> dict:
    shared = [q for q in rows if q in blank]
    a = [bool(rows[q]["correct"]) for q in shared]
    b = [bool(blank[q]["correct"]) for q in shared]
    acc, lo, hi = accuracy_ci(a)
    diff = paired_difference(a, b)
    return {"trained_on": name, "evaluated_on": bench, "n": len(a), "accuracy": json_number(acc),
            "ci95": [json_number(lo), json_number(hi)], "blank_accuracy": round(float(np.mean(b)), 4) if b else None,
            "gain": diff["difference"], "gain_ci95": diff["ci95"], "mcnemar": diff["mcnemar"]}


def transfer_matrix(model: VLM, inputs: dict[str, str | Path], benches: dict[str, Benchmark],
                    run: RunDir | None = None, batch_size: int = 32, quiet: bool = True) -> dict:
    """Every universal input (name -> artifact file or run directory with one universal artifact) evaluated on
    every benchmark, with `blank` on the same questions; written to `run`/transfer.json (layout: module docstring)."""
    clash = sorted(set(inputs) & set(CONDITIONS.names()))
    if clash:
        raise MirageError(f"input names {clash} are condition names; rename them (NAME=PATH)")
    files = {}
    for name, path in inputs.items():
        arts = universal_artifacts(path)
        if len(arts) != 1:
            raise MirageError(f"input {name!r}: {path} holds {len(arts)} universal inputs ({', '.join(arts)}); "
                             "name one artifact file")
        files[name] = next(iter(arts.values()))
    loaded = {name: load_universal(model, f) for name, f in files.items()}
    out = {"rows": list(inputs), "columns": list(benches), "cells": [], "blank": {},
           "inputs": {n: {"path": str(files[n]), "kind": loaded[n][0]} for n in inputs},
           "benchmarks": {b: {"name": bench.name, "split": bench.split, "n": len(bench)}
                          for b, bench in benches.items()}}
    blank, found = {}, {n: {} for n in inputs}
    with progress_bar("transfer", len(benches) * (len(inputs) + 1), quiet) as advance:
        for b, bench in benches.items():
            rows = evaluate_conditions(model, bench, [get_condition("blank")], batch_size=batch_size, run=run,
                                       quiet=True)
            ids = {q.id for q in bench}
            blank[b] = {r["question_id"]: r for r in rows if r["question_id"] in ids and r["source"] == "blank"}
            advance(1)
            for name, (_, visual) in loaded.items():
                found[name][b] = visual_rows(model, bench, visual, name, run, batch_size)
                advance(1)
    every = run.rows() if run else None  # with a run, rows done before a resume count too
    for name in inputs:
        line = []
        for b, bench in benches.items():
            ids = {q.id for q in bench}
            rows = found[name][b] if every is None else [r for r in every
                                                         if r["source"] == name and r["question_id"] in ids]
            line.append(_cell(name, b, {r["question_id"]: r for r in rows}, blank[b]))
        out["cells"].append(line)
    for b in benches:
        acc, lo, hi = accuracy_ci([bool(r["correct"]) for r in blank[b].values()])
        out["blank"][b] = {"n": len(blank[b]), "accuracy": json_number(acc), "ci95": [json_number(lo), json_number(hi)]}
    if run:
        run.write_json(TRANSFER_JSON, out)
    return out


def check_type_transfer_input(input: str) -> None:
    """`type_transfer` trains its inputs with `optimize`'s universal loop: inputs with their own experiment (patch,
    generator) are refused, before any work."""
    from ..inputs import INPUTS
    from . import own_loop

    INPUTS.get(input)  # an unknown name fails with "did you mean"
    if own_loop(input) is not None:
        allowed = [n for n in INPUTS.names() if own_loop(n) is None]
        raise UsageError(f"--input {input}: transfer-types trains universal inputs with the optimize loop "
                         f"({', '.join(allowed)}); {input} is trained by its own experiment (mirage optimize "
                         f"--input {input})")


def type_transfer(model: VLM, bench: Benchmark, run: RunDir, input: str = "features", steps: int = 50,
                  train_fraction: float = 0.5, batch_size: int = 16, lr: float | None = None, seed: int = 0,
                  quiet: bool = True) -> dict:
    """The demo's transfer study: question types as benchmarks. Per type, a universal `input` is trained on the
    first `train_fraction` of that type's questions (run/inputs/<type>/, resumable); the matrix is evaluated on
    the other questions of every type."""
    from ..inputs import Reference, build_input, default_lr
    from ..objectives import OBJECTIVES
    from ..optimize import OptimizeConfig, optimize_universal

    check_type_transfer_input(input)

    ref = Reference.from_benchmark(model, bench)
    cfg = OptimizeConfig(steps=steps, batch_size=batch_size, seed=seed)
    inputs, held = {}, {}
    for t, tb in type_benchmarks(bench).items():
        k = max(1, int(len(tb) * train_fraction))
        if k >= len(tb):
            raise MirageError(f"type {t!r} has {len(tb)} questions: too few to train on some and hold out the rest")
        sub = RunDir.open(run.path / "inputs" / t, {"command": "type-transfer", "type": t, "input": input,
                                                    "steps": steps, "train": k, "lr": lr, "seed": seed},
                           allow_env_change=run.allow_env_change)
        inp = build_input(input, model, 1, ref, seed=seed)
        source = sources.optimized(input, "universal")
        optimize_universal(model, tb, tb.questions[:k], inp, OBJECTIVES.get("ce"), cfg, source, sub,
                           lr if lr is not None else default_lr(input), quiet)
        inputs[t] = next(p for p in (sub.artifacts_dir / f"{source}{s}" for s in ARTIFACT_SUFFIXES) if p.exists())
        held[t] = replace(tb, questions=tb.questions[k:])
    return transfer_matrix(model, inputs, held, run, quiet=quiet)
