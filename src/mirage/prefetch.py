"""Host work of the next batches done ahead of the GPU: `prefetched` runs a batch's preparation (condition
images made and decoded, the model's processor) in worker threads while the model scores the batch before;
`length_batches` batches questions so that most batches hold prompts of one length (no padding, no mask)."""

from __future__ import annotations

from collections import deque
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch

from .benchmarks.question import Benchmark, Question

T = TypeVar("T")
R = TypeVar("R")
# a 1024x768 JPEG decoded and run through CLIP's processor takes ~10 ms on one core, so 2 threads feed ~190
# images/s, 3x what a 7B scores; 8 threads measured slower than 2 (their GIL and cores are the launching thread's)
WORKERS = 2
SIDE_STREAM = True  # workers copy to the GPU on their own stream (bench/perf_eval.py measures without)
_END = object()


def prefetched(make: Callable[[T], R], items: Iterable[T], workers: int, ahead: int | None = None
               ) -> Iterator[tuple[T, R]]:
    """(item, make(item)) in the items' order, with up to `ahead` (default workers + 1) makes running in a pool of
    `workers` threads (0: each made in the caller's thread when its turn comes). An exception is raised at its
    item's turn; closing the iterator early cancels what has not started."""
    if workers <= 0:
        for item in items:
            yield item, make(item)
        return
    ahead = max(1, ahead or workers + 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="mirage-prefetch")
    pending: deque = deque()
    try:
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(make, item)))
            if len(pending) >= ahead:
                break
        while pending:
            item, future = pending.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append((nxt, pool.submit(make, nxt)))
            yield item, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers(device: torch.device | str) -> int:
    """Worker threads for a model on `device`: none on the CPU (the model's own threads use the cores), else
    WORKERS, fewer when this process may use fewer cores (one is the launching thread's)."""
    if torch.device(device).type == "cpu":
        return 0
    from .threads import affinity_cores

    return max(1, min(WORKERS, affinity_cores() - 1))


def length_batches(items: Sequence[T], lengths: Sequence[int], batch_size: int) -> list[list[T]]:
    """`items` in batches of `batch_size`: first full batches of one length (no padding, so attention needs no
    mask: 7 % faster on a compiled 7B), then the rest by length (close lengths, little padding). As many batches
    as in the items' order; within a length the items keep their order."""
    ordered = by_length(list(range(len(items))), lengths)
    full, rest, start = [], [], 0
    while start < len(ordered):  # runs of one length
        end = start
        while end < len(ordered) and lengths[ordered[end]] == lengths[ordered[start]]:
            end += 1
        cut = start + (end - start) // batch_size * batch_size
        full += [ordered[i : i + batch_size] for i in range(start, cut, batch_size)]
        rest += ordered[cut:end]
        start = end
    batches = full + [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    return [[items[i] for i in b] for b in batches]


def by_length(items: Sequence[T], lengths: Sequence[int]) -> list[T]:
    """`items` ordered by `lengths` (stable: equal lengths keep their order), so that consecutive batches hold
    prompts of one length where there are enough of them."""
    if len(items) != len(lengths):
        raise ValueError(f"by_length: {len(items)} items but {len(lengths)} lengths")
    return [items[i] for i in sorted(range(len(items)), key=lambda i: lengths[i])]


def prompt_lengths(model, prompts: Sequence[str]) -> list[int] | None:
    """Token counts of the prompts by the model's tokenizer (None without one): the order of the sequences'
    lengths, as every image of a condition brings the same number of image tokens to a fixed-size model."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not prompts:
        return None
    return [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False).input_ids]


def prompt_batches(model, benchmark: Benchmark, questions: Sequence[Question], batch_size: int
                   ) -> list[list[Question]]:
    """`questions` batched by prompt length (`length_batches`; in order when the model has no tokenizer): a batch of
    one length needs no padding, so no wasted tokens and no attention mask."""
    lengths = prompt_lengths(model, [benchmark.prompt(q) for q in questions])
    if not lengths:
        return [list(questions[i : i + batch_size]) for i in range(0, len(questions), batch_size)]
    return length_batches(questions, lengths, batch_size)


def visual_batches(model, visual_of: Callable[[T], object], batches: Sequence[T],
                   workers: int | None = None) -> Iterator[tuple[T, object]]:
    """(batch, its Visual) for each batch (of questions, or any item `visual_of` takes), `visual_of(batch)` (a
    condition's images made and run through the model's processor: `Condition.visual`) computed by `prefetched`
    (workers default: `default_workers`). On a GPU the workers copy on a side stream: a copy on the model's stream
    would wait behind the batches queued before it."""
    device = torch.device(model.device)
    workers = default_workers(device) if workers is None else workers
    stream = torch.cuda.Stream(device) if workers and device.type == "cuda" and SIDE_STREAM else None

    def make(qs):
        # inference mode is per thread: the workers' own, so that nothing they compute records a graph
        with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else nullcontext()):
            visual = visual_of(qs)
            return visual, (stream.record_event() if stream is not None else None)

    for batch, (visual, ready) in prefetched(make, batches, workers):
        if ready is not None:
            current = torch.cuda.current_stream(device)
            current.wait_event(ready)
            for t in _tensors(visual.value):
                t.record_stream(current)  # the allocator must not hand the memory back to the side stream early
        yield batch, visual


def _tensors(value) -> list:
    values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, torch.Tensor) and v.is_cuda]
