"""Rich progress bars that a `quiet` flag turns off."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: int, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`; shows a bar with count, elapsed and remaining time unless `quiet` or there is nothing
    to do (a resumed run would print an empty 0/0 bar per finished part)."""
    if quiet or total <= 0:
        yield lambda n=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def warn(message: str) -> None:
    """One `warning:` line on stderr, beside the bars (shown under `quiet` too: quiet only hides bars)."""
    from rich.console import Console

    Console(stderr=True, width=200).print(f"[bold yellow]warning:[/] {message}", highlight=False)
