"""What a spec cannot say as data, as named functions: prompt styles (each an lmms-eval `doc_to_text`, with its
`lmms_eval_specific_kwargs` passed from the spec) and parsers of options written inside the question text."""

from __future__ import annotations

import re
from typing import Any, Callable

from ..registry import Registry
from .question import LETTERS, Question

PROMPT_STYLES: Registry[Callable[[Question, dict], str]] = Registry("prompt style")
CHOICE_PARSERS: Registry[Callable[[str, str | None], tuple[str, ...]]] = Registry("choice parser")
ROW_HOOKS: Registry[Callable[[dict, str], Question]] = Registry("row hook")
JUDGES: Registry[Callable[[Question, str, int], tuple]] = Registry("judge")


def _lines(question: Question, sep: str = "\n") -> str:
    return sep.join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices))


# ----------------------------------------------------------------------------------------------- prompt styles


@PROMPT_STYLES.register("question")
def question_only(q: Question, args: dict[str, Any]) -> str:
    """The question text alone between pre and post prompt, options already in it (mmstar, pope, realworldqa).
    `remove` is taken out of the question when the prompt named in `remove_when` ("pre", "post") is non-empty."""
    pre, post = args.get("pre_prompt", ""), args.get("post_prompt", "")
    text = q.text.strip() if args.get("strip", True) else q.text
    for part, prompt in (("pre", pre), ("post", post)):
        if prompt and part in args.get("remove_when", ()):
            text = text.replace(args["remove"], "")
    return f"{pre}{text}{post}"


@PROMPT_STYLES.register("options")
def question_then_options(q: Question, args: dict[str, Any]) -> str:
    """`{pre}{hint line}{question}\\n{A. choice lines}{post_sep}{post}` (ai2d "mcq", seedbench, mmmu-pro, scienceqa)."""
    hint = q.meta.get("hint") or ""
    context = args["hint_format"].format(hint=hint) if hint and args.get("hint_format") else ""
    return (f"{args.get('pre_prompt', '')}{context}{q.text}\n{_lines(q, args.get('option_sep', chr(10)))}"
            f"{args.get('post_sep', '')}{args.get('post_prompt', '')}")


@PROMPT_STYLES.register("cvbench")
def cvbench(q: Question, args: dict[str, Any]) -> str:
    """lmms-eval's cv_bench_doc_to_text: the pre prompt with the letters filled in, a newline, the row's prompt."""
    return args.get("pre_prompt", "").format(", ".join(q.letters)) + "\n" + q.text


@PROMPT_STYLES.register("mmbench")
def mmbench(q: Question, args: dict[str, Any]) -> str:
    """lmms-eval's mmbench_doc_to_text: `{hint} {question} {sys_prompt}\\nA. ..` then `\\n{post_prompt}`.
    A null hint (or the text "nan") leaves the hint and its space out; an empty one keeps the space, as there."""
    options = args["sys_prompt"] + "\n" + _lines(q)
    hint = q.meta.get("hint")
    query = f"{hint} {q.text} {options}" if hint is not None and hint != "nan" else f"{q.text} {options}"
    return f"{query}\n{args['post_prompt']}" if args.get("post_prompt") is not None else query


@PROMPT_STYLES.register("mathvista_format")
def mathvista_format(q: Question, args: dict[str, Any]) -> str:
    """MathVista's create_one_query with shot_type "format-prompt", 0 shots, no caption/OCR, multiple-choice rows:
    question (+ " (Unit: u)"), `A. choice` lines, the hint, non-empty parts joined by newlines, stripped."""
    question = q.text + (f" (Unit: {q.meta['unit']})" if q.meta.get("unit") else "")
    parts = [question, _lines(q), args["hint"]]
    return ("\n\n" + "\n".join(p for p in parts if p != "")).strip()


@PROMPT_STYLES.register("mmmu_llava")
def mmmu_llava(q: Question, args: dict[str, Any]) -> str:
    """MMMU's official LLaVA-1.5 prompt (`mirage.benchmarks.mmmu.mmmu_prompt`)."""
    from .mmmu import mmmu_prompt

    return mmmu_prompt(q)


def _mmmu_options(q: Question) -> list[str]:
    import ast

    raw = q.meta.get("options")
    return list(ast.literal_eval(raw)) if isinstance(raw, str) else list(q.choices)


@PROMPT_STYLES.register("mmmu_lmms_eval")
def mmmu_lmms_eval(q: Question, args: dict[str, Any]) -> str:
    """lmms-eval's mmmu_doc_to_text (construct_prompt, not interleaved): `{question}\n{A. option lines}\n\n{mc
    prompt}`, or `{question}\n\n{open prompt}` for open questions."""
    if q.kind == "mc":
        options = "\n".join(f"{letter}. {o}" for letter, o in zip(LETTERS, _mmmu_options(q)))
        return f"{q.text}\n{options}\n\n{args['multiple_choice_prompt']}"
    return f"{q.text}\n\n{args['open_ended_prompt']}"


@PROMPT_STYLES.register("mmmu_qwen")
def mmmu_qwen(q: Question, args: dict[str, Any]) -> str:
    """lmms-eval's mmmu_doc_to_text_qwen3vl (format "qwen3_vl", from the Qwen3-VL report): `{pre}{question}
    \nOptions:\n{A. option lines}\n{post}`, the open prompt instead of the post prompt for open questions."""
    options = "\n".join(f"{letter}. {o}" for letter, o in zip(LETTERS, _mmmu_options(q)))
    tail = args["post_prompt"] if q.kind == "mc" else args["open_ended_prompt"]
    return f"{args['pre_prompt']}{q.text}\nOptions:\n{options}\n{tail}"


# ----------------------------------------------------------------------------------------------- choice parsers


@CHOICE_PARSERS.register("labelled_in_text")
def labelled_in_text(text: str, marker: str | None = None) -> tuple[str, ...]:
    """Options written as `A: x, B: y` or `A. x` lines in the question, after the last `marker` when given: the
    labels are found in order A, B, C..., each option ends at the next label or the end of its line. Empty when
    no "A" label is found; an option whose text is empty is its bare letter."""
    start = text.rfind(marker) + len(marker) if marker and marker in text else 0
    region = text[start:]
    spans = []
    pos = 0
    for letter in LETTERS:
        # a label: the letter after a line start, space, comma or "(", followed by ".", ":" or ")"
        m = re.compile(rf"(?:^|(?<=[\s,(])){letter}[.:)]\s?", re.M).search(region, pos)
        if m is None:
            break
        spans.append((m.start(), m.end()))
        pos = m.end()
    options = []
    for i, (_, end) in enumerate(spans):
        stop = spans[i + 1][0] if i + 1 < len(spans) else len(region)
        option = region[end:stop].split("\n", 1)[0].strip().rstrip(",").strip()
        options.append(option or LETTERS[i])
    return tuple(options)


# ----------------------------------------------------------------------------------------------- row hooks


@ROW_HOOKS.register("mmmu")
def mmmu_row(row: dict, config: str) -> Question:
    """An MMMU row (config = its subject) with the fields the official parser reads (`mmmu.row_to_question`)."""
    from .mmmu import row_to_question

    return row_to_question(row, config)


# ----------------------------------------------------------------------------------------------- judges


@JUDGES.register("exact_text")
def exact_text(q: Question, response: str, seed: int = 0) -> tuple[str, str, bool]:
    """lmms-eval's pope_process_results: the whole response, stripped and lower-cased, equals the gold text."""
    pred, gold = response.strip().lower(), q.choices[q.answer]
    return pred, gold, pred == gold.strip().lower()
