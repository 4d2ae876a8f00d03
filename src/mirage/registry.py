"""Name -> factory registries with helpful errors ("did you mean ...")."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import MirageError

T = TypeVar("T")


class UnknownNameError(KeyError, MirageError):
    """A name that is not in a registry; the message lists the allowed names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


def did_you_mean(kind: str, name: str, allowed: list[str]) -> str:
    """The error message for an unknown `name` of `kind`, with the closest allowed names."""
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    return msg + f" (allowed: {', '.join(allowed)})"


class Registry(Generic[T]):
    """A named collection of factories: `@reg.register("name")`, `reg.get("name")`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(did_you_mean(self.kind, name, self.names()))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
