"""MMStar's image-free measures from result rows: S_v (`real`), S_wv (`none`: the VLM with no image at all), S_t
(`text-model`: its base LLM on the text), multi-modal gain MG = S_v - S_wv and multi-modal leakage
ML = max(0, S_wv - S_t), each with a 95% interval over questions, overall and per question type.

Beside them the trained-blind accuracies of the Test-set Stress-Test (Brown et al., 2025; experiments/tst.py):
TsT_lm (`tst-lm`, an LM LoRA-tuned on the other folds' questions, no image) and TsT_rf (`tst-rf`, a random forest on
the text), and how much zero-shot blind scoring understates them: gap_lm = TsT_lm - the same LM zero-shot (S_wv when
the VLM's own LM was tuned, S_t when the base LM was; the rows' `zero_shot`), gap_rf = TsT_rf - S_wv (S_t when the
run has no `none`).

MG, ML and the gaps are computed on the questions both of their terms have (paired); a measure whose sources are
missing is left out. ML's interval is the paired interval of S_wv - S_t with both ends clipped at 0, as ML is.
"""

from __future__ import annotations

from typing import Iterable

from .sources import TEXT_MODEL, TST_LM, TST_RF
from .stats import INTERVALS, accuracy_ci, paired_difference_ci

SOURCES = {"S_v": "real", "S_wv": "none", "S_t": TEXT_MODEL, "TsT_lm": TST_LM, "TsT_rf": TST_RF}
MEASURES = ("S_v", "S_wv", "S_t", "MG", "ML", "TsT_lm", "TsT_rf", "gap_lm", "gap_rf")
BLIND = ("none", TEXT_MODEL, TST_LM, TST_RF)  # a run with rows of any of these has the block


def _r(x: float) -> float:
    return round(float(x), 4)


def _score(correct: dict[str, bool], qids: set[str]) -> dict:
    qs = sorted(qids & correct.keys(), key=str)
    acc, lo, hi = accuracy_ci([correct[q] for q in qs])
    return {"n": len(qs), "value": _r(acc), "ci95": [_r(lo), _r(hi)]}


def _difference(a: dict[str, bool], b: dict[str, bool], qids: set[str], clip: bool) -> dict:
    qs = sorted(qids & a.keys() & b.keys(), key=str)
    d, lo, hi = paired_difference_ci([a[q] for q in qs], [b[q] for q in qs])
    out = {"n": len(qs), "value": _r(max(0.0, d) if clip else d),
           "ci95": [_r(max(0.0, lo)), _r(max(0.0, hi))] if clip else [_r(lo), _r(hi)]}
    if clip:
        out["difference"] = _r(d)  # S_wv - S_t before clipping: negative when the VLM lost text skill
    return out


def _block(correct: dict[str, dict[str, bool]], qids: set[str], lm_zero_shot: str) -> dict:
    out = {m: _score(correct[s], qids) for m, s in SOURCES.items() if s in correct and qids & correct[s].keys()}
    if "S_v" in out and "S_wv" in out:
        out["MG"] = _difference(correct["real"], correct["none"], qids, clip=False)
    if "S_wv" in out and "S_t" in out:
        out["ML"] = _difference(correct["none"], correct[TEXT_MODEL], qids, clip=True)
    rf_zero_shot = "none" if "none" in correct else TEXT_MODEL
    for gap, source, zero_shot in (("gap_lm", TST_LM, lm_zero_shot), ("gap_rf", TST_RF, rf_zero_shot)):
        if source in correct and zero_shot in correct and qids & correct[source].keys() & correct[zero_shot].keys():
            out[gap] = _difference(correct[source], correct[zero_shot], qids, clip=False) | {"vs": zero_shot}
    return {m: out[m] for m in MEASURES if m in out and out[m]["n"]}


def blind_measures(rows: Iterable[dict]) -> dict | None:
    """{"S_v", "S_wv", "S_t", "MG", "ML", "TsT_lm", "TsT_rf", "gap_lm", "gap_rf" (those whose sources exist):
    {"n", "value", "ci95"} (gaps also "vs": their zero-shot source), "by_type": {type: the same}, "sources",
    "intervals"}; None when the rows hold no image-free source (none, text-model, tst-lm, tst-rf)."""
    correct: dict[str, dict[str, bool]] = {}
    types: dict[str, str] = {}
    lm_zero_shot = "none"
    for r in rows:
        if r["source"] in SOURCES.values():
            correct.setdefault(r["source"], {})[r["question_id"]] = bool(r["correct"])
            types.setdefault(r["question_id"], r.get("type", ""))
            if r["source"] == TST_LM and r.get("zero_shot"):
                lm_zero_shot = r["zero_shot"]
    if not set(BLIND) & correct.keys():
        return None
    qids = set(types)
    out = _block(correct, qids, lm_zero_shot)
    by_type = {}
    for t in sorted(set(types.values()), key=str):
        block = _block(correct, {q for q, qt in types.items() if qt == t}, lm_zero_shot)
        if block:
            by_type[t] = block
    return {**out, "by_type": by_type, "sources": dict(SOURCES), "intervals": dict(INTERVALS)}
