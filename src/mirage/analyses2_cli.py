"""Command-line layer of the later analyses (typer, as cli.py): `mirage transfer` and `mirage transfer-types`.
Registered on the main app by cli.py: `app.command("transfer")(transfer_cmd)`,
`app.command("transfer-types")(transfer_types_cmd)`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console(width=130)


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {err}", highlight=False)
    raise typer.Exit(2)


def _inputs(specs: list[str]) -> dict:
    """--from values: NAME=PATH, an artifact file, or a run directory (each universal artifact in it)."""
    from .transfer import universal_artifacts

    out: dict = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        found = {name: Path(path)} if sep else universal_artifacts(spec)
        for key in found:
            if key in out:
                raise ValueError(f"--from: input name {key!r} given twice; name them with NAME=PATH")
        out.update(found)
    return out


def matrix_table(matrix: dict, title: str) -> Table:
    """Accuracy (and gain over blank, with McNemar's p) of each input (rows) on each benchmark (columns)."""
    table = Table(title=title)
    table.add_column("trained on \\ evaluated on")
    for col in matrix["columns"]:
        table.add_column(col, justify="right")
    table.add_row("blank", *(_num(matrix["blank"][c]["accuracy"]) for c in matrix["columns"]))
    for name, cells in zip(matrix["rows"], matrix["cells"]):
        table.add_row(name, *(f"{_num(c['accuracy'])} ({_num(c['gain'], '+.3f')}, p={c['mcnemar']['p']:.2g})"
                              for c in cells))
    return table


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _benches(names: list[str], split: Optional[str], limit: Optional[int], by_type: bool) -> dict:
    from .benchmarks import load_benchmark
    from .transfer import type_benchmarks

    out = {}
    for name in names:
        bench = load_benchmark(name, split=split, limit=limit)
        out.update({f"{name}:{t}": b for t, b in type_benchmarks(bench).items()} if by_type else {name: bench})
    return out


def transfer_cmd(
    from_: list[str] = typer.Option(..., "--from", help="A run directory (its universal inputs), an artifact "
                                    "(.png / .safetensors), or NAME=PATH; repeat for more."),
    benchmark: list[str] = typer.Option(["shapes"], "--benchmark", help="Benchmark to evaluate on; repeat for more."),
    split: Optional[str] = typer.Option(None, help="Split of every benchmark (default: each one's own)."),
    limit: Optional[int] = typer.Option(None, min=1, help="First N questions of each benchmark."),
    by_type: bool = typer.Option(False, help="Split each benchmark into one benchmark per question type."),
    model: str = typer.Option("demo", help="Model spec."),
    batch_size: int = typer.Option(32, min=1),
    out: Path = typer.Option(..., help="Run directory (resumed if it exists with the same config)."),
    overwrite: bool = typer.Option(False),
    device: Optional[str] = typer.Option(None),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Evaluate universal inputs trained on one benchmark on others, beside blank: writes OUT/transfer.json."""
    from .cli import EXPECTED
    from .models import load_model
    from .runs import RunDir
    from .transfer import transfer_matrix

    try:
        inputs = _inputs(from_)
        benches = _benches(benchmark, split, limit, by_type)
        config = {"command": "transfer", "model": model, "inputs": {k: str(v) for k, v in inputs.items()},
                  "benchmarks": benchmark, "split": split, "limit": limit, "by_type": by_type}
        run = RunDir.open(out, config, overwrite=overwrite)
        vlm = load_model(model, device=device)
        matrix = transfer_matrix(vlm, inputs, benches, run, batch_size, quiet)
    except EXPECTED as e:
        _fail(e)
    console.print(matrix_table(matrix, f"transfer: accuracy (gain over blank, McNemar p) with {model}"))
    console.print(f"matrix: {out / 'transfer.json'}")


def transfer_types_cmd(
    input: str = typer.Option("features", "--input", help="Universal input trained per question type."),
    steps: int = typer.Option(50, min=1, help="Adam steps of each type's universal input."),
    train_fraction: float = typer.Option(0.5, min=0.01, max=0.99, help="Share of each type's questions to train on."),
    benchmark: str = typer.Option("shapes"),
    split: Optional[str] = typer.Option(None),
    limit: Optional[int] = typer.Option(None, min=2),
    model: str = typer.Option("demo"),
    batch_size: int = typer.Option(16, min=1, help="Questions per training step."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(..., help="Run directory (resumed if it exists with the same config)."),
    overwrite: bool = typer.Option(False),
    device: Optional[str] = typer.Option(None),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Question types as benchmarks: train a universal input per type, evaluate each on every type's held-out
    questions; writes OUT/transfer.json and OUT/inputs/<type>/."""
    from .benchmarks import load_benchmark
    from .cli import EXPECTED
    from .inputs import INPUTS
    from .models import load_model
    from .runs import RunDir
    from .transfer import type_transfer

    try:
        INPUTS.get(input)
        bench = load_benchmark(benchmark, split=split, limit=limit)
        config = {"command": "transfer-types", "model": model, "input": input, "steps": steps,
                  "train_fraction": train_fraction, "benchmark": benchmark, "split": bench.split, "limit": limit,
                  "seed": seed, "batch_size": batch_size}
        run = RunDir.open(out, config, overwrite=overwrite)
        vlm = load_model(model, device=device)
        matrix = type_transfer(vlm, bench, run, input, steps, train_fraction, batch_size, seed=seed, quiet=quiet)
    except EXPECTED as e:
        _fail(e)
    console.print(matrix_table(matrix, f"{input} per question type: accuracy (gain over blank, McNemar p)"))
    console.print(f"matrix: {out / 'transfer.json'}")
