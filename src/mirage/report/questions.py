"""The run's questions (text, choices, real image) by id, when the benchmark loads cheaply from what is on disk."""

from __future__ import annotations

from ..benchmarks.question import Question

# config.json keys that are loader options of the benchmark (see cli._benchmark_options)
LOADER_OPTIONS = ("data_dir", "subjects", "all_questions")


def load_questions(config: dict) -> tuple[dict[str, Question], str]:
    """Questions by id for the run's benchmark and split, and a note; ({}, why) when they cannot be loaded.

    Loads data only (ShapesQA is generated and cached locally; others read their local copy), never a model."""
    from ..benchmarks import load_benchmark

    name = config.get("benchmark")
    if not name:
        return {}, "the run's config names no benchmark"
    opts = {k: config[k] for k in LOADER_OPTIONS if config.get(k)}
    try:
        bench = load_benchmark(name, split=config.get("split"), check_images=False, **opts)  # shown, not asked
    except Exception as e:  # a missing local copy, a renamed file: the report goes on without the questions
        return {}, f"benchmark {name!r} could not be loaded ({type(e).__name__}: {e})"
    return {q.id: q for q in bench}, f"questions from benchmark {name!r}, split {bench.split!r}"


def real_image(question: Question | None):
    """The question's first image, or None when it has none or it cannot be read (the page goes on without it)."""
    from ..benchmarks.question import ImageLoadError

    if question is None or not question.images:
        return None
    try:
        return question.image(0)
    except ImageLoadError:
        return None
