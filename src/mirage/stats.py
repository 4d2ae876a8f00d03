"""Every statistic mirage reports: bootstrap accuracy intervals, paired differences and McNemar tests, run
summaries."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import binomtest

PAIRED_BASELINES = ("real", "blank")


def accuracy_ci(
    correct: Sequence[bool], level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(accuracy, lo, hi) with a percentile-bootstrap interval at `level`; nans when empty.

    Deterministic for a given `seed`."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = len(correct)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    k = int(np.count_nonzero(np.asarray(correct, dtype=bool)))
    acc = k / n
    # The number correct in a resample of n 0/1 outcomes is exactly Binomial(n, k/n), so
    # this is the percentile bootstrap drawn in O(n_boot) rather than O(n_boot * n).
    means = np.random.default_rng(seed).binomial(n, acc, size=n_boot) / n
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (acc, float(lo), float(hi))


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test of paired outcomes `a` and `b` (same questions, same order).

    Returns {"n", "a_only", "b_only", "p"}; p is 1.0 when no pair disagrees."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    a_only = int(np.count_nonzero(x & ~y))
    b_only = int(np.count_nonzero(~x & y))
    discordant = a_only + b_only
    p = binomtest(a_only, discordant, 0.5).pvalue if discordant else 1.0
    return {"n": len(x), "a_only": a_only, "b_only": b_only, "p": float(p)}


def paired_difference(a: Sequence[bool], b: Sequence[bool], level: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> dict:
    """Accuracy of `a` minus that of `b` on the same questions: {"difference", "ci95" (percentile bootstrap over
    questions), "mcnemar" (exact, `a_only` = right in a only)}."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) == 0:  # None, not NaN: transfer.json must stay valid JSON for the report's scripts
        return {"difference": None, "ci95": [None, None], "mcnemar": mcnemar_exact(a, b)}
    means = d[np.random.default_rng(seed).integers(len(d), size=(n_boot, len(d)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": round(float(d.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "mcnemar": mcnemar_exact(a, b)}


def json_number(x: float | None) -> float | None:
    """`x` rounded to 4 decimals for JSON; None where undefined (NaN: no questions), which JSON cannot hold."""
    return None if x is None or x != x else round(float(x), 4)


def json_interval(values) -> list[float | None]:
    """(estimate, lo, hi) as JSON numbers (`json_number` each)."""
    return [json_number(v) for v in values]


def _r(x: float) -> float:
    return round(float(x), 4)


def _sig(p: float) -> float:
    # Four decimals would print small p-values as 0.0; keep four significant digits instead.
    return float(f"{p:.4g}")


def summarize(rows: Iterable[dict]) -> dict:
    """Per-source n, accuracy, 95% CI, accuracy by question type, and McNemar vs `real`/`blank`.

    Sources keep first-appearance order; every number is independent of row order."""
    by_source: dict[str, dict[str, dict]] = {}
    for row in rows:
        per_q = by_source.setdefault(row["source"], {})
        qid = row["question_id"]
        if qid in per_q:
            # Which duplicate wins would depend on row order; refuse rather than guess.
            raise ValueError(f"duplicate result for question {qid!r}, source {row['source']!r}")
        per_q[qid] = row

    # Sorting by question id makes the bootstrap input, hence the CI, independent of row order.
    ordered = {s: [per_q[q] for q in sorted(per_q, key=str)] for s, per_q in by_source.items()}
    out: dict = {"n": {}, "accuracy": {}, "ci95": {}, "by_type": {}, "paired": {}}
    for source, srows in ordered.items():
        acc, lo, hi = accuracy_ci([bool(r["correct"]) for r in srows])
        out["n"][source] = len(srows)
        out["accuracy"][source] = _r(acc)
        out["ci95"][source] = [_r(lo), _r(hi)]
        types: dict[str, list[bool]] = {}
        for r in srows:
            types.setdefault(r["type"], []).append(bool(r["correct"]))
        out["by_type"][source] = {t: _r(np.mean(v)) for t, v in sorted(types.items())}

    for source, per_q in by_source.items():
        paired = {}
        for base in PAIRED_BASELINES:
            if base == source or base not in by_source:
                continue
            shared = sorted(per_q.keys() & by_source[base].keys(), key=str)
            if not shared:  # no question in common (a universal input's training rows): no test, not p = 1
                continue
            test = mcnemar_exact(
                [bool(per_q[q]["correct"]) for q in shared],
                [bool(by_source[base][q]["correct"]) for q in shared],
            )
            paired[base] = {**test, "p": _sig(test["p"])}
        out["paired"][source] = paired
    return out
