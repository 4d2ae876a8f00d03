"""Cross-benchmark (and cross-model) transfer: universal inputs trained on one benchmark (or model), evaluated on
others, beside `blank` and beside baseline inputs of the same shape that were never trained.

`transfer.json` (written by `transfer_matrix` into the run directory) is what the report draws as a heat map:

    {"rows": [input names: trained on, then the baseline rows], "columns": [benchmark names: evaluated on],
     "cells": [[cell, ...], ...],                  # row-major: cells[i][j] = rows[i] evaluated on columns[j]
     "blank": {benchmark: {"n", "accuracy", "ci95": [lo, hi]}},
     "inputs": {input name: {"path": artifact file, "kind": "features" | "pixels" | "tokens" | "soft-prompt",
                             "crafted_on": the model of the run that made it (when its config says),
                             "baseline": "blank" | "noise" (baseline rows only)}},
     "model": the model evaluated on, "benchmarks": {benchmark: {"name", "split", "n"}}}

    cell = {"trained_on", "evaluated_on", "n", "accuracy", "ci95": [lo, hi], "blank_accuracy",
            "gain": accuracy - blank_accuracy on the same questions, "gain_ci95": [lo, hi] (paired, Newcombe),
            "mcnemar": {"n", "a_only" (input right, blank wrong), "b_only" (blank right, input wrong), "p"},
            trained inputs also "vs_baseline": {"blank" | "noise": {"n", "difference", "ci95", "p"}}: the input
            against the untrained input of its kind and shape on the same questions (paired)}

Baseline rows, per kind of input in the matrix: `blank-<kind>` (the blank image; for features and tokens the blank
image's, for a soft prompt zeros) and `noise-<kind>` (Gaussian noise: an image like the `noise` condition's, or
tensors with each trained input's own mean and std), seeded. A transfer cell means little without them: crafted
inputs are reported to transfer across models close to not at all.

Result rows go to the run too (source: the input's name; `blank` for the baseline), so a killed run resumes.
"""

from __future__ import annotations

import json
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
from ..models.vlm import SOFT, VLM, Visual
from ..progress import progress_bar
from ..runs import RunDir
from ..seeding import seed_for
from ..stats import accuracy_ci, json_number, paired_difference

TRANSFER_JSON = "transfer.json"
ARTIFACT_SUFFIXES = (".png", ".safetensors")
BASELINES = ("blank", "noise")  # untrained inputs of each trained input's kind and shape


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
def load_universal(model: VLM, path: str | Path) -> tuple[str, Visual]:
    """A universal artifact as (kind, Visual of batch 1): a PNG read by the model's real processor (through the
    encoders its source name lists; the others see the blank image, as in training), or saved features, tokens or
    a soft prompt (encoders missing from the file were held at the blank image's features). An input of another
    shape than the model takes (crafted on another model) is refused, naming both."""
    path = Path(path)
    if path.suffix == ".png":
        with Image.open(path) as im:
            return "pixels", image_visual(model, im.convert("RGB"), path.stem)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors' own errors (a truncated or empty file) are no OSError
        raise MirageError(f"{path}: not a readable safetensors file ({e})") from e
    if "tokens" in tensors:
        _check_shape(path, "tokens", tensors["tokens"], tuple(model.connect(_blank_features(model)).shape[1:]))
        return "tokens", Visual("tokens", tensors["tokens"][None].to(model.device))
    if "soft_prompt" in tensors:
        width = model.input_embeddings().weight.shape[1]
        _check_shape(path, "soft_prompt", tensors["soft_prompt"], (tensors["soft_prompt"].shape[0], width))
        return "soft-prompt", Visual(SOFT, tensors["soft_prompt"][None].to(model.device))
    unknown = set(tensors) - {s.name for s in model.encoders}
    if unknown:
        raise MirageError(f"{path}: tensors {sorted(unknown)} are not encoders of this model "
                          f"({', '.join(s.name for s in model.encoders)})")
    blank = _blank_features(model)
    for s in model.encoders:
        if s.name in tensors:
            _check_shape(path, s.name, tensors[s.name], tuple(blank[s.name].shape[1:]))
    feats = {s.name: tensors[s.name][None].to(model.device) if s.name in tensors else blank[s.name]
             for s in model.encoders}
    return "features", Visual("features", feats)


def _blank_features(model: VLM) -> dict:
    return model.encode(model.process_images([Image.new("RGB", (224, 224), (128, 128, 128))]))


def _check_shape(path: Path, name: str, tensor: torch.Tensor, shape: tuple) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise MirageError(f"{path}: {name} is {list(tensor.shape)}, this model takes {list(shape)} (transfer across "
                          "models needs the same input size)")


@torch.no_grad()
def image_visual(model: VLM, image: Image.Image, source: str) -> Visual:
    """An image through the model's real processor and the encoders `source`'s name lists (the others see the
    blank image, as in training)."""
    processed = model.process_images([image])
    through = _encoders_of(source, model)
    if len(through) == len(model.encoders):
        return Visual("processed", processed)
    blank = _blank_features(model)
    feats = model.encode({k: v for k, v in processed.items() if k in through})
    return Visual("features", {s.name: feats.get(s.name, blank[s.name]) for s in model.encoders})


@torch.no_grad()
def baseline_inputs(model: VLM, kind: str, visual: Visual, path: Path, seed: int = 0) -> dict[str, Visual]:
    """{"blank": ..., "noise": ...}: untrained inputs of `kind` with the shape of the trained input `visual` (read
    from `path`), seeded by (path name, seed)."""
    g = torch.Generator().manual_seed(seed_for("transfer-baseline", seed, path.stem) % 2**63)

    def like(t: torch.Tensor) -> torch.Tensor:  # Gaussian noise with the tensor's own mean and std
        return (torch.randn(t.shape, generator=g) * float(t.float().std()) + float(t.float().mean())).to(t)

    if kind == "pixels":
        with Image.open(path) as im:
            size = im.size
        noise = np.clip(np.random.default_rng(seed_for("transfer-noise", seed, path.stem) % 2**63)
                        .normal(0.5, 0.25, (size[1], size[0], 3)), 0, 1)  # the `noise` condition's image
        return {"blank": image_visual(model, Image.new("RGB", size, (128, 128, 128)), path.stem),
                "noise": image_visual(model, Image.fromarray((noise * 255).round().astype(np.uint8)), path.stem)}
    if kind == "features":
        blank = _blank_features(model)
        return {"blank": Visual("features", {k: blank[k].to(v) for k, v in visual.value.items()}),
                "noise": Visual("features", {k: like(v) for k, v in visual.value.items()})}
    if kind == "tokens":
        return {"blank": Visual("tokens", model.connect(_blank_features(model)).to(visual.value)),
                "noise": Visual("tokens", like(visual.value))}
    return {"blank": Visual(SOFT, torch.zeros_like(visual.value)), "noise": Visual(SOFT, like(visual.value))}


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


def crafted_on(path: Path) -> str | None:
    """The model of the run whose artifacts/ holds `path` (its config.json), if it says."""
    config = path.parent.parent / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError):
        return None


def check_image_size(model: VLM, path: Path, other: str) -> None:
    """An image crafted on another model must have this model's input size (the processor would resize it)."""
    size = max(s.image_size for s in model.encoders)
    with Image.open(path) as im:
        if im.size != (size, size):
            raise MirageError(f"{path}: crafted on {other} at {im.size[0]}x{im.size[1]} px; this model's inputs are "
                              f"{size} px (transfer across models needs the same input size)")


def _vs(rows: dict[str, dict], base: dict[str, dict]) -> dict:
    shared = sorted(rows.keys() & base.keys(), key=str)
    diff = paired_difference([bool(rows[q]["correct"]) for q in shared], [bool(base[q]["correct"]) for q in shared])
    return {"n": len(shared), "difference": diff["difference"], "ci95": diff["ci95"], "p": diff["mcnemar"]["p"]}


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
                    run: RunDir | None = None, batch_size: int = 32, quiet: bool = True, seed: int = 0) -> dict:
    """Every universal input (name -> artifact file or run directory with one universal artifact) evaluated on
    every benchmark, with `blank` on the same questions and the blank and noise inputs of each input's kind and
    shape as baseline rows (each trained cell tested against them, paired); written to `run`/transfer.json (layout:
    module docstring). An input crafted on another model of the same input size is cross-model transfer."""
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
    loaded = {}
    for name, f in files.items():
        try:
            loaded[name] = load_universal(model, f)
        except MirageError as e:  # an input of another model whose shapes do not fit this one
            made = crafted_on(f)
            raise MirageError(f"--from {name}: {e}" + (f" (made with --model {made})" if made else "")) from e
    evaluated_on = getattr(model, "name_or_path", type(model).__name__)
    described = {n: {"path": str(files[n]), "kind": loaded[n][0]} | ({"crafted_on": crafted_on(files[n])}
                                                                      if crafted_on(files[n]) else {})
                 for n in inputs}
    for n, d in described.items():
        if d["kind"] == "pixels" and d.get("crafted_on") not in (None, evaluated_on):
            check_image_size(model, files[n], d["crafted_on"])
    baseline_of: dict[str, dict[str, str]] = {}  # input -> {"blank": row name, "noise": row name}
    for name, (kind, visual) in list(loaded.items()):
        for which, v in baseline_inputs(model, kind, visual, files[name], seed).items():
            row = f"{which}-{kind}"
            if row not in loaded:  # one pair per kind: the first input of that kind gives its shape
                loaded[row] = (kind, v)
                described[row] = {"path": None, "kind": kind, "baseline": which}
            baseline_of.setdefault(name, {})[which] = row
    names = list(loaded)
    out = {"rows": names, "columns": list(benches), "cells": [], "blank": {}, "inputs": described,
           "model": evaluated_on,
           "benchmarks": {b: {"name": bench.name, "split": bench.split, "n": len(bench)}
                          for b, bench in benches.items()}}
    blank, found = {}, {n: {} for n in names}
    with progress_bar("transfer", len(benches) * (len(names) + 1), quiet) as advance:
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

    def rows_of(name: str, b: str) -> dict[str, dict]:
        ids = {q.id for q in benches[b]}
        rows = found[name][b] if every is None else [r for r in every if r["source"] == name and r["question_id"] in ids]
        return {r["question_id"]: r for r in rows}

    for name in names:
        line = []
        for b in benches:
            cell = _cell(name, b, rows_of(name, b), blank[b])
            if name in baseline_of:
                cell["vs_baseline"] = {which: _vs(rows_of(name, b), rows_of(row, b))
                                       for which, row in baseline_of[name].items()}
            line.append(cell)
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
