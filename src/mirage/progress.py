"""Rich progress bars that a `quiet` flag turns off; where output is not a terminal (a log file, a pipe, a batch
job), a line now and then instead."""

from __future__ import annotations

import os
import sys
import time
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
    if not sys.stdout.isatty():  # a bar is drawn only at its end there: minutes of nothing in a log
        yield progress_lines(description, total)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_lines(description: str, total: int, every: float | None = None) -> Callable[[int], None]:
    """`advance(n)` that prints `description: done/total (pct), elapsed, ETA` every `every` seconds (default 30,
    MIRAGE_PROGRESS_EVERY) and at the end: progress for output that is not a terminal."""
    every = float(os.environ.get("MIRAGE_PROGRESS_EVERY", 30)) if every is None else every
    start = last = time.time()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.time()
        if now - last < every and done < total:
            return
        last = now
        eta = (now - start) / done * (total - done) if done else 0.0
        print(f"{description}: {done}/{total} ({100 * done / total:.0f}%), {_clock(now - start)} elapsed, "
              f"ETA {_clock(eta)}", flush=True)
    return advance


def warn(message: str) -> None:
    """One `warning:` line on stderr, beside the bars (shown under `quiet` too: quiet only hides bars)."""
    from rich.console import Console

    Console(stderr=True, width=200).print(f"[bold yellow]warning:[/] {message}", highlight=False)
