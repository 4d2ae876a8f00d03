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


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mirage' has no attribute {name!r}")
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
