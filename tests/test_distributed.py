"""`torchrun` with 2 gloo ranks on the CPU: sharded evaluation and per-question optimization, data-parallel universal
inputs, and a rank killed mid-run, each compared with a single-process run of the same command."""

import json
import os
import subprocess
import sys
import time

import pytest

from mirage.distributed import World
from mirage.runs import read_rows

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def mirage(*args, ranks: int = 1, wait: bool = True):
    if ranks == 1:
        cmd = [sys.executable, "-m", "mirage", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "mirage", *args]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def rows_of(d):
    return sorted(read_rows(d / "results.jsonl"), key=lambda r: (r["source"], r["question_id"]))


def test_shards_cover_every_question_once():
    items = list(range(11))
    shards = [World(r, 3).shard(items) for r in range(3)]
    assert sorted(sum(shards, [])) == items and shards[1] == [1, 4, 7, 10]


def test_sharded_eval_equals_one_process(tmp_path):
    args = ["eval", "--limit", "12", "--conditions", "real,blank,wrong,noise", "--device", "cpu", "-q"]
    mirage(*args, "--out", str(tmp_path / "one"))
    mirage(*args, "--out", str(tmp_path / "two"), ranks=2)
    assert rows_of(tmp_path / "two") == rows_of(tmp_path / "one")  # `wrong` sees the whole benchmark on each rank
    summary = lambda d: json.loads((d / "summary.json").read_text())  # noqa: E731
    assert summary(tmp_path / "two") == summary(tmp_path / "one")
    assert not list((tmp_path / "two").glob("results.rank*.jsonl"))  # merged and removed
    env = json.loads((tmp_path / "two" / "config.json").read_text())["environment"]
    assert env["world_size"] == 2


def test_sharded_per_question_and_data_parallel_universal(tmp_path):
    base = ["optimize", "--device", "cpu", "-q", "--steps", "4"]
    per_q = [*base, "--input", "features", "--limit", "6", "--batch-size", "2"]
    mirage(*per_q, "--out", str(tmp_path / "q1"))
    mirage(*per_q, "--out", str(tmp_path / "q2"), ranks=2)
    one, two = rows_of(tmp_path / "q1"), rows_of(tmp_path / "q2")
    assert [(r["question_id"], r["pred"], r["steps"]) for r in two] == [(r["question_id"], r["pred"], r["steps"])
                                                                         for r in one]
    for a, b in zip(one, two):  # each question is optimized alone in its slot: batch mates do not matter
        assert a["probs"] == pytest.approx(b["probs"], abs=2e-3)
    uni = [*base, "--input", "pixels", "--scope", "universal", "--train", "6", "--limit", "10", "--batch-size", "4"]
    mirage(*uni, "--out", str(tmp_path / "u1"))
    mirage(*uni, "--out", str(tmp_path / "u2"), ranks=2)
    hist = lambda d: json.loads((d / "artifacts" / "pixels-universal.history.json").read_text())  # noqa: E731
    h1, h2 = hist(tmp_path / "u1"), hist(tmp_path / "u2")
    assert [h["loss"] for h in h2] == pytest.approx([h["loss"] for h in h1], rel=1e-3)
    assert [h["batch_accuracy"] for h in h2] == [h["batch_accuracy"] for h in h1]
    one, two = rows_of(tmp_path / "u1"), rows_of(tmp_path / "u2")
    assert [(r["source"], r["question_id"], r["pred"]) for r in two] == \
        [(r["source"], r["question_id"], r["pred"]) for r in one]
    assert {r["source"] for r in two} == {"pixels-universal", "pixels-universal-train", "pixels-universal-png"}


def test_a_killed_rank_resumes_without_redoing_questions(tmp_path):
    out = tmp_path / "run"
    args = ["optimize", "--device", "cpu", "-q", "--input", "pixels", "--limit", "8", "--steps", "25",
            "--early-stop", "0", "--batch-size", "1", "--out", str(out)]
    proc = mirage(*args, ranks=2, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_rows(out / "results.rank1.jsonl", repair=False)) < 1:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    # every process dies mid-run: torchrun's workers run in their own sessions, so find them by the run directory
    subprocess.run(["pkill", "-KILL", "-f", str(out)])
    proc.wait()
    while subprocess.run(["pgrep", "-f", str(out)], capture_output=True).stdout:
        time.sleep(0.1)
    before = {(r["question_id"], r["source"]): r for f in out.glob("results.rank*.jsonl")
              for r in read_rows(f, repair=False)}
    assert 1 <= len(before) < 8 and not (out / "results.jsonl").exists()
    mirage(*args)  # resumed by a single process: the world size may change
    rows = read_rows(out / "results.jsonl")
    keys = [(r["question_id"], r["source"]) for r in rows]
    assert len(keys) == len(set(keys)) == 16  # 8 questions x (pixels-question, its PNG re-check)
    by_key = dict(zip(keys, rows))
    assert all(by_key[k] == r for k, r in before.items())  # kept as written before the kill, not redone
    assert not list(out.glob("results.rank*.jsonl"))
