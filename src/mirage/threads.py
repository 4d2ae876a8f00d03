"""Torch's intra-op threads fitted to the cores this process may use (CPU affinity, cgroup CPU quota), shared
among the torchrun ranks of one host. torch counts the host's cores and ignores a container's quota, so on a
machine where mirage may use 2 of 16 cores its default of 16 threads oversubscribes what it is given."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Mapping

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def affinity_cores() -> int:
    """CPUs this process may be scheduled on (`taskset`, cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_quota(root: Path = CGROUP, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup, in cores (quota / period), or None when unlimited or unreadable.
    cgroup v2 (`cpu.max`: "200000 100000" or "max 100000") and v1 (`cpu.cfs_quota_us`, -1 when unlimited)."""
    lines = (_read(proc_cgroup) or "").splitlines()
    v2 = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
    v1 = next((ln.split(":", 2)[2] for ln in lines
               if ln.count(":") >= 2 and "cpu" in ln.split(":", 2)[1].split(",")), None)
    candidates = []  # the process's own cgroup first, then the root (what a container sees as its own)
    for rel in (v2, "/"):
        if rel is not None:
            candidates.append(("v2", root / rel.lstrip("/") / "cpu.max"))
    for sub in ("cpu", "cpu,cpuacct"):
        for rel in (v1, "/"):
            if rel is not None:
                candidates.append(("v1", root / sub / rel.lstrip("/") / "cpu.cfs_quota_us"))
    for kind, path in candidates:
        text = _read(path)
        if text is None:
            continue
        if kind == "v2":
            parts = text.split()
            if len(parts) != 2 or parts[0] == "max":
                return None
            quota, period = float(parts[0]), float(parts[1])
        else:
            quota, period = float(text), float(_read(path.with_name("cpu.cfs_period_us")) or 100000)
            if quota < 0:
                return None
        return quota / period if period > 0 else None
    return None


def fitted_threads(affinity: int, quota: float | None, local_ranks: int = 1) -> int:
    """Threads for one process: the cores it may use (the smaller of affinity and quota, a fractional quota
    rounded down), divided among the ranks sharing them; at least 1."""
    cores = affinity if quota is None else min(affinity, math.floor(quota))
    return max(1, cores // max(1, local_ranks))


_READ = object()  # choose_threads: read the machine's value


def choose_threads(requested: int | None = None, env: Mapping[str, str] = os.environ,
                   affinity: int | None = None, quota=_READ) -> int | None:
    """The intra-op thread count mirage should use: `requested` (`--threads`), else None when OMP_NUM_THREADS is
    set (the user's or the launcher's choice stands: torchrun sets 1 for several ranks), else the fitted count."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads: must be >= 1, got {requested}")
        return requested
    if env.get("OMP_NUM_THREADS"):
        return None
    ranks = int(env.get("LOCAL_WORLD_SIZE") or 1)
    return fitted_threads(affinity_cores() if affinity is None else affinity,
                          cgroup_quota() if quota is _READ else quota, ranks)


def apply_threads(requested: int | None = None) -> int | None:
    """Set torch's intra-op threads as `choose_threads` says (once, at start-up); returns the count chosen (None:
    OMP_NUM_THREADS stands). Before torch is imported only OMP_NUM_THREADS is set, which torch reads when it starts,
    so that `mirage --help` needs no torch."""
    n = choose_threads(requested)
    torch = sys.modules.get("torch")
    if torch is None:
        if n is not None:
            os.environ["OMP_NUM_THREADS"] = str(n)
        return n
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()
