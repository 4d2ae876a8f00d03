"""MMMU (Yue et al., CVPR 2024): loader and the official LLaVA-1.5 prompt (the official answer parsing: mmmu_judge).
Like the official LLaVA-1.5 runner, which feeds the model only `image_1` (its check for images in the options never
fires, since it iterates the options *string*), evaluation here uses a question's first image; `<image N>` tags stay.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from .question import LETTERS, Benchmark, Question

# The 30 hub configs of MMMU/MMMU, in the official runner's order (CAT_SHORT2LONG, alphabetical).
SUBJECTS = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
    "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design",
    "Diagnostics_and_Laboratory_Medicine", "Economics", "Electronics", "Energy_and_Power", "Finance", "Geography",
    "History", "Literature", "Manage", "Marketing", "Materials", "Math", "Mechanical_Engineering", "Music",
    "Pharmacy", "Physics", "Psychology", "Public_Health", "Sociology",
)
SPLITS = ("dev", "validation", "test")
IMAGE_COLUMNS = tuple(f"image_{i}" for i in range(1, 8))

# configs/llava1.5.yaml: its double-quoted YAML scalars fold each blank line into a single "\n", so the
# multiple-choice template is "{}\n{}\nAnswer ..." and the short-answer one is "{}\nAnswer ...".
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."


# ----------------------------------------------------------------------------------------------- prompts


def _mc_prompt(question: str, options: list[str] | tuple[str, ...]) -> str:
    # Each option line ends in "\n" and the template adds another, hence the blank line before the instruction.
    example = "".join(f"({LETTERS[i]}) {opt}\n" for i, opt in enumerate(options))
    return f"{question}\n{example}\n{MC_INSTRUCTION}"


def _open_prompt(question: str) -> str:
    return f"{question}\n{OPEN_INSTRUCTION}"


def build_prompt(sample: dict) -> str:
    """The official LLaVA-1.5 MMMU prompt for a hub-schema row (no task instruction; LLaVA adds `<image>\\n`)."""
    if sample["question_type"] == "multiple-choice":
        return _mc_prompt(sample["question"], ast.literal_eval(sample["options"]))
    return _open_prompt(sample["question"])  # the official code treats every other type as open


def mmmu_prompt(question: Question) -> str:
    """`build_prompt` for a loaded `Question` (the Benchmark's prompt style)."""
    return _mc_prompt(question.text, question.choices) if question.kind == "mc" else _open_prompt(question.text)


# ----------------------------------------------------------------------------------------------- loading


def multi_choice_info(options: list[str]) -> tuple[dict[str, str], list[str]]:
    """`(index2ans, all_choices)` of a list of options: letter -> option text, and the letters in order."""
    letters = list(LETTERS[: len(options)])
    return dict(zip(letters, options)), letters


def row_to_question(row: dict, subject: str) -> Question:
    """One hub-schema row as a `Question` (multiple choice, or kind "open" with the gold in `meta["answer"]`)."""
    images, numbers = [], []
    for n, col in enumerate(IMAGE_COLUMNS, start=1):
        img = row.get(col)
        if img and (img.get("bytes") or img.get("path")):
            images.append(img.get("bytes") or img["path"])
            numbers.append(n)
    meta: dict[str, Any] = {k: row.get(k) for k in ("question_type", "subfield", "img_type", "topic_difficulty")}
    meta["options"] = row["options"]
    # Which image_N each stored image is: the official runner uses image_1 only, which is images[0] when present.
    meta["image_numbers"] = numbers
    if row["question_type"] != "multiple-choice":
        meta["answer"] = row["answer"]
        return Question(id=row["id"], text=row["question"], choices=(), answer=-1, images=tuple(images),
                        type=subject, meta=meta, kind="open")
    options = list(ast.literal_eval(row["options"]))
    index2ans, all_choices = multi_choice_info(options)
    answer = row["answer"]
    if answer not in all_choices:
        raise ValueError(f"MMMU question {row['id']!r}: answer {answer!r} is not one of the letters {all_choices} "
                         "(the test split's answers are hidden; use 'validation' or 'dev')")
    meta.update(index2ans=index2ans, all_choices=all_choices)
    return Question(id=row["id"], text=row["question"], choices=tuple(options), answer=all_choices.index(answer),
                    images=tuple(images), type=subject, meta=meta)


def _check_subjects(subjects) -> tuple[str, ...]:
    if subjects is None:
        return SUBJECTS
    if isinstance(subjects, str):
        subjects = [subjects]
    from ..registry import did_you_mean

    for s in subjects:
        if s not in SUBJECTS:
            raise ValueError(did_you_mean("MMMU subject", s, list(SUBJECTS)))
    return tuple(subjects)


def _local_tables(data_dir: Path, split: str, subjects: tuple[str, ...], explicit: bool) -> list[tuple[str, Any]]:
    import pyarrow.parquet as pq

    if not data_dir.is_dir():
        raise FileNotFoundError(f"MMMU data directory {str(data_dir)!r} does not exist")
    tables = []
    for subject in subjects:
        files = sorted((data_dir / subject).glob(f"{split}-*.parquet"))
        if not files and explicit:
            raise FileNotFoundError(f"no MMMU {split!r} parquet for subject {subject!r} in {str(data_dir / subject)!r} "
                                    f"(expected {subject}/{split}-*.parquet)")
        tables += [(subject, pq.read_table(f)) for f in files]
    if not tables:
        raise FileNotFoundError(f"no MMMU {split!r} parquet files in {str(data_dir)!r} "
                                f"(expected <Subject>/{split}-*.parquet)")
    return tables


def _hub_tables(split: str, subjects: tuple[str, ...]) -> list[tuple[str, Any]]:
    from ..errors import require

    load_dataset = require("datasets", "--benchmark mmmu from the hub",
                           "give --data-dir with a local copy (<Subject>/<split>-*.parquet)").load_dataset

    # Arrow format keeps the images as the hub's {bytes, path} structs, the same rows a local parquet gives.
    return [(s, load_dataset("MMMU/MMMU", s, split=split).with_format("arrow")[:]) for s in subjects]


def load_mmmu(split: str = "validation", data_dir: str | Path | None = None, subjects=None, seed: int = 0) -> Benchmark:
    """MMMU `split` from `data_dir` (hub layout `<Subject>/<split>-*.parquet`) or, when None, from the hub.
    `subjects` restricts to some of `SUBJECTS`; questions come by subject, then file order. `seed` is unused (fixed data)."""
    if split not in SPLITS:
        from ..registry import did_you_mean

        raise ValueError(did_you_mean("MMMU split", split, list(SPLITS)))
    chosen = _check_subjects(subjects)
    if data_dir is None:
        tables = _hub_tables(split, chosen)
    else:
        tables = _local_tables(Path(data_dir), split, chosen, explicit=subjects is not None)
    questions = [row_to_question(row, subject) for subject, table in tables for row in table.to_pylist()]
    return Benchmark("mmmu", split, questions, mmmu_prompt)
