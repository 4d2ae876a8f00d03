"""Measures of where a score comes from, read from result rows.

MMStar's image-free measures: S_v (`real`), S_wv (`none`: the VLM with no image at all), S_t
(`text-model`: its base LLM on the text), multi-modal gain MG = S_v - S_wv and multi-modal leakage
ML = max(0, S_wv - S_t), each with a 95% interval over questions, overall and per question type.

Beside them the trained-blind accuracies of the Test-set Stress-Test (Brown et al., 2025; experiments/tst.py):
TsT_lm (`tst-lm`, an LM LoRA-tuned on the other folds' questions, no image) and TsT_rf (`tst-rf`, a random forest on
the text), and how much zero-shot blind scoring understates them: gap_lm = TsT_lm - the same LM zero-shot (S_wv when
the VLM's own LM was tuned, S_t when the base LM was; the rows' `zero_shot`), gap_rf = TsT_rf - S_wv (S_t when the
run has no `none`).

MG, ML and the gaps are computed on the questions both of their terms have (paired); a measure whose sources are
missing is left out. ML's interval is the paired interval of S_wv - S_t with both ends clipped at 0, as ML is.

`soft_prompt_control`: crafted inputs against the soft prompt of their scope (free vectors in the text-only prompt
with the same optimizer, steps and seeds) and against blank, with paired intervals and the steps each question took.

The Multi-modal Data Spectrum's decomposition (`shuffle_decomposition`): accuracy with the pair as given (`real`),
with the image alone (`image-only`: another question's words), with the text alone (`wrong`: another question's
image) and with neither (`both`), beside chance, and the differences a reader wants from them, each with a paired
interval on the questions both terms have.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from .sources import SCOPES, SOFT_PROMPT, TEXT_MODEL, TST_LM, TST_RF, optimized, parse_source
from .stats import (INTERVALS, MEAN_INTERVAL, accuracy_ci, paired_difference, paired_difference_ci,
                    paired_mean_difference_ci)

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
    out, by_type = _overall_and_by_type(_block, correct, types, lm_zero_shot)
    return {**out, "by_type": by_type, "sources": dict(SOURCES), "intervals": dict(INTERVALS)}


def _overall_and_by_type(block, correct: dict[str, dict[str, bool]], types: dict[str, str], *args) -> tuple:
    """`block(correct, question ids, *args)` on every question, and on each question type's (types whose block is
    empty left out)."""
    by_type = {}
    for t in sorted(set(types.values()), key=str):
        part = block(correct, {q for q, qt in types.items() if qt == t}, *args)
        if part:
            by_type[t] = part
    return block(correct, set(types), *args), by_type


# --- the soft-prompt control (issue 34): is a crafted input vision, or a prompt of as many free vectors? -------------

CRAFTED = ("features", "pixels", "tokens")  # crafted visual inputs set against the soft prompt of the same scope


def _steps(steps: dict[str, int], correct: dict[str, bool]) -> dict | None:
    """The distribution of optimizer steps over the questions that ended right (per-question rows only)."""
    right = sorted(s for q, s in steps.items() if correct.get(q))
    if not right:
        return None
    q25, med, q75 = (float(x) for x in np.percentile(right, [25, 50, 75]))
    counts: dict[str, int] = {}
    for s in right:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return {"n_right": len(right), "n": len(steps), "mean": _r(np.mean(right)), "q25": q25, "median": med,
            "q75": q75, "max": right[-1], "counts": counts}


def _fmt(d: dict) -> str:
    v, (lo, hi) = d.get("value", d.get("difference")), d["ci95"]
    return f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _sentence(name: str, entry: dict, soft: str, soft_entry: dict) -> str:
    """The report's words for one crafted input against the soft prompt of its scope."""
    vs = entry["vs_soft"]
    gains = (f"its gain over blank, {_fmt(entry['vs_blank'])}, " if "vs_blank" in entry else "its accuracy, "
             f"{entry['value']:.3f}, ")
    soft_gain = _fmt(soft_entry["vs_blank"]) if "vs_blank" in soft_entry else f"{soft_entry['value']:.3f}"
    if "vs_blank" in entry and entry["vs_blank"]["ci95"][0] <= 0:
        text = (f"{name}: no gain over blank to explain ({_fmt(entry['vs_blank'])}, the 95% interval reaches 0); the "
                f"soft prompt ({soft}) gains {soft_gain}, and the crafted input minus the soft prompt is {_fmt(vs)} on "
                f"{vs['n']} questions.")
    elif entry["within_soft"]:
        text = (f"{name}: {gains}lies within the soft prompt's ({soft}: {soft_gain}; difference {_fmt(vs)} on "
                f"{vs['n']} questions): free vectors in the text prompt, with no image, do as much, so this gain "
                "shows the input's capacity as a prompt, not that the model sees.")
    else:
        text = (f"{name}: {gains}exceeds the soft prompt's ({soft}: {soft_gain}) by {_fmt(vs)} on {vs['n']} "
                f"questions (McNemar p = {vs['p']:.2g}): more than a prompt of as many free vectors reaches.")
    if entry.get("steps") and soft_entry.get("steps"):
        text += (f" Median steps to a right answer: {entry['steps']['median']:g} against the soft prompt's "
                 f"{soft_entry['steps']['median']:g}.")
    return text


def soft_prompt_control(rows: Iterable[dict]) -> dict | None:
    """Per scope with a soft prompt (`soft-prompt-question`, `soft-prompt-universal`): each crafted input of that
    scope (features, pixels, tokens, and the pixels' PNG re-check) and the soft prompt, each {n, value, ci95,
    vs_blank (paired), steps (per question: the steps the questions that ended right took)}; a crafted input also
    `vs_soft` (paired difference and McNemar p) and `within_soft` (its advantage over the soft prompt is not
    significant: the 95% interval of the difference reaches 0 or below); `sentences` in words. None without a
    soft prompt."""
    correct: dict[str, dict[str, bool]] = {}
    steps: dict[str, dict[str, int]] = {}
    for r in rows:
        correct.setdefault(r["source"], {})[r["question_id"]] = bool(r["correct"])
        if "steps" in r:
            steps.setdefault(r["source"], {})[r["question_id"]] = int(r["steps"])
    out = {}
    for scope in SCOPES:
        soft = optimized(SOFT_PROMPT, scope)
        if soft not in correct:
            continue
        infos = [parse_source(s) for s in correct]
        crafted = [i.name for i in infos if i.group == "optimized" and i.input in CRAFTED and i.scope == scope
                   and i.suffix in (None, "png") and not i.start and not i.text_model]
        entries = {}
        for name in [*crafted, soft]:
            entry = _score(correct[name], set(correct[name]))
            if "blank" in correct:
                blank = _difference(correct[name], correct["blank"], set(correct[name]), clip=False)
                if blank["n"]:
                    entry["vs_blank"] = blank
            if name in steps and _steps(steps[name], correct[name]):
                entry["steps"] = _steps(steps[name], correct[name])
            entries[name] = entry
        sentences = []
        for name in crafted:
            shared = sorted(correct[name].keys() & correct[soft].keys(), key=str)
            if not shared:
                continue
            diff = paired_difference([correct[name][q] for q in shared], [correct[soft][q] for q in shared])
            entries[name]["vs_soft"] = {"n": len(shared), "difference": diff["difference"], "ci95": diff["ci95"],
                                        "p": diff["mcnemar"]["p"]}
            entries[name]["within_soft"] = diff["ci95"][0] <= 0
            sentences.append(_sentence(name, entries[name], soft, entries[soft]))
        out[scope] = {"soft_prompt": soft, "sources": entries, "sentences": sentences}
    if not out:
        return None
    return {**out, "intervals": dict(INTERVALS)}


def text_only_match(table: Iterable[dict]) -> list[dict]:
    """Universal crafted inputs trained on a benchmark with no image at all (`no_images` lines of a study's table)
    beside the same kind of input on each vision benchmark: their gains over blank (paired intervals, from each
    benchmark's summary) and whether they match (the two 95% intervals overlap). A crafted input that gains as much
    where there is nothing to see is a prompt, not vision. Lines: {"source", "no_images", "vision", "gain_no_images",
    "gain_vision", "match", "sentence"}."""
    lines = list(table)
    out = []
    for t in (line for line in lines if line.get("no_images")):
        for v in (line for line in lines if not line.get("no_images")):
            for source, gt in (t.get("universal_gain") or {}).items():
                gv = (v.get("universal_gain") or {}).get(source)
                if gv is None or None in (*gt["ci95"], *gv["ci95"]):
                    continue
                match = gt["ci95"][0] <= gv["ci95"][1] and gv["ci95"][0] <= gt["ci95"][1]
                words = (f"{source}: its gain over blank on {t['benchmark']}, which has no image to see, "
                         f"{_fmt(gt)}, ")
                words += (f"matches its gain on {v['benchmark']}, {_fmt(gv)} (the 95% intervals overlap): the same "
                          f"optimization gains as much without anything to see, so the gain on {v['benchmark']} is "
                          "no evidence that the model uses vision." if match else
                          f"differs from its gain on {v['benchmark']}, {_fmt(gv)} (the 95% intervals do not "
                          "overlap).")
                out.append({"source": source, "no_images": t["benchmark"], "vision": v["benchmark"],
                            "gain_no_images": gt, "gain_vision": gv, "match": match, "sentence": words})
    return out
# The four conditions of the decomposition, by what the model has of the question's own pair.
SHUFFLE_SOURCES = {"pair": "real", "image_only": "image-only", "text_only": "wrong", "neither": "both"}
# The differences: what the image adds to the text, what the text adds to the image, the pair beyond either alone
# (correct with the pair minus correct with the image alone or the text alone, per question).
SHUFFLE_DIFFERENCES = {"image_adds": ("pair", "text_only"), "text_adds": ("pair", "image_only"),
                       "pair_beyond": ("pair", "either_alone")}
SHUFFLE_MEASURES = (*SHUFFLE_SOURCES, *SHUFFLE_DIFFERENCES)
SHUFFLE_NAMES = {"pair": "pair", "image_only": "image alone", "text_only": "text alone", "neither": "neither",
                 "image_adds": "image adds to text", "text_adds": "text adds to image",
                 "pair_beyond": "pair beyond either alone", "chance": "chance"}


def _shuffle_block(correct: dict[str, dict[str, bool]], qids: set[str], chance: Mapping[str, float]) -> dict:
    out = {m: _score(correct[m], qids) for m in SHUFFLE_SOURCES if m in correct and qids & correct[m].keys()}
    if "image_only" in correct and "text_only" in correct:
        shared = correct["image_only"].keys() & correct["text_only"].keys()
        correct = {**correct, "either_alone": {q: correct["image_only"][q] or correct["text_only"][q] for q in shared}}
    for m, (a, b) in SHUFFLE_DIFFERENCES.items():
        if a in correct and b in correct:
            d = _difference(correct[a], correct[b], qids, clip=False)
            if d["n"]:
                out[m] = d
    known = sorted(q for q in qids if q in chance)
    if known:
        out["chance"] = {"n": len(known), "value": _r(sum(chance[q] for q in known) / len(known))}
    return out


def shuffle_decomposition(rows: Iterable[dict], chance: Mapping[str, float] | None = None) -> dict | None:
    """{"pair", "image_only", "text_only", "neither" (those whose sources exist): {"n", "value", "ci95"}; "image_adds"
    (pair - text alone), "text_adds" (pair - image alone), "pair_beyond" (pair - correct with either alone):
    {"n", "value", "ci95"} paired; "chance" (mean of `chance`, question id -> 1/options): {"n", "value"}; "by_type":
    {type: the same}; "sources", "intervals"}. None unless the rows hold `image-only` or `both`."""
    source_of = {s: m for m, s in SHUFFLE_SOURCES.items()}
    correct: dict[str, dict[str, bool]] = {}
    types: dict[str, str] = {}
    for r in rows:
        if r["source"] in source_of:
            correct.setdefault(source_of[r["source"]], {})[r["question_id"]] = bool(r["correct"])
            types.setdefault(r["question_id"], r.get("type", ""))
    if not {"image_only", "neither"} & correct.keys():
        return None
    chance = chance or {}
    out, by_type = _overall_and_by_type(_shuffle_block, correct, types, chance)
    return {**out, "by_type": by_type, "sources": dict(SHUFFLE_SOURCES), "intervals": dict(INTERVALS)}


# Every measure as a per-question score from each source's correctness (1/0): an accuracy (one source) or a
# difference of two (MG, ML before clipping, the shuffle differences), for comparing two runs question by question.
PER_QUESTION = {
    "S_v": ("real",), "S_wv": ("none",), "S_t": (TEXT_MODEL,), "MG": ("real", "none"), "ML": ("none", TEXT_MODEL),
    "image_only": ("image-only",), "text_only": ("wrong",), "neither": ("both",),
    "image_adds": ("real", "wrong"), "text_adds": ("real", "image-only"), "pair_beyond": ("real", "image-only|wrong"),
}


def _per_question(rows: Iterable[dict]) -> dict[str, dict[str, float]]:
    correct: dict[str, dict[str, float]] = {}
    for r in rows:
        correct.setdefault(r["source"], {})[r["question_id"]] = float(bool(r["correct"]))
    if "image-only" in correct and "wrong" in correct:  # right with the image alone or the text alone
        io, w = correct["image-only"], correct["wrong"]
        correct["image-only|wrong"] = {q: max(io[q], w[q]) for q in io.keys() & w.keys()}
    return correct


def _scores(correct: dict[str, dict[str, float]], terms: tuple[str, ...]) -> dict[str, float]:
    if not all(t in correct for t in terms):
        return {}
    if len(terms) == 1:
        return correct[terms[0]]
    a, b = correct[terms[0]], correct[terms[1]]
    return {q: a[q] - b[q] for q in a.keys() & b.keys()}


def run_difference(rows_a: Iterable[dict], rows_b: Iterable[dict]) -> dict:
    """Every measure of run B minus the same measure of run A on the questions both have (the same questions asked
    another way, e.g. in another prompt): {measure: {"n", "a", "b", "difference", "ci95"}} for each source's
    accuracy (by source name) and each measure of `PER_QUESTION` (ML unclipped, S_wv - S_t); accuracies get
    Newcombe's paired interval, differences of differences a paired t interval (`intervals`)."""
    ca, cb = _per_question(rows_a), _per_question(rows_b)
    sources = [s for s in ca if s in cb and "|" not in s]
    terms = {**{s: (s,) for s in sources}, **PER_QUESTION}
    out: dict = {}
    for name, t in terms.items():
        a, b = _scores(ca, t), _scores(cb, t)
        qs = sorted(a.keys() & b.keys(), key=str)
        if not qs:
            continue
        xa, xb = [a[q] for q in qs], [b[q] for q in qs]
        binary = len(t) == 1
        d, lo, hi = (paired_difference_ci([bool(x) for x in xb], [bool(x) for x in xa]) if binary
                     else paired_mean_difference_ci(xb, xa))
        out[name] = {"n": len(qs), "a": _r(sum(xa) / len(qs)), "b": _r(sum(xb) / len(qs)), "difference": _r(d),
                     "ci95": [_r(lo), _r(hi)]}
    return {"measures": out, "intervals": {"accuracy": INTERVALS["difference"], "difference": MEAN_INTERVAL}}
