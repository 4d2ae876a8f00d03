"""Local benchmarks (`file:PATH`): multiple-choice questions from a JSONL file, validated in full on load.

A line holds one image (`image`: a path) or several (`images`: a list of paths, in the order the question asks them;
its text, or its `prompt`, places each at an `<image>` marker, else all stand before the text), as `mirage curate`
writes a several-image benchmark's questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .question import LETTERS, Benchmark, Question

REQUIRED = ("id", "question", "choices", "answer")


def mc_prompt(question: Question) -> str:
    """Generic multiple-choice prompt: question, one `A. choice` line per choice, the answer-by-letter instruction."""
    # ScienceQA's (lmms-eval) prompt without its context line, so that local sets are asked like real benchmarks.
    choices = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices))
    return f"{question.text}\n{choices}\nAnswer with the option's letter from the given choices directly."


def file_prompt(question: Question) -> str:
    """A line's own `prompt` (the exact text its source benchmark asked, as `mirage curate` writes), else `mc_prompt`."""
    return question.meta.get("prompt") or mc_prompt(question)


class _LineError(ValueError):
    pass


def _check_image(path: Path, key: str = "image") -> None:
    """Refuse a missing or unreadable image now, not midway through an evaluation (and at the same place on every
    resume): the whole image is decoded, so a truncated file is found here too."""
    if not path.is_file():
        raise _LineError(f"field {key!r}: image file {str(path)!r} does not exist")
    import warnings

    from .question import strict_decoding

    try:
        with warnings.catch_warnings(), strict_decoding():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # said once where it is read
            with Image.open(path) as im:
                im.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise _LineError(f"field {key!r}: cannot read image file {str(path)!r}: {e}") from e


def _answer_index(answer: Any, n: int) -> int:
    span = f"{n} choices (A-{LETTERS[n - 1]})"
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise _LineError(f"field 'answer': must be a letter or an int index, not {type(answer).__name__}")
    if isinstance(answer, int):
        if not 0 <= answer < n:
            raise _LineError(f"field 'answer': index {answer} is outside the {span}")
        return answer
    letter = answer.strip().upper()
    if len(letter) != 1 or letter not in LETTERS[:n]:
        raise _LineError(f"field 'answer': {answer!r} is not a letter of the {span}")
    return LETTERS.index(letter)


def _question(row: Any, folder: Path) -> Question:
    """One parsed line as a Question; raises _LineError naming the field at fault."""
    if not isinstance(row, dict):
        raise _LineError(f"expected a JSON object, got {type(row).__name__}")
    for key in REQUIRED:
        if key not in row:
            raise _LineError(f"field {key!r} is missing")
    if not isinstance(row["id"], str) or not row["id"]:
        raise _LineError("field 'id': must be a non-empty string")
    if not isinstance(row["question"], str):
        raise _LineError("field 'question': must be a string")
    choices = row["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise _LineError("field 'choices': must be a list of strings")
    if not 2 <= len(choices) <= len(LETTERS):
        raise _LineError(f"field 'choices': needs 2..{len(LETTERS)} choices, has {len(choices)}")
    answer = _answer_index(row["answer"], len(choices))
    for key in ("image", "type", "subject", "prompt"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise _LineError(f"field {key!r}: must be a string")
    names = [row["image"]] if row.get("image") else []
    if row.get("images") is not None:
        if names:
            raise _LineError("fields 'image' and 'images': give one of them (one image, or a list of several)")
        names = row["images"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise _LineError("field 'images': must be a non-empty list of image paths")
    for name in names:
        _check_image(folder / name, "images" if "images" in row else "image")
    images = tuple(str(folder / name) for name in names)
    qtype = row.get("type") or row.get("subject") or ""
    meta = {k: v for k, v in row.items() if k not in (*REQUIRED, "image", "images", "type")}
    return Question(id=row["id"], text=row["question"], choices=tuple(choices), answer=answer, images=images,
                    type=qtype, meta=meta)


def load_jsonl(path: str | Path) -> Benchmark:
    """A benchmark from a JSONL file (one question a line: id, question, choices, answer, optional
    image or images/type/subject/prompt);
    any bad line is refused with a ValueError naming the file, the line and the field. A file with `images` lines
    asks each question with every image it holds (`Benchmark.all_images`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {str(path)!r} does not exist")
    questions: list[Question] = []
    first_line: dict[str, int] = {}
    several = False
    with open(path, "rb") as f:  # decoded line by line, so that bad bytes are reported with their line
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                try:  # a byte-order mark opens the files Excel exports: not part of the JSON
                    row = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
                except UnicodeDecodeError as e:
                    raise _LineError(f"not valid UTF-8 ({e})") from e
                except json.JSONDecodeError as e:  # json's own "line 1" would contradict ours
                    raise _LineError(f"not valid JSON ({e.msg} at column {e.colno})") from e
                q = _question(row, path.parent)
                if q.id in first_line:
                    raise _LineError(f"field 'id': duplicate id {q.id!r} (first on line {first_line[q.id]})")
            except _LineError as e:
                raise ValueError(f"{path}, line {lineno}: {e}") from e
            first_line[q.id] = lineno
            questions.append(q)
            several = several or "images" in row
    if not questions:
        raise ValueError(f"{path}: no questions")
    return Benchmark(path.stem, "file", questions, file_prompt, generic_prompt=True, all_images=several)
