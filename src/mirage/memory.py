"""Device memory, measured: the budget a run may fill and the peak a piece of work reaches, on a GPU (the caching
allocator's own counters) or on the CPU (every tensor the work allocates, tracked as it lives and dies)."""

from __future__ import annotations

import gc
import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

GIB = 2**30
HEADROOM = 0.95  # of a GPU's memory: the allocator's fragmentation and the work's later batches vary around a probe


class OutOfBudget(Exception):
    """The work needed more memory than the device has (a GPU's out-of-memory error)."""


def clear(device: torch.device) -> None:
    """Free what the last piece of work left cached, so the next measurement starts from the resident weights."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def budget(device: torch.device, gib: float | None = None) -> int | None:
    """Bytes the run may hold on `device`: `gib` as given, else HEADROOM of what this process may use of a GPU (its
    free memory plus what this process's allocator already holds). None on the CPU without `gib`."""
    if gib is not None:
        return int(gib * GIB)
    if device.type != "cuda":
        return None
    clear(device)
    free, _ = torch.cuda.mem_get_info(device)
    return int(HEADROOM * (free + torch.cuda.memory_reserved(device)))


def resident(model: torch.nn.Module, device: torch.device) -> int:
    """Bytes of `model`'s weights and buffers that live on `device`."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.device == device:
            st = t.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                total += st.nbytes()
    return total


_ALIASES: dict = {}  # operator -> whether its outputs alias its inputs


class _LiveBytes(TorchDispatchMode):
    """Every storage an operator creates while the mode is on, counted until it is freed: the bytes alive now, and
    their peak. Views and in-place results share an input's storage and are not counted again."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func not in _ALIASES:  # views and in-place results: their storage is an input's
            _ALIASES[func] = any(r.alias_info is not None for r in func._schema.returns)
        if _ALIASES[func]:
            return out
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()  # one Python object per live storage: its id is not reused before it dies
                key, n = id(st), st.nbytes()
                if n and key not in self.live:
                    self.live[key] = n
                    self.now += n
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(st, self._free, key)
        return out


def peak(work: Callable[[], None], model: torch.nn.Module, device: torch.device) -> int:
    """Peak bytes on `device` while `work` runs, the model's resident weights included. A GPU's out-of-memory error
    becomes OutOfBudget."""
    clear(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        oom = False
        try:
            work()
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            oom = True  # the error's traceback holds the step's tensors: freed once this block is left
        if oom:
            clear(device)
            raise OutOfBudget(f"out of memory on {device}")
        top = torch.cuda.max_memory_reserved(device)  # what the allocator took from the card, fragmentation included
        clear(device)
        return top
    base = resident(model, device)
    with _LiveBytes() as meter:
        work()
    return base + meter.peak
