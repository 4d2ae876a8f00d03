"""Scale-out with PyTorch's own distributed stack: `torchrun --nproc-per-node N -m mirage eval|optimize ...`.

* Questions are sharded by position (rank r takes questions r, r + N, r + 2N, ...), always from the whole
  benchmark, so conditions built across questions (`wrong`) pick the same images as a single process does.
* Each rank appends its rows to its own `results.rank<r>.jsonl`; at the end rank 0 merges every rank's rows into
  `results.jsonl` and writes the summary. `done()` reads all files, so a run resumes after any rank died, with any
  number of ranks, and no finished question is redone.
* Universal inputs are data parallel: each rank computes the gradient on its share of every step's questions,
  gradients are summed with `all_reduce`, and every rank takes the same Adam step (rank 0 writes checkpoints).
* Model parallel inside a rank: `--gpus-per-rank K` gives rank r the GPUs r*K .. r*K+K-1 and splits the model
  over them with accelerate's `device_map="auto"` (e.g. 8 GPUs as 4 ranks x 2).

On CPU the process group uses gloo, on GPUs NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import UsageError
from .runs import RunDir, append_rows, read_rows, unique_rows

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items`: every size-th item from position `rank`."""
        return list(items[self.rank :: self.size])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum tensors across ranks, in place."""
        if self.distributed:
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def gpus(self, per_rank: int = 1) -> list[int]:
        """The GPU indices this rank uses (`per_rank` consecutive ones per local rank)."""
        first = self.local_rank * per_rank
        if first + per_rank > torch.cuda.device_count():
            raise UsageError(f"--gpus-per-rank {per_rank}: local rank {self.local_rank} needs GPUs {first}.."
                             f"{first + per_rank - 1}, but {torch.cuda.device_count()} are visible")
        return list(range(first, first + per_rank))


SINGLE = World()


def init_world() -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); joins the process group."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(world.local_rank)
            dist.init_process_group("nccl", device_id=torch.device("cuda", world.local_rank))
        else:
            dist.init_process_group("gloo")
    return world


class ShardedRun(RunDir):
    """A run directory shared by ranks: appends go to this rank's file, reads see every rank's rows."""

    def __init__(self, path, world: World) -> None:
        super().__init__(path)
        self.world = world

    @classmethod
    def open_shared(cls, path, config: dict, world: World, overwrite: bool = False,
                    allow_env_change: bool = False, grows: dict = {}) -> "ShardedRun":
        """Rank 0 creates (or checks, or with `overwrite` clears) the directory first; then the others check it."""
        if world.main:
            base = RunDir.open(path, config, overwrite, allow_env_change=allow_env_change, grows=grows)  # also
        world.barrier()  # folds what a killed run's ranks left
        if not world.main:  # compares the config; rank 0 may be appending already
            base = RunDir.open(path, config, fold=False, allow_env_change=allow_env_change, lock=False, grows=grows)
        run = cls(path, world)
        run.config, run.stored_config = base.config, base.stored_config
        run.allow_env_change = allow_env_change
        return run

    def rank_path(self, rank: int) -> Path:
        return self.path / f"results.rank{rank}.jsonl"

    def rows(self) -> list[dict]:
        """Merged rows first, then each rank's (own file repaired, others read as they are)."""
        out = super().rows() if self.world.main else unique_rows(read_rows(self.results_path, repair=False))
        seen = {(r["question_id"], r["source"]) for r in out}
        for f in self.rank_files():
            for r in read_rows(f, repair=f == self.rank_path(self.world.rank)):
                if (r["question_id"], r["source"]) not in seen:
                    seen.add((r["question_id"], r["source"]))
                    out.append(r)
        return out

    def append(self, rows: Sequence[dict]) -> None:
        append_rows(self.rank_path(self.world.rank), rows)
        self.tick()

    def annotate(self, **facts) -> None:
        if self.world.main:
            super().annotate(**facts, world_size=self.world.size)

    def merge(self) -> list[dict]:
        """After every rank is done: rank 0 appends the ranks' rows to results.jsonl and removes their files.
        Returns all rows (on every rank)."""
        self.world.barrier()
        if self.world.main:
            self.fold_rank_files()
        self.world.barrier()
        return unique_rows(read_rows(self.results_path, repair=False))


def open_run(path, config: dict, world: World = SINGLE, overwrite: bool = False,
             allow_env_change: bool = False, grows: dict = {}) -> RunDir:
    """The run directory at `path`, created or resumed: this rank's view of a shared one under torchrun. `grows`:
    nested counts that may grow between calls (`RunDir.open`)."""
    if world.distributed:
        return ShardedRun.open_shared(path, config, world, overwrite, allow_env_change, grows)
    return RunDir.open(path, config, overwrite=overwrite, allow_env_change=allow_env_change, grows=grows)
