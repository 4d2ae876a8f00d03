"""ScienceQA (Lu et al., NeurIPS 2022): multiple-choice science questions, by default the ones with an image
(ScienceQA-IMG), asked with the LLaVA-1.5 / lmms-eval prompt."""

from __future__ import annotations

from pathlib import Path

from .question import LETTERS, Benchmark, Question

HUB_ID = "derek-thomas/ScienceQA"
META_FIELDS = ("hint", "grade", "topic", "category", "skill")


def build_prompt(question: Question) -> str:
    """The lmms-eval default ScienceQA prompt: optional `Context: hint` line, question, lettered choices, instruction."""
    # Byte for byte as lmms-eval's sqa_doc_to_text, format "default" (lmms_eval/tasks/scienceqa/utils.py), with
    # pre_prompt "" and post_prompt "\nAnswer with the option's letter from the given choices directly."
    # (lmms_eval/tasks/scienceqa/scienceqa_img.yaml). The hint is used as is, inner newlines included.
    hint = question.meta.get("hint") or ""
    context = f"Context: {hint}\n" if hint else ""
    choices = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices))
    return f"{context}{question.text}\n{choices}\nAnswer with the option's letter from the given choices directly."


def _image_ref(image: dict | None):
    """A hub image struct {bytes, path} as a stored ref, or None when the row has no image."""
    if not image:
        return None
    if image.get("bytes"):
        return image["bytes"]
    return image.get("path") or None


def _split_files(data_dir: Path, split: str) -> list[Path]:
    """The parquet shards of `split` in the hub layout, in order; errors name the folder and the split."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"ScienceQA folder {str(data_dir)!r} does not exist")
    files = sorted((data_dir / "data").glob(f"{split}-*.parquet"))
    if not files:
        from ..registry import did_you_mean

        found = sorted({p.name.split("-")[0] for p in (data_dir / "data").glob("*.parquet")})
        if not found:
            raise FileNotFoundError(f"no ScienceQA parquet files in {str(data_dir / 'data')!r} "
                                    f"(expected data/<split>-*.parquet)")
        raise ValueError(did_you_mean("ScienceQA split", split, found) + f" in {str(data_dir)!r}")
    return files


def _questions(rows: dict[str, list], start: int, split: str, all_questions: bool) -> list[Question]:
    """Questions of one table's columns; `start` is the split's row index of its first row (for stable ids)."""
    out = []
    for i, (image, choices) in enumerate(zip(rows["image"], rows["choices"])):
        ref = _image_ref(image)
        if ref is None and not all_questions:
            continue
        out.append(Question(id=f"scienceqa-{split}-{start + i:05d}", text=rows["question"][i], choices=tuple(choices),
                            answer=int(rows["answer"][i]), images=() if ref is None else (ref,),
                            type=rows["subject"][i] or "",
                            meta={k: rows[k][i] or "" for k in META_FIELDS}))
    return out


def load_scienceqa(split: str = "test", data_dir: str | Path | None = None, all_questions: bool = False) -> Benchmark:
    """ScienceQA `split` from a local copy in the hub layout (`data_dir`) or the hub; image questions only
    unless `all_questions` (test: 2,017 of 4,241)."""
    if data_dir is None:
        from ..errors import require

        datasets = require("datasets", "--benchmark scienceqa from the hub",
                           "give --data-dir with a local copy (data/<split>-*.parquet)")

        # The arrow view keeps images as {bytes, path} structs: no decoding at load time.
        tables = [datasets.load_dataset(HUB_ID, split=split).with_format("arrow")[:]]
    else:
        import pyarrow.parquet as pq

        tables = [pq.read_table(f) for f in _split_files(Path(data_dir), split)]
    questions, start = [], 0
    for table in tables:
        cols = table.select(["image", "question", "choices", "answer", "subject", *META_FIELDS])
        questions += _questions(cols.to_pydict(), start, split, all_questions)
        start += table.num_rows
    return Benchmark("scienceqa", split, questions, build_prompt)
