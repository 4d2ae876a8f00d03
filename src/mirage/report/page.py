"""The page of a run or of a study directory: which report a directory gets, written atomically beside it."""

from __future__ import annotations

from pathlib import Path

from .build import REPORT, build_run_report
from .gallery import DEFAULT_MAX_IMAGES
from .study import build_study_report, is_study


def build_report(run_dir: str | Path, max_images: int = DEFAULT_MAX_IMAGES, questions: bool = True) -> str:
    """The report of the run (or study) in `run_dir` as one HTML string (images and plots embedded). Reads the
    run's files and, when `questions` and cheap, its benchmark's questions; never loads a model."""
    if not Path(run_dir).is_dir():
        from ..errors import MirageError

        what = "is a file" if Path(run_dir).exists() else "does not exist"
        raise MirageError(f"{str(run_dir)!r} {what}: give a run or study directory (one with config.json)")
    if is_study(run_dir):
        return build_study_report(run_dir, max_images, questions)
    return build_run_report(run_dir, max_images, questions)


def write_report(run_dir: str | Path, out: str | Path | None = None, max_images: int = DEFAULT_MAX_IMAGES,
                 questions: bool = True) -> Path:
    """Write the report of `run_dir` (a run or a study directory) to `out` (default RUN_DIR/report.html); returns
    its path."""
    html = build_report(run_dir, max_images, questions)
    path = Path(out) if out is not None else Path(run_dir) / REPORT
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
