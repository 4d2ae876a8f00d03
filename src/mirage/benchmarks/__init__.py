"""Benchmarks: a registry of loaders, each returning a `Benchmark` of `Question`s."""

from __future__ import annotations

from ..registry import Registry
from .question import Benchmark, ImageLoadError, Question, letter_prompt

BENCHMARKS: Registry = Registry("benchmark")


@BENCHMARKS.register("shapes")
def _shapes(split: str = "test", seed: int = 0) -> Benchmark:
    from .shapes import load_shapes

    return load_shapes(split, seed=seed)


@BENCHMARKS.register("scienceqa")
def _scienceqa(split: str = "test", data_dir: str | None = None, all_questions: bool = False) -> Benchmark:
    from .scienceqa import load_scienceqa

    return load_scienceqa(split, data_dir=data_dir, all_questions=all_questions)


@BENCHMARKS.register("mmmu")
def _mmmu(split: str = "validation", data_dir: str | None = None, subjects=None, seed: int = 0) -> Benchmark:
    from .mmmu import load_mmmu

    return load_mmmu(split, data_dir=data_dir, subjects=subjects, seed=seed)


def load_benchmark(name: str, split: str | None = None, limit: int | None = None, **kwargs) -> Benchmark:
    """Load benchmark `name` (see `BENCHMARKS.names()`, or `file:PATH` for a local JSONL file, whose `split` is
    ignored) at `split`, keeping the first `limit` questions."""
    if name.startswith("file:"):
        from .local import load_jsonl

        return load_jsonl(name[len("file:"):], **kwargs).subset(limit)
    loader = BENCHMARKS.get(name)
    bench = loader(**kwargs) if split is None else loader(split=split, **kwargs)  # None: the benchmark's default
    return bench.subset(limit)


__all__ = ["BENCHMARKS", "Benchmark", "ImageLoadError", "Question", "letter_prompt", "load_benchmark"]
