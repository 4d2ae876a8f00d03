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


def load_scienceqa(split: str = "test", data_dir: str | Path | None = None, all_questions: bool = False) -> Benchmark:
    """ScienceQA `split` from a local copy in the hub layout (`data_dir`) or the hub; image questions only
    unless `all_questions` (test: 2,017 of 4,241). Rows are read by the hub loader through specs/scienceqa.toml."""
    from .hub import read_questions, split_files
    from .spec import SPEC_DIR, load_spec

    spec = load_spec(SPEC_DIR / "scienceqa.toml")
    if data_dir is None:
        files = split_files(spec, spec.default_config, split)
    else:
        files = _split_files(Path(data_dir), split)  # its errors list the splits the folder holds
    questions = read_questions(spec, files, spec.default_config, split, filtered=not all_questions)
    return Benchmark("scienceqa", split, questions, build_prompt)
