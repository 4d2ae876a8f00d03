"""Circular evaluation (MMBench): each multiple-choice question asked once per rotation of its options; a
question counts as correct only when every rotation is answered correctly."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from .question import Benchmark, Question


def rotations(question: Question) -> list[Question]:
    """The question once per rotation k of its options (k = 0 is the original): choices[k:] + choices[:k], the
    answer moved with its option; ids `<id>@r<k>`, `meta["circular"]` = {"group": id, "rotation": k}."""
    n = len(question.choices)
    out = []
    for k in range(n):
        meta = dict(question.meta, circular={"group": question.id, "rotation": k})
        out.append(replace(question, id=f"{question.id}@r{k}", choices=question.choices[k:] + question.choices[:k],
                           answer=(question.answer - k) % n, meta=meta))
    return out


def circular_benchmark(bench: Benchmark) -> Benchmark:
    """Every rotation of every multiple-choice question, rotations of one question next to each other; open
    questions are kept once. The prompt style renders each rotation's own option order."""
    questions = [r for q in bench for r in (rotations(q) if q.kind == "mc" else [q])]
    return replace(bench, name=f"{bench.name}-circular", questions=questions)  # same prompt style and judging


def circular_rows(rows: Iterable[dict]) -> list[dict]:
    """One row per (question, source) from rotation rows: correct only when every rotation is; `rotations`
    counts them and `correct_rotations` the right ones. Rows without a rotation pass through."""
    groups: dict[tuple[str, str], list[dict]] = {}
    out = []
    for row in rows:
        circ = row.get("circular")
        if not circ:
            out.append(row)
            continue
        groups.setdefault((circ["group"], row["source"]), []).append(row)
    for (group, source), rs in groups.items():
        out.append({"question_id": group, "source": source, "correct": all(r["correct"] for r in rs),
                    "rotations": len(rs), "correct_rotations": sum(bool(r["correct"]) for r in rs),
                    "type": rs[0]["type"]})
    return out
