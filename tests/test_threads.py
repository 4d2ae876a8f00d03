"""CPU threads: the quota of a cgroup (v1 and v2, from fake files), the fit, and the precedence of --threads."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from mirage.threads import apply_threads, cgroup_quota, choose_threads, cpu_ticks, fitted_threads, idle_cores


def _proc(tmp_path, text):
    p = tmp_path / "proc_cgroup"
    p.write_text(text)
    return p


def test_cgroup_v2_quota_of_own_group_and_unlimited(tmp_path):
    root = tmp_path / "cg"
    (root / "user.slice" / "job").mkdir(parents=True)
    (root / "user.slice" / "job" / "cpu.max").write_text("250000 100000\n")
    (root / "cpu.max").write_text("max 100000\n")  # the root is unlimited: the process's own group wins
    assert cgroup_quota(root, _proc(tmp_path, "0::/user.slice/job\n")) == 2.5
    assert cgroup_quota(root, _proc(tmp_path, "0::/\n")) is None


def test_cgroup_v1_quota_and_container_root(tmp_path):
    root = tmp_path / "cg"
    (root / "cpu,cpuacct").mkdir(parents=True)
    # inside a container /proc/self/cgroup names the host's path, but the container sees its group at the root
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("150000")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("50000")
    proc = _proc(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_quota(root, proc) == 3.0
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1")
    assert cgroup_quota(root, proc) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_quota(tmp_path / "absent", tmp_path / "absent_proc") is None


def test_fit_takes_the_smaller_limit_and_divides_among_ranks():
    assert fitted_threads(16, None) == 16
    assert fitted_threads(16, 2.0) == 2  # the quota, not the host's cores torch would count
    assert fitted_threads(16, 2.9) == 2  # a fractional core is not a thread's worth
    assert fitted_threads(4, 8.0) == 4
    assert fitted_threads(16, None, local_ranks=4) == 4
    assert fitted_threads(2, None, local_ranks=4) == 1  # never 0
    assert fitted_threads(1, 0.5) == 1


def test_precedence_threads_flag_then_omp_env_then_fit():
    assert choose_threads(3, {"OMP_NUM_THREADS": "1"}, affinity=16, quota=None) == 3
    assert choose_threads(None, {"OMP_NUM_THREADS": "1"}, affinity=16, quota=None) is None
    assert choose_threads(None, {"LOCAL_WORLD_SIZE": "8"}, affinity=16, quota=None) == 2
    assert choose_threads(None, {}, affinity=16, quota=4.0, idle=None) == 4
    assert choose_threads(None, {}, affinity=16, quota=4.0, idle=1.1) == 1  # another process holds the cores
    with pytest.raises(ValueError, match="--threads"):
        choose_threads(0, {})


def test_cli_threads_option_sets_torch_threads(monkeypatch):
    from mirage.cli import app

    monkeypatch.setenv("OMP_NUM_THREADS", "2")

    before = torch.get_num_threads()
    try:
        # the callback runs before the command; --help of a subcommand would exit before it, so run `report` on
        # a missing directory (it fails after the callback has applied the threads)
        torch.set_num_threads(1)
        CliRunner().invoke(app, ["--threads", "2", "report", "/nonexistent-run-dir"])
        assert torch.get_num_threads() == 2
        assert apply_threads(None) == 2  # a set OMP_NUM_THREADS is kept: no change
    finally:
        torch.set_num_threads(before)


def test_busy_cores_are_left_out():
    assert fitted_threads(2, None, idle=2.0) == 2
    assert fitted_threads(2, None, idle=0.9) == 1  # one CPU-bound process beside us on 2 cores
    assert fitted_threads(16, 4.0, idle=9.6) == 4  # the quota is still the bound
    assert fitted_threads(8, None, idle=0.1) == 1  # never 0


def test_idle_cores_reads_proc_stat_over_the_window(tmp_path):
    stat = tmp_path / "stat"
    #         user nice system idle iowait irq softirq steal
    first = ("cpu  0 0 0 0 0 0 0 0\n"
             "cpu0 100 0 0 100 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n")
    # over the window: cpu0 all busy (user 20 + system 0), cpu1 idle 15 of 20 (iowait counts as idle)
    second = ("cpu  0 0 0 0 0 0 0 0\n"
              "cpu0 118 0 2 100 0 0 0 0\ncpu1 103 0 2 110 5 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n")
    stat.write_text(first)
    assert cpu_ticks(stat)[1] == (100, 200)
    got = idle_cores({0, 1}, stat=stat, sleep=lambda s: stat.write_text(second))
    assert got == pytest.approx(0.0 + 15 / 20)
    stat.write_text(first)
    # a CPU without ticks in the window counts as idle; CPUs outside the set are not looked at
    assert idle_cores({0, 2}, stat=stat, sleep=lambda s: stat.write_text(second)) == pytest.approx(1.0)
    assert idle_cores({0}, stat=tmp_path / "missing", sleep=lambda s: None) is None
