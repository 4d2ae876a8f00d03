"""Benchmarks: a registry of loaders, each returning a `Benchmark` of `Question`s; the field's benchmarks are
spec files (`specs/*.toml`) read by one hub loader (`hub.py`)."""

from __future__ import annotations

from functools import partial

from ..registry import Registry
from .question import Benchmark, ImageLoadError, Question, letter_prompt
from .spec import SPEC_DIR, BenchmarkSpec, load_spec

BENCHMARKS: Registry = Registry("benchmark")
# The loader options each benchmark takes (what the CLI may pass it), beside its split.
OPTIONS: dict[str, tuple[str, ...]] = {"shapes": (), "scienceqa": ("data_dir", "all_questions"),
                                       "mmmu": ("data_dir", "subjects")}


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
    from .mmmu_loader import load_mmmu

    return load_mmmu(split, data_dir=data_dir, subjects=subjects, seed=seed)


def _spec_loader(path, **kwargs) -> Benchmark:
    from .hub import load_spec_benchmark

    return load_spec_benchmark(load_spec(path), **kwargs)


def spec_options(spec: BenchmarkSpec) -> tuple[str, ...]:
    """What a spec benchmark takes: a local copy, its config when it has several, circular evaluation."""
    return ("data_dir", *((spec.config_option,) if len(spec.configs) > 1 else ()),
            *((spec.unfiltered_option,) if spec.unfiltered_option else ()), "circular")


# Registered by file name (no file is parsed at import); `mirage benchmarks` lists them. A benchmark registered
# above (scienceqa) keeps its own loader, which reads its spec too.
for _path in sorted(SPEC_DIR.glob("*.toml")):
    if _path.stem not in BENCHMARKS:
        BENCHMARKS.register(_path.stem)(partial(_spec_loader, _path))


def benchmark_options(name: str) -> tuple[str, ...]:
    """The loader options benchmark `name` takes (`file:` none, `lmms:TASK` a local copy, `spec:PATH` and the
    bundled specs their own)."""
    if name.startswith("file:"):
        return ()
    if name.startswith("lmms:"):
        return ("data_dir",)
    if name.startswith("spec:"):
        return spec_options(load_spec(name[len("spec:"):]))
    BENCHMARKS.get(name)  # an unknown name fails here, with "did you mean"
    return OPTIONS[name] if name in OPTIONS else spec_options(load_spec(SPEC_DIR / f"{name}.toml"))


def config_option(name: str) -> str | None:
    """The keyword that picks benchmark `name`'s config (`config`, mmmu-pro `options`), None when it has one."""
    if name.startswith(("file:", "lmms:")):
        return None
    if not name.startswith("spec:"):
        BENCHMARKS.get(name)  # an unknown name fails here, with "did you mean"
        if name in OPTIONS:
            return None
    spec = load_spec(name[len("spec:"):] if name.startswith("spec:") else SPEC_DIR / f"{name}.toml")
    return spec.config_option if len(spec.configs) > 1 else None


def load_benchmark(name: str, split: str | None = None, limit: int | None = None, check_images: bool = True,
                   **kwargs) -> Benchmark:
    """Load benchmark `name` (see `BENCHMARKS.names()`, `file:PATH` for a local JSONL file, whose `split` is
    ignored, `lmms:TASK` for an lmms-eval task or group, or `spec:PATH` for a spec file of one's own) at `split`,
    keeping the first `limit` questions. With `check_images`, those of them with an image that cannot be decoded
    are skipped and recorded (`Benchmark.readable`; a `file:` set refuses such a line instead, on load): off where
    the questions are only shown or copied (the report, curate), not asked."""
    if name.startswith("file:"):
        from .local import load_jsonl

        path = name[len("file:"):]
        return _by_file(load_jsonl(path, **kwargs), "file", path).subset(limit)
    if name.startswith("lmms:"):
        from .lmms import load_lmms

        bench = load_lmms(name[len("lmms:"):], split=split, **kwargs).subset(limit)
        return bench.readable() if check_images else bench
    circular = kwargs.pop("circular", False)  # applied after `limit`: the first N questions, each rotated
    if name.startswith("spec:"):
        path = name[len("spec:"):]
        bench = _by_file(_spec_loader(path, split=split, **kwargs), "spec", path).subset(limit)
    else:
        loader = BENCHMARKS.get(name)
        bench = loader(**kwargs) if split is None else loader(split=split, **kwargs)  # None: the benchmark's default
        bench = bench.subset(limit)
    if check_images:
        bench = bench.readable()
    if circular:
        from .circular import circular_benchmark

        bench = circular_benchmark(bench)
    return bench


def _by_file(bench: Benchmark, kind: str, path) -> Benchmark:
    """A benchmark read from a file of one's own, named by the file's resolved path and its content's sha256."""
    import hashlib
    from dataclasses import replace
    from pathlib import Path

    path = Path(path).resolve()
    return replace(bench, ref=f"{kind}:{path}", digest=hashlib.sha256(path.read_bytes()).hexdigest())


def list_benchmarks() -> list[dict]:
    """One entry per registered benchmark: name, hub id, configs and splits with their sizes where known, the
    lmms-eval file its prompt follows."""
    from .spec import bundled_specs

    specs = bundled_specs()
    out = []
    for name in BENCHMARKS.names():
        spec = specs.get(name)
        if spec is None:  # ShapesQA: generated here, no hub files and no lmms-eval task
            from .shapes.dataset import SPLITS

            out.append({"name": name, "hub": "(generated locally)",
                        "splits": {s: n for s, (_, n) in SPLITS.items()} if name == "shapes" else {},
                        "follows": "mirage's letter prompt" if name == "shapes" else "",
                        "options": OPTIONS.get(name, ())})
            continue
        if len(spec.configs) > 4:  # many alike configs read together (MMMU's subjects): by split
            splits = {s: spec.sizes.get(f"all/{s}") for s in spec.configs[spec.default_config]}
        else:
            splits = {f"{c}/{s}" if len(spec.configs) > 1 else s: spec.sizes.get(f"{c}/{s}")
                      for c, ss in spec.configs.items() for s in ss}
        out.append({"name": name, "hub": spec.hub, "splits": splits, "follows": spec.follows,
                    "options": benchmark_options(name)})
    return out


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkSpec", "ImageLoadError", "Question", "benchmark_options", "config_option",
           "letter_prompt", "list_benchmarks", "load_benchmark", "load_spec"]
