"""Loading MMMU: a local copy in the hub layout (`<Subject>/<split>-*.parquet`) or the hub's files of the asked
subjects and split, read by the spec-driven hub loader through specs/mmmu.toml. Apart from `mmmu` (the rows and the
official prompt), which the hub loader's hooks use, so that the loader sits above them."""

from __future__ import annotations

from pathlib import Path

from .mmmu import SPLITS, SUBJECTS, mmmu_prompt
from .question import Benchmark


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


def _local_files(data_dir: Path, split: str, subjects: tuple[str, ...], explicit: bool) -> list[tuple[str, list[Path]]]:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"MMMU data directory {str(data_dir)!r} does not exist")
    groups = []
    for subject in subjects:
        files = sorted((data_dir / subject).glob(f"{split}-*.parquet"))
        if not files and explicit:
            raise FileNotFoundError(f"no MMMU {split!r} parquet for subject {subject!r} in {str(data_dir / subject)!r} "
                                    f"(expected {subject}/{split}-*.parquet)")
        if files:
            groups.append((subject, files))
    if not groups:
        raise FileNotFoundError(f"no MMMU {split!r} parquet files in {str(data_dir)!r} "
                                f"(expected <Subject>/{split}-*.parquet)")
    return groups


def _spec():
    from .spec import SPEC_DIR, load_spec

    return load_spec(SPEC_DIR / "mmmu.toml")


def load_mmmu(split: str = "validation", data_dir: str | Path | None = None, subjects=None, seed: int = 0) -> Benchmark:
    """MMMU `split` from `data_dir` (hub layout `<Subject>/<split>-*.parquet`) or, when None, from the hub (only
    those subjects' files of that split). `subjects` restricts to some of `SUBJECTS`; questions come by subject,
    then file order. `seed` is unused (fixed data). Rows are read by the hub loader through specs/mmmu.toml."""
    from .hub import download, read_questions

    if split not in SPLITS:
        from ..registry import did_you_mean

        raise ValueError(did_you_mean("MMMU split", split, list(SPLITS)))
    chosen = _check_subjects(subjects)
    spec, from_hub = _spec(), data_dir is None
    if from_hub:
        data_dir = download(spec, [g for s in chosen for g in spec.files(s, split)])
    groups = _local_files(Path(data_dir), split, chosen, explicit=subjects is not None or from_hub)
    questions = [q for subject, files in groups for q in read_questions(spec, files, subject, split)]
    from .hub import spec_prompts

    return Benchmark("mmmu", split, questions, mmmu_prompt, prompts=spec_prompts(spec), prompt_name=spec.prompt_name)
