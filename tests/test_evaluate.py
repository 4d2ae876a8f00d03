import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mirage.conditions import parse_conditions
from mirage.evaluate import evaluate, evaluate_conditions
from mirage.runs import RunConfigMismatch, RunDir

CONDS = "real,blank,noise"


def _key(rows):
    return sorted((r["question_id"], r["source"], r["pred"], r["correct"]) for r in rows)


def test_rows_and_summary(tiny_model, small_bench, tmp_path):
    res = evaluate(tiny_model, small_bench, CONDS, out=tmp_path / "run", batch_size=5)
    assert len(res.rows) == 3 * len(small_bench)
    row = res.rows[0]
    assert set(row) == {"question_id", "source", "pred", "answer", "correct", "probs", "type"}
    assert abs(sum(row["probs"]) - 1) < 1e-3 and row["correct"] == (row["pred"] == row["answer"])
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["n"] == {"real": 24, "blank": 24, "noise": 24}
    acc = sum(r["correct"] for r in res.rows if r["source"] == "blank") / 24
    assert s["accuracy"]["blank"] == pytest.approx(acc, abs=1e-4)
    assert set(s["by_type"]["real"]) == {q.type for q in small_bench}


def test_batching_does_not_change_answers(tiny_model, small_bench):
    a = evaluate(tiny_model, small_bench, "real,wrong", batch_size=1).rows
    b = evaluate(tiny_model, small_bench, "real,wrong", batch_size=24).rows
    assert _key(a) == _key(b)
    for x, y in zip(sorted(a, key=lambda r: (r["source"], r["question_id"])),
                    sorted(b, key=lambda r: (r["source"], r["question_id"]))):
        assert x["probs"] == pytest.approx(y["probs"], abs=2e-4)


def test_resume_skips_done_rows_and_refuses_other_config(tiny_model, small_bench, tmp_path):
    run = tmp_path / "run"
    evaluate(tiny_model, small_bench.subset(10), CONDS, out=run)
    with pytest.raises(RunConfigMismatch, match="seed"):  # what the rows mean: refused
        evaluate(tiny_model, small_bench.subset(10), CONDS, out=run, seed=1)
    lines = (run / "results.jsonl").read_text().splitlines()
    evaluate(tiny_model, small_bench.subset(10), CONDS, out=run, batch_size=3)  # batch size may change
    assert (run / "results.jsonl").read_text().splitlines() == lines  # nothing redone, no duplicates
    evaluate(tiny_model, small_bench.subset(12), CONDS, out=run)  # more questions: the run grows (issue 31)
    grown = (run / "results.jsonl").read_text().splitlines()
    assert grown[:len(lines)] == lines and len(grown) == 12 * len(CONDS.split(","))


def test_killed_run_resumes_to_the_uninterrupted_result(tiny_model, small_bench, tmp_path):
    """SIGKILL a real `mirage eval` mid-run, tear its last line, resume: same rows as an uninterrupted run."""
    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir)
    args = [sys.executable, "-m", "mirage", "eval", "--model", f"demo:{model_dir}", "--limit", "24",
            "--conditions", "real,blank,noise,shuffle", "--batch-size", "2", "--device", "cpu", "-q"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    subprocess.run(args + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 30):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(results.read_text().splitlines())
    assert 30 <= n_before < 96, "the kill should land mid-run"
    with results.open("a") as f:
        f.write('{"question_id": "shapes-test-000')  # a torn line, as a kill during a write leaves
    subprocess.run(args + ["--out", str(killed)], check=True, env=env, capture_output=True)
    full = [json.loads(x) for x in (tmp_path / "full" / "results.jsonl").read_text().splitlines()]
    resumed = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(resumed) == 96 and _key(resumed) == _key(full)
    assert json.loads((killed / "summary.json").read_text())["accuracy"] == \
        json.loads((tmp_path / "full" / "summary.json").read_text())["accuracy"]


def test_progress_visits_each_pending_pair_once(tiny_model, small_bench, tmp_path):
    run = RunDir.open(tmp_path / "r", {"x": 1})
    conds = parse_conditions("real,blank")
    run.append([{"question_id": small_bench[0].id, "source": "real", "pred": "A", "answer": "A", "correct": True,
                 "probs": [1.0, 0, 0, 0], "type": small_bench[0].type}])
    rows = evaluate_conditions(tiny_model, small_bench, conds, run=run, quiet=True)
    assert len(rows) == 48 and len({(r["question_id"], r["source"]) for r in rows}) == 48
    assert rows[0]["pred"] == "A" and rows[0]["probs"] == [1.0, 0, 0, 0]  # the kept row, not recomputed


def test_text_only_questions_skip_conditions_that_need_their_image(tiny_model, small_bench):
    from mirage.benchmarks.question import Benchmark, Question
    from mirage.evaluate import skipped
    text_only = Question("t-1", "what is one plus one ?", ("one", "two"), 1)
    bench = Benchmark("mixed", "test", [*small_bench.questions[:3], text_only], small_bench.prompt_style)
    conds = parse_conditions("real,blank,shuffle")
    rows = evaluate_conditions(tiny_model, bench, conds, quiet=True)
    got = {(r["question_id"], r["source"]) for r in rows}
    assert ("t-1", "blank") in got and ("t-1", "real") not in got and ("t-1", "shuffle") not in got
    assert len(rows) == 3 * 3 + 1
    assert skipped(bench, conds) == {"real": 1, "shuffle": 1}
    summary = evaluate(tiny_model, bench, "real,blank,shuffle").summary  # the library path records it too
    assert summary["skipped_no_image"] == {"real": 1, "shuffle": 1} and summary["n"]["blank"] == 4
