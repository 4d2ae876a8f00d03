"""mirage: how much of a vision-language model's benchmark score needs a real image?"""

from __future__ import annotations

import importlib
import sys
import types

from ._version import __version__
from .environment import hide_broken_torchvision

hide_broken_torchvision()  # before anything imports transformers: see environment.py

# The public API, imported on first use (PEP 562): `mirage --help` and `import mirage.cli` stay free of torch.
_EXPORTS = {"Benchmark": "benchmarks", "Question": "benchmarks", "load_benchmark": "benchmarks",
            "CONDITIONS": "conditions", "get_condition": "conditions", "parse_conditions": "conditions",
            "EvalResult": "evaluate", "evaluate": "evaluate", "VLM": "models", "Visual": "models",
            "load_model": "models", "RunDir": "runs", "study": "experiments.study"}
__all__ = sorted(_EXPORTS) + ["__version__"]


# What runs a model: the first use of one applies the CLI's thread policy (`threads.apply_threads`: the cores this
# process may use and others leave idle; OMP_NUM_THREADS or MIRAGE_THREADS, when set, stand), which the Python API
# otherwise lacked (the README's `mirage.evaluate` took 86 s on a busy 2-core machine, 18.8 s with one thread).
_RUNS_MODELS = {"evaluate", "load_model", "study"}
_THREADS: list[int | None] = []


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mirage' has no attribute {name!r}")
    if name in _RUNS_MODELS and not _THREADS:
        import os

        from .threads import apply_threads

        given = os.environ.get("MIRAGE_THREADS")
        _THREADS.append(apply_threads(int(given) if given else None))
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


class _Package(types.ModuleType):
    """`mirage.evaluate` is the function, as it was when imported eagerly: importing the submodule of the same
    name (which sets the package attribute) must not replace it."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return  # the export is fetched from the submodule by __getattr__
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
