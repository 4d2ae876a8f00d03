"""`mirage transfer` and `mirage transfer-types`: universal inputs evaluated across benchmarks and question types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import (AllowEnvChange, BatchSize, BenchmarkName, DataDir, DataDirs, Device, InputKind, Limit, Model, Out,
                     Overwrite, Quiet, Seed, Split, Steps, benchmark_options, console, data_dirs, loading, user_errors)


def _inputs(specs: list[str]) -> dict:
    """--from values: NAME=PATH, an artifact file, or a run directory (each universal artifact in it)."""
    from ..errors import UsageError
    from ..experiments.transfer import universal_artifacts

    out: dict = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        found = {name: Path(path)} if sep else universal_artifacts(spec)
        for key in found:
            if key in out:
                raise UsageError(f"--from: input name {key!r} given twice; name them with NAME=PATH")
        out.update(found)
    return out


def matrix_table(matrix: dict, title: str) -> Table:
    """Accuracy (and gain over blank, with McNemar's p; a trained input's difference from the noise input of its
    kind) of each input (rows, then the untrained baseline rows) on each benchmark (columns)."""
    table = Table(title=title)
    table.add_column("trained on \\ evaluated on")
    for col in matrix["columns"]:
        table.add_column(col, justify="right")
    table.add_row("blank", *(_num(matrix["blank"][c]["accuracy"]) for c in matrix["columns"]))
    for name, cells in zip(matrix["rows"], matrix["cells"]):
        table.add_row(name, *(f"{_num(c['accuracy'])} ({_num(c['gain'], '+.3f')}, p={c['mcnemar']['p']:.2g})"
                              + (f" vs noise {_num(c['vs_baseline']['noise']['difference'], '+.3f')}"
                                 if "vs_baseline" in c else "") for c in cells))
    return table


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _benches(names: list[str], split: Optional[str], limit: Optional[int], by_type: bool,
             options: dict[str, dict]) -> dict:
    from ..benchmarks import load_benchmark
    from ..experiments.transfer import type_benchmarks

    out = {}
    for name in names:
        with loading():
            bench = load_benchmark(name, split=split, limit=limit, **options.get(name, {}))
        out.update({f"{name}:{t}": b for t, b in type_benchmarks(bench).items()} if by_type else {name: bench})
    return out


def transfer_cmd(
    from_: Annotated[list[str], typer.Option("--from", help="A run directory (its universal inputs), an artifact "
                                             "(.png / .safetensors), or NAME=PATH; repeat for more.")] = ...,
    benchmark: Annotated[list[str], typer.Option("--benchmark", help="Benchmark to evaluate on; repeat for more.")
                         ] = ["shapes"],
    split: Annotated[Optional[str], typer.Option(help="Split of every benchmark (default: each one's own).")] = None,
    data_dir: DataDirs = None,
    limit: Limit("First N questions of each benchmark.") = None,
    by_type: Annotated[bool, typer.Option(help="Split each benchmark into one benchmark per question type.")] = False,
    model: Model = "demo",
    batch_size: BatchSize("Questions per forward pass.") = 32,
    out: Out = ...,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate universal inputs trained on one benchmark on others, beside blank: writes OUT/transfer.json."""
    from ..experiments.transfer import transfer_matrix
    from ..models import load_model
    from ..runs import RunDir

    with user_errors(out):
        inputs = _inputs(from_)  # inputs made with another model: cross-model transfer, where their shapes fit
        options = data_dirs(data_dir or [], benchmark)
        benches = _benches(benchmark, split, limit, by_type, options)
        files = {b.ref: b.digest for b in benches.values() if b.digest}  # file:/spec: benchmarks by content
        config = {"command": "transfer", "model": model, "inputs": {k: str(v) for k, v in inputs.items()},
                  "benchmarks": benchmark, "split": split, "limit": limit, "by_type": by_type,
                  **({"options": options} if options else {}),
                  **({"benchmark_files": files} if files else {})}
        run = RunDir.open(out, config, overwrite=overwrite, allow_env_change=allow_env_change)
        with loading():
            vlm = load_model(model, device=device)
        matrix = transfer_matrix(vlm, inputs, benches, run, batch_size, quiet)
    console.print(matrix_table(matrix, f"transfer: accuracy (gain over blank, McNemar p) with {model}"))
    console.print(f"matrix: {out / 'transfer.json'}")


def transfer_types_cmd(
    input: InputKind("Universal input trained per question type: features, pixels or tokens.") = "features",
    steps: Steps("Adam steps of each type's universal input.") = 50,
    train_fraction: Annotated[float, typer.Option(min=0.01, max=0.99, help="Share of each type's questions to "
                                                  "train on.")] = 0.5,
    benchmark: BenchmarkName = "shapes",
    split: Split = None,
    data_dir: DataDir = None,
    limit: Limit("First N questions only.", min=2) = None,
    model: Model = "demo",
    batch_size: BatchSize("Questions per training step.") = 16,
    seed: Seed("Seed of the inputs' starts and the training order.") = 0,
    out: Out = ...,
    overwrite: Overwrite = False,
    allow_env_change: AllowEnvChange = False,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Question types as benchmarks: train a universal input per type, evaluate each on every type's held-out
    questions; writes OUT/transfer.json and OUT/inputs/<type>/."""
    from ..benchmarks import load_benchmark
    from ..experiments.transfer import check_type_transfer_input, type_transfer
    from ..models import load_model
    from ..runs import RunDir

    with user_errors(out):
        check_type_transfer_input(input)  # before the run directory and the model
        with loading():
            bench_options = benchmark_options(benchmark, data_dir, None, False)
            bench = load_benchmark(benchmark, split=split, limit=limit, **bench_options)
        config = {"command": "transfer-types", **bench_options, "model": model, "input": input, "steps": steps,
                  "train_fraction": train_fraction, **bench.identity(), "split": bench.split, "limit": limit,
                  "seed": seed, "batch_size": batch_size}
        run = RunDir.open(out, config, overwrite=overwrite, allow_env_change=allow_env_change)
        with loading():
            vlm = load_model(model, device=device)
        matrix = type_transfer(vlm, bench, run, input, steps, train_fraction, batch_size, seed=seed, quiet=quiet)
    console.print(matrix_table(matrix, f"{input} per question type: accuracy (gain over blank, McNemar p)"))
    console.print(f"matrix: {out / 'transfer.json'}")
