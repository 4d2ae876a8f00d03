import json

import pytest
from typer.testing import CliRunner

from mirage.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_model):
    d = tmp_path_factory.mktemp("tiny")
    tiny_model.save_pretrained(d)
    return str(d)


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
    changed = run(*args[:5], "--conditions", "real", "--out", str(out), "-q")
    assert changed.exit_code == 2 and "conditions" in changed.output and "--overwrite" in changed.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 12  # nothing lost
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


def test_optimize_universal_with_accumulation_resumes(tmp_path, tiny_dir):
    out = tmp_path / "u"
    args = ["optimize", "--model", f"demo:{tiny_dir}", "--input", "features", "--scope", "universal", "--train", "4",
            "--limit", "6", "--steps", "3", "--batch-size", "2", "--accum", "2", "--out", str(out), "-q"]
    res = run(*args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == {"features-universal": 2, "features-universal-train": 4}
    assert (out / "artifacts" / "features-universal.safetensors").exists()
    history = json.loads((out / "artifacts" / "features-universal.history.json").read_text())
    assert len(history) == 3
    lines = (out / "results.jsonl").read_text().splitlines()
    assert run(*args).exit_code == 0 and (out / "results.jsonl").read_text().splitlines() == lines
    bad = run(*args[:-3], "--dtype", "fp8", "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "--dtype" in bad.output and "did you mean 'fp32'" in bad.output


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


def test_compile_flag_reaches_the_model_and_does_not_block_a_resume(tmp_path, tiny_dir, monkeypatch):
    import mirage.experiment
    from mirage.compiling import compile_blocks
    backends = []

    def spy(model, backend):  # the CLI asks for inductor; aot_eager traces the same graphs in a fraction of the time
        backends.append(backend)
        return compile_blocks(model, "aot_eager")

    monkeypatch.setattr(mirage.experiment, "compile_blocks", spy)
    out = tmp_path / "f"
    args = ["optimize", "--model", f"demo:{tiny_dir}", "--input", "features", "--limit", "3", "--steps", "2",
            "--out", str(out), "-q"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert backends == []
    resumed = run(*args, "--compile")  # a speed switch, not part of the run's identity
    assert resumed.exit_code == 0, resumed.output
    assert backends == ["inductor"]
    assert json.loads((out / "config.json").read_text())["compile"] is False  # the config of the run's first call
