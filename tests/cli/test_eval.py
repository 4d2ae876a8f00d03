import json

import pytest
from typer.testing import CliRunner

from mirage.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("flag, value, message", [
    ("--conditions", "real,bluur", "unknown condition 'bluur'; did you mean 'blur'?"),
    ("--benchmark", "shapez", "unknown benchmark 'shapez'; did you mean 'shapes'?"),
    ("--split", "tets", "unknown split 'tets'; did you mean 'test'?"),
    ("--model", "dmeo", "unknown model 'dmeo'; did you mean 'demo'?"),
    ("--conditions", "real,real", "duplicate condition"),
])
def test_bad_names_are_refused_before_any_work(tmp_path, flag, value, message):
    res = run("eval", "--out", str(tmp_path / "run"), "--limit", "2", flag, value)
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_nonsense_numbers_and_missing_files(tmp_path):
    res = run("eval", "--out", str(tmp_path / "r"), "--limit", "0")
    assert res.exit_code == 2 and "--limit" in res.output
    res = run("eval", "--out", str(tmp_path / "r"), "--batch-size", "-3")
    assert res.exit_code == 2 and "--batch-size" in res.output
    res = run("eval", "--out", str(tmp_path / "r"), "--conditions", f"real,file:{tmp_path}/nope.png", "--limit", "2")
    assert res.exit_code == 2 and "nope.png" in res.output


def test_eval_writes_run_and_refuses_changed_config(tmp_path, tiny_dir):
    out = tmp_path / "run"
    args = ["eval", "--model", f"demo:{tiny_dir}", "--limit", "6", "--conditions", "real,blur", "--out", str(out), "-q"]
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert "real" in res.output and "blur" in res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["conditions"] == ["real", "blur"] and cfg["n_questions"] == 6
    assert len((out / "results.jsonl").read_text().splitlines()) == 12
    changed = run(*args, "--seed", "1")  # what the rows mean: refused (fewer conditions just resume: issue 31)
    assert changed.exit_code == 2 and "seed" in changed.output and "--overwrite" in changed.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 12  # nothing lost
    assert run(*args[:5], "--conditions", "real", "--out", str(out), "-q").exit_code == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 12
    again = run(*args[:5], "--conditions", "real", "--out", str(out), "-q", "--overwrite")
    assert again.exit_code == 0 and len((out / "results.jsonl").read_text().splitlines()) == 6


def test_unreadable_real_image_names_file_and_question(tmp_path, tiny_model):
    from mirage.benchmarks.question import Benchmark, ImageLoadError, Question
    from mirage.evaluate import evaluate
    bad = Benchmark("local", "test", [Question("q-7", "what ?", ("a", "b"), 0, images=(str(tmp_path / "gone.png"),)),
                                      Question("q-8", "what ?", ("a", "b"), 1, images=(b"not a png",))])
    with pytest.raises(ImageLoadError, match=r"question 'q-7'.*gone\.png"):
        evaluate(tiny_model, bad.subset(1), "real")
    with pytest.raises(ImageLoadError, match=r"question 'q-8'"):
        evaluate(tiny_model, Benchmark("local", "test", bad.questions[1:]), "real")


def test_real_benchmarks_from_local_copies(tmp_path, tiny_dir, monkeypatch):
    import importlib  # (mirage.evaluate, as an attribute, is the function)
    # the loaders' paths, run on a model that cannot read their words
    monkeypatch.setattr(importlib.import_module("mirage.evaluate"), "MAX_UNKNOWN_SHARE", 1.0)
    fixtures = "/work/shared/fixtures"
    res = run("eval", "--model", f"demo:{tiny_dir}", "--benchmark", "mmmu", "--data-dir", f"{fixtures}/mmmu",
              "--subjects", "Music,Biology", "--conditions", "real,blank", "--scoring", "generate",
              "--out", str(tmp_path / "m"), "-q")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["split"] == "validation" and cfg["environment"]["attn_implementation"] == "sdpa"
    rows = [json.loads(x) for x in (tmp_path / "m" / "results.jsonl").read_text().splitlines()]
    assert {r["type"] for r in rows} == {"Music", "Biology"} and all("response" in r for r in rows)
    res = run("optimize", "--model", f"demo:{tiny_dir}", "--benchmark", "scienceqa", "--data-dir",
              f"{fixtures}/scienceqa", "--input", "pixels", "--steps", "2", "--limit", "3", "--out", str(tmp_path / "s"), "-q")
    assert res.exit_code == 0, res.output
    assert "pixels-question-png" in json.loads((tmp_path / "s" / "summary.json").read_text())["n"]
    bad = run("eval", "--benchmark", "shapes", "--subjects", "Music", "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "--subjects applies to mmmu" in bad.output


def test_resume_under_other_library_versions_needs_allow_env_change(tmp_path, tiny_dir):
    out = tmp_path / "run"
    args = ["eval", "--model", f"demo:{tiny_dir}", "--limit", "4", "--conditions", "real", "--out", str(out), "-q"]
    assert run(*args).exit_code == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["libraries"]["mirage"] and cfg["environment"]["torch"] == cfg["libraries"]["torch"]
    cfg["libraries"]["torch"] = "1.0.0"
    (out / "config.json").write_text(json.dumps(cfg))
    refused = run(*args)
    said = " ".join(refused.output.split())  # the console wraps where the run directory's path length says
    assert refused.exit_code == 2 and "torch 1.0.0 ->" in said and "--allow-env-change" in said
    assert run(*args, "--allow-env-change").exit_code == 0
    assert json.loads((out / "config.json").read_text())["environment_changes"][0]["changes"][0].startswith("torch")


def test_eval_compile_flag_reaches_the_model(tmp_path, tiny_dir, monkeypatch):
    import mirage.compiling

    compiled = []
    real = mirage.compiling.compile_blocks

    def spy(model, backend="inductor"):  # aot_eager traces the same graphs in a fraction of inductor's time
        compiled.append(type(model).__name__)
        return real(model, "aot_eager")

    monkeypatch.setattr(mirage.compiling, "compile_blocks", spy)
    args = ["eval", "--model", f"demo:{tiny_dir}", "--limit", "4", "--conditions", "real,blank", "-q"]
    plain = run(*args, "--out", str(tmp_path / "a"))
    assert plain.exit_code == 0, plain.output
    assert compiled == []
    fast = run(*args, "--out", str(tmp_path / "b"), "--compile")
    assert fast.exit_code == 0, fast.output
    assert len(compiled) == 1
    rows = lambda d: sorted((r["question_id"], r["source"], r["pred"]) for r in map(  # noqa: E731
        json.loads, (tmp_path / d / "results.jsonl").read_text().splitlines()))
    assert rows("a") == rows("b")
