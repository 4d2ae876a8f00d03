"""What a user did wrong, as opposed to a bug: the CLI prints a `MirageError` as one red line and lets every other
exception show its traceback. Subclasses of ValueError, so library callers catching ValueError keep working."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class MirageError(ValueError):
    """Bad input from the user: a flag, a file, a name, a run directory. The message names the thing at fault."""


class UsageError(MirageError):
    """A flag's value, or a combination of flags, that cannot work."""


@contextmanager
def loading_user_input() -> Iterator[None]:
    """Loading what the user named (a model spec, a benchmark, a dtype): the loaders' ValueError is about that
    input (a spec, file, split, subject or option), so it becomes a MirageError; elsewhere a ValueError is a bug."""
    try:
        yield
    except MirageError:
        raise
    except ValueError as e:
        raise MirageError(str(e)) from e
class MissingDependency(MirageError):
    """An optional package that what the user asked for needs is not installed."""


def require(module: str, needed_for: str, otherwise: str = ""):
    """Import optional `module`, or refuse in one line naming what needs it, how to install it, and the other way."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module.split(".")[0]:
            raise  # the package is there but broken: its own error says more
        raise MissingDependency(f"{needed_for} needs the `{module}` package, which is not installed: "
                                f"pip install {module}" + (f"; or {otherwise}" if otherwise else "")) from None
