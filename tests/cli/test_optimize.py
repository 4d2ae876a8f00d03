import json

from typer.testing import CliRunner

from mirage.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


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


def test_compile_flag_reaches_the_model_and_does_not_block_a_resume(tmp_path, tiny_dir, monkeypatch):
    import mirage.experiments.optimization
    from mirage.compiling import compile_blocks
    backends = []

    def spy(model, backend):  # the CLI asks for inductor; aot_eager traces the same graphs in a fraction of the time
        backends.append(backend)
        return compile_blocks(model, "aot_eager")

    monkeypatch.setattr(mirage.experiments.optimization, "compile_blocks", spy)
    out = tmp_path / "f"
    args = ["optimize", "--model", f"demo:{tiny_dir}", "--input", "features", "--limit", "3", "--steps", "2",
            "--out", str(out), "-q"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert backends == []
    assert json.loads((out / "timings.json").read_text())["invocations"][0]["batch_size"] == 16  # auto on a CPU
    resumed = run(*args, "--compile")  # a speed switch, not part of the run's identity
    assert resumed.exit_code == 0, resumed.output
    assert backends == ["inductor"]
    assert json.loads((out / "config.json").read_text())["compile"] is False  # the config of the run's first call
    # auto measures the step the run takes: compiled before the probes (their peak is the compiled graph's)
    import mirage.experiments.fit
    order = []
    real_peak = mirage.experiments.fit.step_peak
    monkeypatch.setattr(mirage.experiments.fit, "step_peak", lambda *a, **k: order.append("probe") or real_peak(*a, **k))
    backends.clear()
    monkeypatch.setattr(mirage.experiments.optimization, "compile_blocks",
                        lambda model, backend: order.append("compile") or spy(model, backend))
    fitted = run(*args[:-3], "--out", str(tmp_path / "g"), "-q", "--compile", "--memory", "4")
    assert fitted.exit_code == 0, fitted.output
    assert order[0] == "compile" and "probe" in order


def test_optimize_command_runs_the_patch_loop_and_refuses_per_question(tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app
    from mirage.runs import read_rows

    base = ["optimize", "--input", "patch", "--limit", "6", "--train", "3", "--steps", "2", "--device", "cpu", "-q"]
    ok = CliRunner().invoke(app, [*base, "--scope", "universal", "--patch-size", "16", "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    sources = {r["source"] for r in read_rows(tmp_path / "a" / "results.jsonl")}
    assert {"patch-untargeted", "patch-untargeted-png"} <= sources
    assert CliRunner().invoke(app, ["report", str(tmp_path / "a")]).exit_code == 0  # success, not only accuracy
    page = (tmp_path / "a" / "report.html").read_text()
    rate = json.loads((tmp_path / "a" / "patch-untargeted.summary.json").read_text())["evaluations"][
        "patch-untargeted"]["success_rate"]
    assert 'id="patch-table"' in page and "drop beyond random patch" in page and f"{rate[0]:.3f} [" in page
    bad = CliRunner().invoke(app, [*base, "--scope", "question", "--out", str(tmp_path / "b")])  # universal is implied
    assert bad.exit_code == 2 and "use --scope universal" in bad.output


def test_soft_prompt_from_the_command_line_on_the_vlm_and_on_a_text_model(tmp_path, tiny_dir):
    """`--input soft-prompt` through the VLM's text path, then `--text-model` (the shipped base LM) with as many
    vectors as the VLM's image tokens; the flags that belong to it are refused elsewhere, by name."""
    from safetensors.torch import load_file

    base = ["optimize", "--model", f"demo:{tiny_dir}", "--input", "soft-prompt", "--limit", "4", "--steps", "2",
            "--batch-size", "2", "-q"]
    res = run(*base, "--out", str(tmp_path / "vlm"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "vlm" / "summary.json").read_text())["n"] == {"soft-prompt-question": 4}
    res = run(*base, "--scope", "universal", "--train", "2", "--text-model", "demo", "--out", str(tmp_path / "lm"))
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "lm" / "summary.json").read_text())
    assert summary["n"] == {"soft-prompt-universal-text-model": 2, "soft-prompt-universal-text-model-train": 2}
    vectors = load_file(tmp_path / "lm" / "artifacts" / "soft-prompt-universal-text-model.safetensors")["soft_prompt"]
    assert vectors.shape == (64, 256)  # the tiny demo's 8 x 8 image tokens, the base LM's width
    bad = run(*base[:3], "--input", "features", "--soft-tokens", "8", "--out", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "--soft-tokens applies to --input soft-prompt" in bad.output
    bad = run(*base[:3], "--input", "pixels", "--text-model", "demo", "--out", str(tmp_path / "y"))
    assert bad.exit_code == 2 and "--text-model applies to --input soft-prompt" in bad.output


def test_batch_size_auto_measures_a_fit_and_records_it(tmp_path, tiny_dir):
    out = tmp_path / "auto"
    res = run("optimize", "--model", f"demo:{tiny_dir}", "--device", "cpu", "--limit", "3", "--steps", "1",
              "--memory", "1", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "batch size auto: 3 (no memory switches" in res.output
    timing = json.loads((out / "timings.json").read_text())["invocations"][0]
    auto = timing["auto"]
    assert timing["batch_size"] == 3 and auto["batch_size"] == 3 and auto["switches"] == []
    peaks = [p["peak_bytes"] for p in auto["probes"]]
    assert [p["batch"] for p in auto["probes"]] == [1, 2, 3] and peaks == sorted(peaks) and peaks[0] < peaks[-1]
    assert json.loads((out / "config.json").read_text())["batch_size"] == "auto"  # the same command resumes
    bad = run("optimize", "--model", f"demo:{tiny_dir}", "--batch-size", "4", "--memory", "1", "--out",
              str(tmp_path / "b"))
    assert bad.exit_code == 2 and "--memory applies to --batch-size auto" in bad.output
