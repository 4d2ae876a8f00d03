"""The report's tables, read off `stats.summarize` of the run's rows (never recomputed another way)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..stats import PAIRED_BASELINES
from ..sources import SourceInfo
from .sources import ordered_sources


@dataclass
class SourceRow:
    """One line of the main table: a source's n, accuracy, 95% interval and paired tests against the baselines."""

    info: SourceInfo
    n: int
    accuracy: float
    ci95: tuple[float, float]
    paired: dict[str, dict]  # baseline -> {"n", "a_only", "b_only", "p"}; a_only: this source right, baseline wrong
    by_type: dict[str, float] = field(default_factory=dict)
    type_n: dict[str, int] = field(default_factory=dict)
    unpaired: dict[str, str] = field(default_factory=dict)
    attack: dict | None = None  # a patch's attack success {"value", "ci95", "n"}: its metric, not accuracy  # baseline -> why there is no test (an empty cell misleads)


def source_rows(summary: dict, rows: list[dict], attacks: dict[str, dict] | None = None) -> list[SourceRow]:
    """Every source of the summary, grouped as `ordered_sources` orders them; `attacks` (measures.attack_success)
    gives patch sources their attack success rate."""
    type_n: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = type_n.setdefault(r["source"], {})
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    out = [SourceRow(info, summary["n"][info.name], summary["accuracy"][info.name],
                     tuple(summary["ci95"][info.name]), summary["paired"].get(info.name, {}),
                     summary["by_type"].get(info.name, {}), type_n.get(info.name, {}))
           for info in ordered_sources(list(summary["n"]))]
    for row in out:
        row.attack = (attacks or {}).get(row.info.name)
        for base in PAIRED_BASELINES:
            if base == row.info.name or base in row.paired:
                continue
            row.unpaired[base] = (f"no questions in common with {base}" if base in summary["n"]
                                  else f"no {base} rows in this run")
    return out


def question_types(table: list[SourceRow]) -> list[str]:
    """The question types (or subjects) seen in any source; empty when the benchmark has none."""
    types = sorted({t for row in table for t in row.by_type})
    return [] if types in ([], [""]) else types


def baselines(table: list[SourceRow]) -> list[str]:
    """The paired-test baselines, when any is a source of this run: all of them, so that a missing one (an optimize
    run has no `real` rows) is a column saying why rather than a silent gap."""
    names = {row.info.name for row in table}
    return list(PAIRED_BASELINES) if names & set(PAIRED_BASELINES) else []
