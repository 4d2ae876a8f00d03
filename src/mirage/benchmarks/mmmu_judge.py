"""MMMU's official answer parsing and judging, ported from mmmu/utils/eval_utils.py (MMMU-Benchmark/MMMU): same
results on every input. `judge_response` is what `Benchmark.judge` uses by default, for every benchmark."""

from __future__ import annotations

import random
import re

from ..seeding import seed_for


def parse_multi_choice_response(response: str, all_choices: list[str], index2ans: dict,
                                rng: random.Random | None = None) -> str:
    """The predicted letter in a free-form response, as the official parser finds it (random when none is found;
    `rng` makes that draw reproducible, default `random.Random(0)`)."""
    for char in [",", ".", "!", "?", ";", ":", "'"]:  # one after the other, as the official loop does
        response = response.strip(char)
    response = f" {response} "  # spaces around so " A " also matches at either end

    by_letter = True  # False once the candidates come from option texts
    candidates = [c for c in all_choices if f"({c})" in response]
    bracketed = bool(candidates)
    if not candidates:
        candidates = [c for c in all_choices if f" {c} " in response]
    # Only a longer response (more than 5 words) is searched for an option's text.
    if not candidates and len(response.split()) > 5:
        candidates = [k for k, ans in index2ans.items() if ans.lower() in response.lower()]
        by_letter = not candidates

    if not candidates:
        return (rng or random.Random(0)).choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    # Several: the one mentioned last wins; ties go to the earlier candidate (np.argmax keeps the first maximum).
    if by_letter:
        pattern = "({})" if bracketed else " {} "
        starts = [response.rfind(pattern.format(c)) for c in candidates]
    else:
        starts = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return candidates[starts.index(max(starts))]


def check_is_number(string: str) -> bool:
    """Whether `string` parses as a float once commas are removed."""
    try:
        float(string.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize_str(string: str) -> list:
    """A number as `[float rounded to 2 decimals]`; text lower-cased, a single character padded both ways."""
    string = string.strip()
    if check_is_number(string):
        return [round(float(string.replace(",", "")), 2)]
    string = string.lower()
    if len(string) == 1:
        return [" " + string, string + " "]  # so a one-letter answer only matches as a separate word
    return [string]


_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def extract_numbers(string: str) -> list[str]:
    """All numbers in `string`: with thousands commas, then scientific, then plain (the groups may overlap)."""
    return _NUM_COMMAS.findall(string) + _NUM_SCIENTIFIC.findall(string) + _NUM_SIMPLE.findall(string)


def get_key_subresponses(response: str) -> list[str]:
    """The likely answer parts of a response: per line, the shortest tail after an indicator ("is ", "so ", ...)."""
    response = response.strip().strip(".").lower()
    # The official code lower-cases first, so the sentence split's "(?=[A-Z])" never matches: lines only.
    sub_responses = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    keys = []
    for index, resp in enumerate(sub_responses):
        if index == len(sub_responses) - 1:
            indicators.append("=")  # the last part may be just an equation
        shortest = None
        for indicator in indicators:
            if indicator in resp:
                tail = resp.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", ":", "'"]:
            keys.append(shortest)
    return keys or [response]


def parse_open_response(response: str) -> list:
    """Candidate answers of an open response: key parts and the numbers in them, normalised (`normalize_str`).
    The official code dedupes with a set; this keeps first occurrences in order (same elements, stable order)."""
    keys = get_key_subresponses(response)
    preds = keys + [n for key in keys for n in extract_numbers(key)]
    return list(dict.fromkeys(p for pred in preds for p in normalize_str(pred)))


def eval_multi_choice(gold, pred: str) -> bool:
    """Whether the predicted letter equals the gold one (or one of a list of golds)."""
    return pred in gold if isinstance(gold, list) else gold == pred


def eval_open(gold, pred_list) -> bool:
    """Whether an open answer is right: a gold string inside a candidate string, or a gold number equal to a
    candidate number (both rounded to 2 decimals). `pred_list` is `parse_open_response`'s list, never one string."""
    if isinstance(pred_list, str):
        # Passing a single string makes the official loop compare characters (a known bug of a popular port).
        raise TypeError("eval_open expects the candidate list from parse_open_response, not a string")
    golds = [g for answer in (gold if isinstance(gold, list) else [gold]) for g in normalize_str(answer)]
    for pred in pred_list:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False


def judge_response(q, text: str, seed: int = 0) -> tuple[str, str, bool]:
    """(pred, answer, correct) of a `Question` `q` (not imported: question.py imports this module). Open questions
    by the official `eval_open`; multiple choice by the official `parse_multi_choice_response`, whose random
    fallback is seeded per question, so a resumed run parses alike."""
    if q.kind == "open":
        return text, q.meta["answer"], bool(eval_open(q.meta["answer"], parse_open_response(text)))
    rng = random.Random(seed_for("parse", seed, q.id))
    pred = parse_multi_choice_response(text, list(q.letters), dict(zip(q.letters, q.choices)), rng)
    return pred, q.answer_letter, pred == q.answer_letter
