"""Tests for mirage.runs.RunDir: config checks, resume, torn-line repair, and surviving SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mirage.runs
from mirage.environment import library_versions
from mirage.runs import EnvironmentChanged, RunConfigMismatch, RunDir

CONFIG = {"model": "demo", "benchmark": "toy", "sources": ("real", "blank"), "batch_size": 8}


def _row(i, source="real"):
    return {"question_id": f"q{i}", "source": source, "correct": i % 2 == 0, "type": "t"}


def test_new_dir_writes_config(tmp_path):
    path = tmp_path / "a" / "b" / "run"
    run = RunDir.open(path, CONFIG)
    text = (path / "config.json").read_text()
    assert json.loads(text) == {**CONFIG, "sources": ["real", "blank"], "libraries": library_versions()}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert run.rows() == [] and run.done() == set()
    assert run.results_path == path / "results.jsonl"
    assert run.summary_path == path / "summary.json"
    assert run.artifacts_dir == path / "artifacts"


def test_reopen_same_config_and_neutral_change_keeps_rows(tmp_path):
    RunDir.open(tmp_path, CONFIG).append([_row(1), _row(2, "blank")])
    run = RunDir.open(tmp_path, {**CONFIG, "batch_size": 64, "device": "cuda:1", "quiet": True})
    assert run.done() == {("q1", "real"), ("q2", "blank")}
    assert run.config["batch_size"] == 64


def test_changed_key_raises_mismatch_naming_key_and_values(tmp_path):
    RunDir.open(tmp_path, CONFIG).append([_row(1)])  # a run with work in it (an empty one may be restarted)
    with pytest.raises(RunConfigMismatch) as e:
        RunDir.open(tmp_path, {**CONFIG, "model": "other-model", "extra": 3})
    msg = str(e.value)
    assert str(tmp_path) in msg
    assert '"demo" -> "other-model"' in msg and "model" in msg
    assert "extra" in msg and "--overwrite" in msg and "--out" in msg


def test_overwrite_clears_run_outputs_but_keeps_other_files(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    run.append([_row(1)])
    run.write_json("summary.json", {"x": 1})
    (run.artifacts_dir / "sub").mkdir(parents=True)
    (run.artifacts_dir / "sub" / "f.txt").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    from mirage.experiments.saliency import saliency_rows
    saliency_rows(run).append([{"question_id": "q1", "source": "saliency-gradient"}])
    run.write_json("saliency-summary.json", {"x": 1})
    run = RunDir.open(tmp_path, {**CONFIG, "model": "other"}, overwrite=True)
    assert run.rows() == [] and saliency_rows(run).rows() == []  # saliency's rows were kept before
    assert not run.summary_path.exists() and not run.artifacts_dir.exists()
    assert not (tmp_path / "saliency-summary.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "other"


def test_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        RunDir.open(f, CONFIG)


def test_foreign_nonempty_dir_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "theirs.txt").write_text("x")
    with pytest.raises(ValueError, match="non-empty"):
        RunDir.open(tmp_path, CONFIG)
    assert not (tmp_path / "config.json").exists()
    RunDir.open(tmp_path, CONFIG, overwrite=True)
    assert (tmp_path / "theirs.txt").exists() and (tmp_path / "config.json").exists()


def test_torn_last_line_is_dropped_and_append_continues(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    run.append([_row(1), _row(2)])
    with open(run.results_path, "a") as f:
        f.write(json.dumps(_row(3))[:20])
    assert [r["question_id"] for r in run.rows()] == ["q1", "q2"]
    run.append([_row(4)])
    lines = run.results_path.read_text().splitlines()
    assert [json.loads(line)["question_id"] for line in lines] == ["q1", "q2", "q4"]


def test_append_repairs_torn_tail_without_reading_first(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    run.append([_row(1)])
    with open(run.results_path, "a") as f:
        f.write('{"question_id": "q')
    RunDir.open(tmp_path, CONFIG).append([_row(2)])
    assert [r["question_id"] for r in run.rows()] == ["q1", "q2"]


def test_unparsable_final_line_with_newline_is_dropped(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    run.append([_row(1)])
    with open(run.results_path, "a") as f:
        f.write("\0\0\0\n")
    assert [r["question_id"] for r in run.rows()] == ["q1"]
    assert run.results_path.read_text() == json.dumps(_row(1)) + "\n"


def test_corrupt_middle_line_raises_with_line_number(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    run.append([_row(1)])
    with open(run.results_path, "a") as f:
        f.write("{not json\n")
    run.append([_row(2)])
    before = run.results_path.read_bytes()
    with pytest.raises(ValueError, match=r"results\.jsonl: line 2"):
        run.rows()
    assert run.results_path.read_bytes() == before


def test_write_json_is_atomic_replace(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    run.write_json("summary.json", {"a": 1})
    path = run.write_json("summary.json", {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.json", "summary.json"]


WRITER = """
import sys
from mirage.runs import RunDir
run = RunDir(sys.argv[1])
i = 0
while True:
    run.append([{"question_id": f"q{i + j}", "source": "real", "pad": "x" * 5000, "end": True}
                for j in range(20)])
    i += 20
"""


def test_rows_parse_cleanly_after_sigkill_mid_append(tmp_path):
    run = RunDir.open(tmp_path, CONFIG)
    src = str(Path(mirage.runs.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 20
        while (not run.results_path.exists() or run.results_path.stat().st_size < 2_000_000):
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer wrote too little"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    rows = run.rows()
    assert len(rows) >= 20
    assert [r["question_id"] for r in rows] == [f"q{i}" for i in range(len(rows))]
    assert all(r["pad"] == "x" * 5000 and r["end"] is True for r in rows)
    assert run.results_path.read_bytes().endswith(b"\n")
    run.append([_row(-1)])
    assert run.rows()[-1]["question_id"] == "q-1"


def _tamper(path: Path, **libraries) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg["libraries"].update(libraries)
    (path / "config.json").write_text(json.dumps(cfg))


def test_resume_under_other_library_versions_is_refused_unless_allowed(tmp_path):
    RunDir.open(tmp_path / "r", {"x": 1}).append([{"question_id": "q", "source": "real", "correct": True}])
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert {"python", "mirage", "torch", "transformers", "torchvision"} <= set(cfg["libraries"])
    now = library_versions()["transformers"]
    _tamper(tmp_path / "r", transformers="4.0.0")
    with pytest.raises(EnvironmentChanged, match=rf"transformers 4\.0\.0 -> {now}.*--allow-env-change"):
        RunDir.open(tmp_path / "r", {"x": 1})
    run = RunDir.open(tmp_path / "r", {"x": 1}, allow_env_change=True)
    assert len(run.rows()) == 1  # nothing lost
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["libraries"]["transformers"] == now
    assert cfg["environment_changes"][0]["changes"] == [f"transformers 4.0.0 -> {now}"]
    RunDir.open(tmp_path / "r", {"x": 1})  # the allowed change is the run's environment now


def test_another_image_processor_backend_is_another_environment(tmp_path):
    run = RunDir.open(tmp_path / "r", {"x": 1})
    run.annotate(image_processor="CLIPImageProcessorPil", image_processor_backend="pil", device="cpu")
    again = RunDir.open(tmp_path / "r", {"x": 1})
    again.annotate(image_processor="CLIPImageProcessorPil", image_processor_backend="pil", device="cuda")
    with pytest.raises(EnvironmentChanged, match="image_processor_backend pil -> torchvision"):
        RunDir.open(tmp_path / "r", {"x": 1}).annotate(image_processor="CLIPImageProcessor",
                                                       image_processor_backend="torchvision")
    RunDir.open(tmp_path / "r", {"x": 1}, allow_env_change=True).annotate(
        image_processor="CLIPImageProcessor", image_processor_backend="torchvision")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["environment"]["image_processor_backend"] == "torchvision" and cfg["environment_changes"]

def test_a_run_without_work_takes_a_new_config(tmp_path):
    # A start that failed after writing config.json (a typo found when the model loads) holds nothing to keep.
    RunDir.open(tmp_path, CONFIG)
    run = RunDir.open(tmp_path, {**CONFIG, "model": "other-model"})
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "other-model" and run.rows() == []


def test_timings_keep_a_killed_invocation(tmp_path):
    # A call killed after appending rows leaves its record `running` with its time so far; the next call marks it
    # killed and the total counts it (issue 31 item 2: a Ctrl-C'd, resumed study reported a fraction of its time).
    run = RunDir.open(tmp_path, CONFIG)
    run.start_invocation({"batch_size": 2})
    run._t0 -= 30  # it has run 30 s when its last rows are appended (ticks come every 10 s at most)
    run._ticked -= 30
    run.append([_row(1)])
    del run  # killed: nothing else is written
    again = RunDir.open(tmp_path, CONFIG)
    again.start_invocation()
    log = again.log_invocation({"load_s": 1.0, "work_s": 2.0})
    assert [i["status"] for i in log["invocations"]] == ["killed", "finished"]
    assert log["invocations"][0]["elapsed_s"] == 30.0 and log["total"]["wall_s"] == 33.0


def test_behind_appends_write_files_first_keep_order_and_raise_errors(tmp_path, monkeypatch):
    """The optimization loop's writer: each row is appended after the file it names is on disk, rows stay in
    submission order, and a failed write stops its rows and is raised (the rows before it stay)."""
    import threading

    from mirage.runs import BehindAppends, read_rows

    run = RunDir.open(tmp_path / "r", {"x": 1})
    append, seen = run.append, []

    def checked(rows):
        assert all((tmp_path / r["file"]).is_file() for r in rows)  # the files before the rows that name them
        seen.append(threading.current_thread().name)
        append(rows)

    monkeypatch.setattr(run, "append", checked)
    gate = threading.Event()

    def writer(name, wait=False):
        def write():
            if wait:
                assert gate.wait(5)
            (tmp_path / name).write_text(name)
        return write

    with BehindAppends(run, limit=2) as behind:
        behind.submit(writer("a", wait=True), [{"question_id": "a", "file": "a"}])
        behind.submit(writer("b"), [{"question_id": "b", "file": "b"}])
        assert not run.results_path.exists() or read_rows(run.results_path) == []  # the caller went on meanwhile
        gate.set()
        behind.submit(writer("c"), [{"question_id": "c", "file": "c"}, {"question_id": "d", "file": "c"}])
    assert [r["question_id"] for r in read_rows(run.results_path)] == ["a", "b", "c", "d"]
    assert seen and all(name.startswith("mirage-writes") for name in seen)

    def broken():
        raise OSError("disk full")

    behind = BehindAppends(run)
    behind.submit(writer("e"), [{"question_id": "e", "file": "e"}])
    behind.submit(broken, [{"question_id": "f", "file": "f"}])
    with pytest.raises(OSError, match="disk full"):
        behind.close()
    assert [r["question_id"] for r in read_rows(run.results_path)] == ["a", "b", "c", "d", "e"]
