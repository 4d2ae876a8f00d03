"""`mirage show` and `mirage compare`: a run's results from disk (no model, no HTML), as tables or CSV, and two runs
side by side with paired tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import console, user_errors

RUN = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory (config.json, results.jsonl).")]


def _rows(run_dir: Path) -> tuple[dict, list[dict]]:
    from ..report.rundata import load_run

    if not run_dir.is_dir():
        from ..errors import MirageError

        raise MirageError(f"{str(run_dir)!r} is not a run directory")
    data = load_run(run_dir)
    return data.config, data.rows


def show_cmd(
    run_dir: RUN,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write the table (one line per source: n, "
                                                    "accuracy, 95% CI, per type, vs real) as CSV here.")] = None,
    rows_out: Annotated[Optional[Path], typer.Option("--rows", help="Write every result row (question, source, "
                                                     "correct, answer, prediction ...) as CSV here.")] = None,
) -> None:
    """Print a run's results from its files, without a model or a report: accuracy per source with its interval,
    per question type and against real; optionally as CSV."""
    from ..benchmarks.question import Benchmark
    from ..display import blind_table, summary_table
    from ..evaluate import summarize_conditions
    from ..runs import SKIPPED_KEY

    with user_errors():
        config, rows = _rows(run_dir)
        summary = summarize_conditions(rows, Benchmark("", "", []), [])
    title = f"{config.get('model', '?')} on {config.get('benchmark', '?')}/{config.get('split', '?')}"
    console.print(summary_table(summary, title=title))
    if config.get(SKIPPED_KEY):
        console.print(f"skipped, an image cannot be decoded ({len(config[SKIPPED_KEY])} questions): "
                      + "; ".join(f"{qid} ({why})" for qid, why in config[SKIPPED_KEY].items()))
    if summary.get("blind"):
        console.print(blind_table(summary["blind"]))
    if csv_out is not None:
        types = sorted({t for by in summary["by_type"].values() for t in by})
        with open(csv_out, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["source", "n", "accuracy", "ci95_low", "ci95_high", *(f"type:{t}" for t in types),
                        "vs_real_p"])
            for src, n in summary["n"].items():
                paired = summary.get("paired", {}).get(src, {}).get("real")
                w.writerow([src, n, summary["accuracy"][src], *summary["ci95"][src],
                            *(summary["by_type"][src].get(t, "") for t in types), paired["p"] if paired else ""])
        console.print(f"table: {csv_out}")
    if rows_out is not None:
        keys = list(dict.fromkeys(k for r in rows for k in r if not isinstance(r[k], (dict, list))))
        with open(rows_out, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        console.print(f"rows: {rows_out} ({len(rows)})")


def compare_cmd(
    run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="A run directory (e.g. model A's).")],
    run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="Another run on the same questions (model B's).")],
) -> None:
    """Two runs on the same questions, source by source: each one's accuracy on the questions both answered, the
    paired difference A - B with its 95% interval, and McNemar's exact p."""
    from rich.table import Table

    from ..stats import compare_runs

    with user_errors():
        (config_a, rows_a), (config_b, rows_b) = _rows(run_a), _rows(run_b)
        result = compare_runs(rows_a, rows_b)
        if not result:
            from ..errors import MirageError

            raise MirageError(f"{run_a} and {run_b} have no source with questions in common")
    table = Table(title=f"A: {config_a.get('model')} ({run_a})  vs  B: {config_b.get('model')} ({run_b})")
    for col in ("source", "n", "A", "B", "A - B", "95% CI", "McNemar p"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, c in result.items():
        lo, hi = c["ci95"]
        table.add_row(src, str(c["n"]), f"{c['a']:.3f}", f"{c['b']:.3f}", f"{c['difference']:+.3f}",
                      f"[{lo:+.3f}, {hi:+.3f}]", f"{c['mcnemar']['p']:.2g}")
    console.print(table)
