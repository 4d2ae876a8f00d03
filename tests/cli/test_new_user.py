"""What a new user hit, round two (issue 31), each run as typed: file benchmarks named by path and content, timings
of interrupted invocations, images the processor would read otherwise, the run lock, runs that grow, one-line
refusals."""

import json

from typer.testing import CliRunner

from mirage.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows(out):
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def one_line(res) -> str:
    """The refusal as one line (the console wraps at its width)."""
    return " ".join(res.output.split())


def write_set(questions, folder, answers=None):
    """ShapesQA questions as a JSONL benchmark `good.jsonl` in `folder`, images beside it; `answers` replaces the
    answer letters."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, q in enumerate(questions):
        (folder / f"{q.id}.png").write_bytes(q.images[0])
        lines.append(json.dumps({"id": q.id, "question": q.text, "choices": list(q.choices),
                                 "answer": answers[i] if answers else q.answer_letter, "image": f"{q.id}.png"}))
    path = folder / "good.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_another_file_with_the_same_name_at_the_same_out_is_refused(shapes_cli, small_bench, tmp_path):
    qs = small_bench.questions[:4]
    first = write_set(qs, tmp_path / "a")
    other = write_set(qs, tmp_path / "b", answers=["A" if q.answer_letter != "A" else "B" for q in qs])
    args = ["eval", "--model", f"demo:{shapes_cli}", "--conditions", "real", "--out", tmp_path / "r", "-q"]
    assert run(*args, "--benchmark", f"file:{first}").exit_code == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["benchmark"] == f"file:{first.resolve()}" and len(config["benchmark_sha256"]) == 64
    res = run(*args, "--benchmark", f"file:{other}")
    assert res.exit_code == 2 and "different config: benchmark:" in one_line(res)
    # the same path, its content changed: refused too
    first.write_text(other.read_text())
    res = run(*args, "--benchmark", f"file:{first}")
    assert res.exit_code == 2 and "benchmark_sha256" in one_line(res)


def test_curate_reads_a_file_benchmark_run(shapes_cli, small_bench, tmp_path, monkeypatch):
    path = write_set(small_bench.questions[:4], tmp_path / "set")
    monkeypatch.chdir(tmp_path)  # relative paths, as the README's loop types them
    args = ["eval", "--model", f"demo:{shapes_cli}", "--conditions", "real,none", "-q"]
    assert run(*args, "--benchmark", "file:set/good.jsonl", "--out", "r1").exit_code == 0
    res = run("curate", "r1", "--out", "cur", "--min-runs", "1")
    assert res.exit_code == 0, res.output  # was: unknown benchmark 'good'
    assert json.loads((tmp_path / "cur" / "curation.json").read_text())["n_evaluated"] == 4
    res = run("curate", "r1", "--out", "set")
    assert res.exit_code == 2 and "holds the benchmark being curated" in one_line(res)
    path.write_text(path.read_text() + "\n")  # the file changed since the run
    res = run("curate", "r1", "--out", "cur")
    assert res.exit_code == 2 and "has changed since the run evaluated it" in one_line(res)
