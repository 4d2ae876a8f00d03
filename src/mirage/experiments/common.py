"""What several experiments check the same way."""

from __future__ import annotations

from ..errors import UsageError


def check_train(train: int, n: int) -> None:
    """A universal input trains on the first `train` of `n` questions and must hold some out."""
    if not 0 < train < n:
        raise UsageError(f"--train {train}: needs 1..{n - 1} questions of {n} to hold some out")
