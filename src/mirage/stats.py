"""Every statistic mirage reports: Wilson intervals for accuracies, paired intervals for differences of accuracies
(Newcombe's hybrid score interval), exact McNemar tests, run summaries."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import binomtest, norm

PAIRED_BASELINES = ("real", "blank")
# What summary.json and the report name as the interval methods.
INTERVALS = {"accuracy": "Wilson score interval",
             "difference": "Newcombe hybrid score interval for paired proportions (1998, method 10)"}
# a difference of two differences (a measure such as MG under two prompts): per-question scores in {-1, 0, 1}
MEAN_INTERVAL = "Student t interval on the per-question differences (paired)"


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(norm.ppf((1 + level) / 2))


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n. Unlike a bootstrap or Wald interval it does not collapse at
    k = 0 or k = n (1000/1000 gives [0.9962, 1]) and its coverage stays near the nominal level (Brown, Cai and
    DasGupta 2001); Clopper-Pearson's guarantee makes it wider than needed on average."""
    if n == 0:
        return (math.nan, math.nan)
    z = _z(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact at the ends (the formula leaves rounding dust there)
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def accuracy_ci(correct: Sequence[bool], level: float = 0.95) -> tuple[float, float, float]:
    """(accuracy, lo, hi) with the Wilson interval at `level`; nans when empty."""
    n = len(correct)
    if n == 0:
        _z(level)
        return (math.nan, math.nan, math.nan)
    k = int(np.count_nonzero(np.asarray(correct, dtype=bool)))
    lo, hi = wilson_interval(k, n, level)
    return (k / n, lo, hi)


def paired_difference_ci(a: Sequence[bool], b: Sequence[bool], level: float = 0.95) -> tuple[float, float, float]:
    """(accuracy of a - accuracy of b, lo, hi) on the same questions: Newcombe's hybrid score interval for paired
    proportions (each margin's Wilson interval, combined with the phi correlation of the pairs), which stays inside
    [-1, 1] and does not collapse when both are perfect or when no pair disagrees. nans when empty."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    both, a_only = int(np.count_nonzero(x & y)), int(np.count_nonzero(x & ~y))
    b_only, neither = int(np.count_nonzero(~x & y)), int(np.count_nonzero(~x & ~y))
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_interval(both + a_only, n, level)
    l2, u2 = wilson_interval(both + b_only, n, level)
    denom = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    phi = (both * neither - a_only * b_only) / math.sqrt(denom) if denom else 0.0
    d = p1 - p2
    lo = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (d, max(-1.0, lo), min(1.0, hi))


def paired_mean_difference_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95
                              ) -> tuple[float, float, float]:
    """(mean of a - mean of b, lo, hi) for per-question scores that are not 0/1 (a difference of two accuracies per
    question, in {-1, 0, 1}) on the same questions: Student's t interval on the per-question differences, clipped
    to the scores' possible range. nans when empty; a zero-width interval when every difference is equal."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean = float(d.mean())
    if n == 1:
        return (mean, -2.0, 2.0)
    from scipy.stats import t

    half = float(t.ppf((1 + level) / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return (mean, max(-2.0, mean - half), min(2.0, mean + half))


def paired_difference(a: Sequence[bool], b: Sequence[bool], level: float = 0.95) -> dict:
    """Accuracy of `a` minus that of `b` on the same questions: {"difference", "ci95" (Newcombe, paired),
    "mcnemar" (exact, `a_only` = right in a only)}; None where there are no questions (valid JSON)."""
    d, lo, hi = paired_difference_ci(a, b, level)
    if math.isnan(d):
        return {"difference": None, "ci95": [None, None], "mcnemar": mcnemar_exact(a, b)}
    return {"difference": _r(d), "ci95": [_r(lo), _r(hi)], "mcnemar": mcnemar_exact(a, b)}


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
    """Per-source n, accuracy, 95% Wilson interval, accuracy by question type, and against `real`/`blank` on the
    questions both have: McNemar and the difference with its paired interval; `intervals` names the methods.

    Sources keep first-appearance order; every number is independent of row order."""
    by_source: dict[str, dict[str, dict]] = {}
    for row in rows:
        per_q = by_source.setdefault(row["source"], {})
        qid = row["question_id"]
        if qid in per_q:
            # Which duplicate wins would depend on row order; refuse rather than guess.
            raise ValueError(f"duplicate result for question {qid!r}, source {row['source']!r}")
        per_q[qid] = row

    # Sorting by question id keeps every list (and so anything computed from it) independent of row order.
    ordered = {s: [per_q[q] for q in sorted(per_q, key=str)] for s, per_q in by_source.items()}
    out: dict = {"n": {}, "accuracy": {}, "ci95": {}, "by_type": {}, "paired": {}, "intervals": dict(INTERVALS)}
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
            diff = paired_difference([bool(per_q[q]["correct"]) for q in shared],
                                     [bool(by_source[base][q]["correct"]) for q in shared])
            test = diff["mcnemar"]
            paired[base] = {**test, "p": _sig(test["p"]), "difference": diff["difference"], "ci95": diff["ci95"]}
        out["paired"][source] = paired
    return out


def compare_runs(rows_a: Iterable[dict], rows_b: Iterable[dict]) -> dict[str, dict]:
    """Two runs (two models, or one model twice) on the same questions: per source both have, the accuracy of each
    on the questions both answered, the paired difference a - b (Newcombe interval) and McNemar's exact test."""
    def correct(rows) -> dict[str, dict[str, bool]]:
        out: dict[str, dict[str, bool]] = {}
        for r in rows:
            out.setdefault(r["source"], {}).setdefault(r["question_id"], bool(r["correct"]))
        return out

    a, b = correct(rows_a), correct(rows_b)
    out = {}
    for source in [s for s in a if s in b]:
        shared = sorted(a[source].keys() & b[source].keys(), key=str)
        if not shared:
            continue
        x, y = [a[source][q] for q in shared], [b[source][q] for q in shared]
        out[source] = {"n": len(shared), "a": _r(np.mean(x)), "b": _r(np.mean(y)), **paired_difference(x, y)}
    return out
