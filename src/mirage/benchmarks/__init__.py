"""Benchmarks: a registry of loaders, each returning a `Benchmark` of `Question`s."""

from __future__ import annotations

from ..registry import Registry
from .question import Benchmark, ImageLoadError, Question, letter_prompt

BENCHMARKS: Registry = Registry("benchmark")


@BENCHMARKS.register("shapes")
def _shapes(split: str = "test", seed: int = 0) -> Benchmark:
    from .shapes import load_shapes

    return load_shapes(split, seed=seed)


def load_benchmark(name: str, split: str = "test", limit: int | None = None, **kwargs) -> Benchmark:
    """Load benchmark `name` (see `BENCHMARKS.names()`) at `split`, keeping the first `limit` questions."""
    bench = BENCHMARKS.get(name)(split=split, **kwargs)
    return bench.subset(limit)


__all__ = ["BENCHMARKS", "Benchmark", "ImageLoadError", "Question", "letter_prompt", "load_benchmark"]
