"""Torch's intra-op threads fitted to the cores this process may use (CPU affinity, cgroup CPU quota) and that
other processes leave idle, shared among the torchrun ranks of one host. torch counts the host's cores and ignores
a container's quota, so on a machine where mirage may use 2 of 16 cores its default of 16 threads oversubscribes
what it is given. On a core another busy process holds, a torch thread gets half the time and every parallel
region waits for it (and spins): on 2 cores beside one CPU-bound process, 2 threads took 2.05x the quiet time of
an evaluation and 1 thread 1.40x (bench/RESULTS.md), so the cores found busy at start-up are left out."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Mapping

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
PROC_STAT = Path("/proc/stat")
SAMPLE_S = 0.2  # how long `idle_cores` watches the CPUs (20 scheduler ticks at 100 Hz)


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


def cpu_ticks(stat: Path = PROC_STAT) -> dict[int, tuple[int, int]]:
    """Per CPU of /proc/stat: (busy, total) jiffies since boot (idle and iowait are not busy)."""
    out = {}
    for line in (_read(stat) or "").splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(values) >= 5:
            v = [int(x) for x in values[:8]]
            out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


def idle_cores(cpus: set[int] | None = None, seconds: float = SAMPLE_S, stat: Path = PROC_STAT,
               sleep=time.sleep) -> float | None:
    """How much of the CPUs `cpus` (default: this process's affinity) other processes leave idle, watched over
    `seconds` while this process sleeps: 2.0 on a quiet 2-core machine, ~1.0 beside one CPU-bound process. None
    where /proc/stat cannot be read."""
    if cpus is None:
        try:
            cpus = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            return None
    before = cpu_ticks(stat)
    sleep(seconds)
    after = cpu_ticks(stat)
    seen = [c for c in cpus if c in before and c in after]
    if not seen:
        return None
    free = 0.0
    for c in seen:
        ticks = after[c][1] - before[c][1]
        free += 1.0 if ticks <= 0 else 1.0 - (after[c][0] - before[c][0]) / ticks
    return max(0.0, free)


def fitted_threads(affinity: int, quota: float | None, local_ranks: int = 1, idle: float | None = None) -> int:
    """Threads for one process: the cores it may use (the smaller of affinity and quota, a fractional quota
    rounded down; no more than the `idle` cores other processes leave, rounded), divided among the ranks sharing
    them; at least 1."""
    cores = affinity if quota is None else min(affinity, math.floor(quota))
    if idle is not None:
        cores = min(cores, round(idle))
    return max(1, cores // max(1, local_ranks))


_READ = object()  # choose_threads: read the machine's value


_IDLE: list[float | None] = []


def _idle_at_start() -> float | None:
    """`idle_cores`, watched once per process (a second command in the same process reuses it)."""
    if not _IDLE:
        _IDLE.append(idle_cores())
    return _IDLE[0]


def choose_threads(requested: int | None = None, env: Mapping[str, str] = os.environ,
                   affinity: int | None = None, quota=_READ, idle=_READ) -> int | None:
    """The intra-op thread count mirage should use: `requested` (`--threads`), else None when OMP_NUM_THREADS is
    set (the user's or the launcher's choice stands: torchrun sets 1 for several ranks), else the fitted count,
    with the cores other processes keep busy at start-up left out (measured only where more than one thread would
    be used)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads: must be >= 1, got {requested}")
        return requested
    if env.get("OMP_NUM_THREADS"):
        return None
    ranks = int(env.get("LOCAL_WORLD_SIZE") or 1)
    affinity = affinity_cores() if affinity is None else affinity
    quota = cgroup_quota() if quota is _READ else quota
    fit = fitted_threads(affinity, quota, ranks)
    if idle is _READ:
        # sibling ranks start together and would see each other as load; they already share the cores
        idle = _idle_at_start() if fit > 1 and ranks == 1 else None
    return fitted_threads(affinity, quota, ranks, idle)


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
