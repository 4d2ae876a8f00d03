"""What a new user types, run as typed (issue 20): values are honoured or refused, runs bounded by their flags."""

import json

from typer.testing import CliRunner

from mirage.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows(out):
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_lr_zero_is_refused_not_run(tmp_path):
    # Adam at lr 0 never moves the input: it ran and reported its start as a result (issue 31); now refused
    for cmd in ("optimize", "invert"):
        res = run(cmd, "--lr", "0", "--out", tmp_path / "r")
        assert res.exit_code == 2 and "--lr" in res.output and "is not > 0" in res.output
    assert not (tmp_path / "r").exists()


def test_help_imports_neither_torch_nor_any_backend():
    # `mirage --help` took 6 s importing torch and every backend; help must only need typer.
    import subprocess
    import sys
    code = ("import sys; from typer.testing import CliRunner; from mirage.cli import app\n"
            "for cmd in ([], ['eval'], ['optimize'], ['study'], ['report'], ['train-demo'], ['saliency'], ['invert'],"
            " ['transfer'], ['transfer-types']):\n"
            "    res = CliRunner().invoke(app, cmd + ['--help'])\n"
            "    assert res.exit_code == 0, (cmd, res.output)\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def export_jsonl(questions, folder, text=lambda q: q.text):
    """ShapesQA questions in the documented JSONL format, each with its own PNG beside the file."""
    folder.mkdir(exist_ok=True)
    lines = []
    for q in questions:
        (folder / f"{q.id}.png").write_bytes(q.images[0])
        lines.append(json.dumps({"id": q.id, "question": text(q), "choices": list(q.choices),
                                 "answer": q.answer_letter, "image": f"{q.id}.png", "type": q.type}))
    path = folder / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_demo_reads_a_jsonl_benchmark_as_it_reads_shapes(shapes_cli, small_bench, tmp_path):
    # The same questions through `file:` and through `shapes` are the same prompts to the demo, so the same rows.
    path = export_jsonl(small_bench.questions[:6], tmp_path / "jb")
    args = ["eval", "--model", f"demo:{shapes_cli}", "--conditions", "real,blank", "-q"]
    assert run(*args, "--benchmark", f"file:{path}", "--out", tmp_path / "f").exit_code == 0
    assert run(*args, "--limit", "6", "--out", tmp_path / "s").exit_code == 0
    key = lambda r: (r["source"], r["question_id"])  # noqa: E731
    got, want = sorted(rows(tmp_path / "f"), key=key), sorted(rows(tmp_path / "s"), key=key)
    assert [r["probs"] for r in got] == [r["probs"] for r in want]
    assert not any("unknown_words" in r for r in got)


def test_prompts_the_demo_cannot_read_are_counted_or_refused(shapes_cli, small_bench, tmp_path, monkeypatch):
    monkeypatch.delenv("MIRAGE_MAX_UNKNOWN_SHARE")  # the default threshold
    qs = small_bench.questions[:4]
    some = export_jsonl(qs, tmp_path / "some", text=lambda q: q.text.replace("what", "What", 1) if q is qs[0] else q.text)
    res = run("eval", "--model", f"demo:{shapes_cli}", "--benchmark", f"file:{some}", "--conditions", "real",
              "--out", tmp_path / "s", "-q")
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "1 of 4 prompts" in res.output and "'What'" in res.output
    assert {r["question_id"]: r.get("unknown_words") for r in rows(tmp_path / "s")}[qs[0].id] == 1
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["unknown_words"] == {
        "questions": 1, "max_per_prompt": 1}
    garbage = export_jsonl(qs, tmp_path / "bad", text=lambda q: "Welche Farbe hat das Quadrat unten links?")
    res = run("eval", "--model", f"demo:{shapes_cli}", "--benchmark", f"file:{garbage}", "--out", tmp_path / "b")
    assert res.exit_code == 2 and "cannot read" in res.output and repr(qs[0].id) in res.output
    assert "'Welche'" in res.output and not (tmp_path / "b" / "results.jsonl").exists()


def test_a_hub_model_that_cannot_be_had_is_one_line(tmp_path):
    # Offline, with an empty cache: transformers' 224-line OSError becomes one line naming the model and the fix.
    import os
    import subprocess
    import sys
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "mirage", "eval", "--model", "hf:llava-hf/llava-1.5-7b-hf",
                          "--limit", "2", "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                         timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in out, out
    assert "hf:llava-hf/llava-1.5-7b-hf: not a local directory" in out and "`hf download" in out  # the CLI it has
    bad = runner.invoke(app, ["eval", "--model", f"hf:{tmp_path / 'nothing-here'}", "--limit", "2",
                              "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "no such directory" in bad.output and "hf download" not in bad.output  # a path is no hub id (issue 31)


def test_flags_that_would_do_nothing_are_refused_by_name(tmp_path):
    base = ["optimize", "--limit", "4", "--out", tmp_path / "r"]
    for flags, message in [(["--input", "tokens", "--encoders", "clip"], "--encoders applies to --input features or pixels, not tokens"),
                           (["--input", "features", "--param", "fourier"], "--param applies to --input pixels, not features"),
                           (["--input", "features", "--quantize"], "--quantize applies to --input pixels, not features"),
                           (["--input", "pixels", "--detach", "clip"], "--detach applies to --input features, not pixels"),
                           (["--input", "features", "--goal", "targeted"], "--goal applies to --input patch, not features"),
                           (["--input", "pixels", "--method", "backprop"], "--method applies to --input generator")]:
        res = run(*base, *flags)
        assert res.exit_code == 2 and message in res.output, (flags, res.output)
    assert not (tmp_path / "r").exists()


def test_a_failed_start_does_not_block_the_corrected_retry(shapes_cli, tmp_path):
    out = tmp_path / "r"
    model = f"demo:{shapes_cli}"
    common = ["--limit", "4", "--steps", "1", "--out", out, "-q"]
    for typo in (["--model", "demoo"], ["--model", model, "--encoders", "clipp"]):
        res = run("optimize", "--input", "features", *typo, *common)
        assert res.exit_code == 2 and "did you mean" in res.output, res.output
    res = run("optimize", "--model", model, "--input", "features", "--encoders", "clip", *common)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["spec"]["encoders"] == ["clip"]
    # once work is written, a different config is refused again, naming the inner key that changed
    res = run("optimize", "--model", model, "--input", "features", "--encoders", "dino", *common)
    assert res.exit_code == 2 and 'spec.encoders: ["clip"] -> ["dino"]' in res.output


def test_patch_and_generator_imply_scope_universal(shapes_cli, tmp_path):
    res = run("optimize", "--model", f"demo:{shapes_cli}", "--input", "patch", "--train", "2", "--limit", "4",
              "--steps", "1", "--out", tmp_path / "p", "-q")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "p" / "config.json").read_text())["spec"]["scope"] == "universal"
    res = run("optimize", "--input", "patch", "--scope", "question", "--out", tmp_path / "q")
    assert res.exit_code == 2 and "--scope universal" in res.output


def test_every_invocation_is_kept_and_totals_shown(shapes_cli, tmp_path):
    # A resume with another --batch-size (and nothing left to do) must not replace the first call's record.
    out = tmp_path / "r"
    args = ["eval", "--model", f"demo:{shapes_cli}", "--conditions", "real", "--limit", "4", "--out", out, "-q"]
    assert run(*args, "--batch-size", "4").exit_code == 0
    first = json.loads((out / "timings.json").read_text())["invocations"][0]
    assert run(*args, "--batch-size", "2").exit_code == 0
    log = json.loads((out / "timings.json").read_text())
    assert [i["batch_size"] for i in log["invocations"]] == [4, 2] and log["invocations"][0] == first
    assert log["total"]["work_s"] == round(sum(i["work_s"] for i in log["invocations"]), 1)
    assert json.loads((out / "config.json").read_text())["batch_size"] == 4  # the run's first call
    assert run("report", out).exit_code == 0
    page = (out / "report.html").read_text()
    assert "4, then 2" in page and "in 2 invocations" in page


def test_a_read_only_out_is_one_line(shapes_cli, tmp_path, monkeypatch):
    import errno
    import os
    import pathlib
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.geteuid() == 0:  # root writes through file modes: make the folder read-only as a read-only mount is
        mkdir = pathlib.Path.mkdir

        def refuse(self, *a, **k):
            if str(self).startswith(str(ro)):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return mkdir(self, *a, **k)

        monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    try:
        res = run("eval", "--model", f"demo:{shapes_cli}", "--limit", "2", "--out", ro / "run")
    finally:
        os.chmod(ro, 0o700)
    assert res.exit_code == 2, res.output
    assert "cannot write the run directory" in res.output and "--out" in res.output and "Traceback" not in res.output


def test_ctrl_c_says_what_is_kept_and_the_rerun_resumes_without_empty_bars(shapes_cli, tmp_path, monkeypatch):
    import importlib
    evaluate = importlib.import_module("mirage.evaluate")
    score, calls = evaluate.score_later, []  # the evaluation loop's scoring (rows read back a batch later)

    def interrupted_second_batch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return score(*a, **k)

    monkeypatch.setattr(evaluate, "score_later", interrupted_second_batch)
    out = tmp_path / "r"
    args = ["eval", "--model", f"demo:{shapes_cli}", "--conditions", "real", "--limit", "6", "--batch-size", "2",
            "--out", out]
    res = run(*args)
    assert res.exit_code == 130
    assert "interrupted" in res.output and "2 finished rows kept" in res.output and "rerun the same command" in res.output
    assert "Traceback" not in res.output
    monkeypatch.setattr(evaluate, "score_later", score)
    assert run(*args).exit_code == 0 and len(rows(out)) == 6
    # timings.json records the interrupted call too (issue 31 item 2: a study's 19 minutes reported as 483 s)
    log = json.loads((out / "timings.json").read_text())
    assert [i["status"] for i in log["invocations"]] == ["interrupted", "finished"]
    first, second = log["invocations"]
    assert first["elapsed_s"] >= 0 and "argv" in first and "work_s" in second
    assert log["total"]["wall_s"] == round(first["elapsed_s"] + second["load_s"] + second["work_s"], 1)


def test_a_part_with_nothing_left_shows_no_bar(monkeypatch):
    # A resumed study printed twelve empty "0/0" bars, one per finished part.
    import mirage.progress
    made = []
    monkeypatch.setattr(mirage.progress, "Progress", lambda *a, **k: made.append(1) or __import__("contextlib").nullcontext())
    with mirage.progress.progress_bar("evaluating", 0) as advance:
        advance(0)
    assert made == []


def test_a_hub_benchmark_that_cannot_be_downloaded_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs):  # what snapshot_download raises offline with nothing cached
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub.\nMore lines.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    for name, layout in (("mmmu", "/validation-*.parquet"), ("scienceqa", "data/test-*.parquet"),
                         ("mmstar", ".parquet")):
        res = run("eval", "--benchmark", name, "--limit", "2", "--out", tmp_path / name)
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"{name}: cannot download" in res.output and "--data-dir" in res.output and layout in res.output
        assert len(res.output.strip().splitlines()) <= 3, res.output  # one message (rich may wrap it)


def test_help_has_text_for_every_option_and_no_bool_type():
    import typer as _typer
    commands = _typer.main.get_command(app).commands
    missing = [(name, p.opts) for name, c in commands.items() for p in c.params if not getattr(p, "help", None)]
    assert missing == []
    for name in commands:
        page = runner.invoke(app, [name, "--help"], terminal_width=200).output
        assert "<bool>" not in page, name
    assert "[OPTIONS] RUN_DIR" in runner.invoke(app, ["report", "--help"], terminal_width=200).output


def test_train_demo_refuses_phases_longer_than_its_steps(tmp_path):
    res = run("train-demo", "--out", tmp_path / "d", "--steps", "100")  # text 800 + vision 600 by default
    assert res.exit_code == 2 and "--text-steps 800 + --vision-steps 600" in res.output and "--steps 100" in res.output
    assert not (tmp_path / "d").exists()


def test_report_shows_saliency_measures_of_a_saliency_run(shapes_cli, tmp_path):
    out = tmp_path / "sal"
    res = run("saliency", "--model", f"demo:{shapes_cli}", "--limit", "2", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "saliency-summary.json").read_text())
    res = run("report", out)
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert 'id="saliency-table"' in page and "pointing real" in page
    figures = summary["saliency-gradient"]["all"]
    assert f"{figures['pointing_real']:.3f}" in page and f"{figures['baseline']:.3f}" in page


def test_report_names_what_every_source_is_and_its_benchmark(shapes_cli, small_bench, tmp_path):
    # A JSONL set with a typed and an untyped question, its generic sources, and the analyses' source names.
    qs = small_bench.questions[:4]
    path = export_jsonl(qs, tmp_path / "jb")
    lines = path.read_text().splitlines()
    lines[0] = json.dumps({k: v for k, v in json.loads(lines[0]).items() if k != "type"})
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r"
    assert run("eval", "--model", f"demo:{shapes_cli}", "--benchmark", f"file:{path}", "--conditions", "real,blank",
               "--out", out, "-q").exit_code == 0
    assert run("report", out).exit_code == 0
    page = (out / "report.html").read_text()
    assert "set/file" not in page and "on set</title>" in page  # the file's set, not `set/file`
    assert "<th>(no type)</th>" in page and "<th></th>" not in page


def test_analyses_sources_say_what_they_are_and_unpaired_rows_get_no_test():
    from mirage.sources import parse_source
    from mirage.stats import summarize
    for name in ("inversion-question-from-blank", "inversion-question-png", "patch-untargeted", "patch-targeted-B-fixed", "patch-random",
                 "generator-reinforce", "generator-reinforce-train"):
        assert parse_source(name).description, name
    row = lambda q, s, c: {"question_id": q, "source": s, "correct": c, "type": ""}  # noqa: E731
    summary = summarize([row("a", "blank", True), row("b", "generator-reinforce-train", False)])
    assert "blank" not in summary["paired"]["generator-reinforce-train"]  # zero pairs: no p-value
