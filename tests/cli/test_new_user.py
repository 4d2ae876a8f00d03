"""What a new user hit, round two (issue 31), each run as typed: file benchmarks named by path and content, timings
of interrupted invocations, images the processor would read otherwise, the run lock, runs that grow, one-line
refusals."""

import json

import torch
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
    monkeypatch.chdir(tmp_path / "cur")  # the report opened from elsewhere still finds the questions
    assert run("report", tmp_path / "r1").exit_code == 0
    assert "Shown without question text" not in (tmp_path / "r1" / "report.html").read_text()
    monkeypatch.chdir(tmp_path)
    path.write_text(path.read_text() + "\n")  # the file changed since the run
    res = run("curate", "r1", "--out", "cur")
    assert res.exit_code == 2 and "has changed since the run evaluated it" in one_line(res)


def test_a_second_process_on_one_out_is_refused_naming_the_first(shapes_cli, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "r"
    args = ["eval", "--model", f"demo:{shapes_cli}", "--conditions", "real", "--limit", "2", "--out", out, "-q"]
    assert run(*args).exit_code == 0
    holder = subprocess.Popen(  # a process writing the run (as `mirage eval ... --out r` would hold it)
        [sys.executable, "-c", "import sys, time; from mirage.runs import lock_run; sys.argv = ['mirage', 'eval', "
         f"'--out', 'r']; lock_run('{out}'); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        res = run(*args)
        assert res.exit_code == 2, res.output
        assert f"being written by another process (pid {holder.pid} on" in one_line(res)
        assert "mirage eval --out r" in one_line(res) and len(res.output.strip().splitlines()) <= 3
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed writer leaves no stale lock
        holder.wait()
    assert run(*args).exit_code == 0
    # rows two writers appended before the lock existed: read once each, and the run still reports
    with open(out / "results.jsonl", "a") as f:
        f.write((out / "results.jsonl").read_text())
    assert run(*args).exit_code == 0
    assert run("report", out).exit_code == 0


def test_sixteen_bit_and_transparent_images_are_read_as_decided_and_said(shapes_cli, small_bench, tmp_path,
                                                                          monkeypatch):
    import numpy as np
    from PIL import Image

    import mirage.benchmarks.question as question

    monkeypatch.setattr(question, "_WARNED", set())
    qs = small_bench.questions[:2]
    path = write_set(qs, tmp_path / "set")
    grey = np.full((64, 64), 32768, dtype=np.uint16)  # mid-grey in 16 bits: convert("RGB") made it white
    Image.fromarray(grey).save(tmp_path / "set" / f"{qs[0].id}.png")
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half
    rgba[:, 32:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "set" / f"{qs[1].id}.png")
    res = run("eval", "--model", f"demo:{shapes_cli}", "--benchmark", f"file:{path}", "--conditions", "real",
              "--out", tmp_path / "r", "-q")
    assert res.exit_code == 0, res.output
    said = one_line(res)
    assert "16-bit pixels) is scaled to 8 bits" in said and "with transparency is read as lmms-eval" in said
    from mirage.benchmarks import load_benchmark

    bench = load_benchmark(f"file:{path}")
    assert np.asarray(bench[0].image()).max() == 128  # 32768 * 255 / 65535, not 255
    assert tuple(np.asarray(bench[1].image())[0, 0]) == (200, 0, 0)  # alpha dropped, as lmms-eval reads it


def test_a_finished_run_grows_by_sources_and_questions_and_refuses_other_meanings(shapes_cli, tmp_path):
    out = tmp_path / "r"
    base = ["eval", "--model", f"demo:{shapes_cli}", "--out", out, "-q"]
    assert run(*base, "--conditions", "real", "--limit", "2").exit_code == 0
    before = (out / "results.jsonl").read_text()
    res = run(*base, "--conditions", "blank", "--limit", "3")  # a condition and a question more
    assert res.exit_code == 0, res.output
    after = (out / "results.jsonl").read_text()
    assert after.startswith(before)  # the rows it had are kept as they were
    assert sorted((r["source"], r["question_id"][-1]) for r in rows(out)) == [  # what each call asked for
        ("blank", "0"), ("blank", "1"), ("blank", "2"), ("real", "0"), ("real", "1")]
    config = json.loads((out / "config.json").read_text())
    assert config["conditions"] == ["real", "blank"] and config["limit"] == 3
    assert set(json.loads((out / "summary.json").read_text())["n"]) == {"real", "blank"}
    calls = json.loads((out / "timings.json").read_text())["invocations"]
    assert len(calls) == 2 and all(isinstance(c["threads"], int) for c in calls)  # the thread count, recorded
    for flags, key in ((["--seed", "1"], "seed:"), (["--scoring", "generate"], "scoring:")):
        res = run(*base, "--conditions", "real", "--limit", "2", *flags)
        assert res.exit_code == 2 and key in one_line(res) and "A run takes more conditions" in one_line(res)


def test_tracebacks_that_are_now_one_line(shapes_cli, tmp_path, monkeypatch):
    import huggingface_hub.constants
    import torch
    from transformers import LlavaConfig

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests (and none here)
    LlavaConfig().save_pretrained(tmp_path / "llava")  # a VLM's config: enough to be told it is no causal LM
    (tmp_path / "afile").write_text("x")
    model = f"demo:{shapes_cli}"
    cases = [(["eval", "--device", "gpu"], "--device 'gpu': not a device torch knows"),
             (["eval", "--out", tmp_path / "afile" / "sub"], "a path above it is a file"),
             (["report", tmp_path / "afile"], "is a file: give a run or study directory"),
             (["eval", "--model", model, "--text-model", f"hf:{tmp_path / 'llava'}"], "'llava' model is not a causal"),
             (["eval", "--model", f"hf:{tmp_path / 'llava'}", "--text-model", "demo"], "reads only ShapesQA's words"),
             (["eval", "--model", model, "--text-model", "hf:no-such-org/no-such-lm"], "`hf download no-such-org")]
    if not torch.cuda.is_available():
        cases.append((["eval", "--device", "cuda"], "--device cuda: this torch was built without CUDA"))
    for args, message in cases:
        out = [] if "--out" in args or args[0] == "report" else ["--out", tmp_path / "r"]
        res = run(*args, *out, "--limit", "2", "-q") if args[0] == "eval" else run(*args)
        assert res.exit_code == 2 and message in one_line(res), (args, res.output)
        assert "Traceback" not in res.output
        assert not (tmp_path / "r").exists(), args  # a failed start leaves no config-only directory


def test_optimize_caps_its_batch_skips_imageless_questions_and_reads_a_bom(shapes_cli, small_bench, tmp_path):
    path = write_set(small_bench.questions[:3], tmp_path / "set")
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({k: v for k, v in json.loads(lines[2]).items() if k != "image"})  # a text-only question
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())  # as Excel writes UTF-8
    res = run("optimize", "--model", f"demo:{shapes_cli}", "--benchmark", f"file:{path}", "--input", "pixels",
              "--batch-size", "100000000", "--steps", "1", "--out", tmp_path / "r", "-q")
    assert res.exit_code == 0, res.output  # was: 4.9 TB asked for, and "need at least one array to stack"
    assert "skipped 1 of 3 questions without an image" in one_line(res)
    assert {r["question_id"] for r in rows(tmp_path / "r")} == {q.id for q in small_bench.questions[:2]}
    # a truncated image is refused when the set is loaded, not midway through every resume
    png = tmp_path / "set" / f"{small_bench.questions[0].id}.png"
    png.write_bytes(png.read_bytes()[:200])
    res = run("eval", "--benchmark", f"file:{path}", "--out", tmp_path / "e", "-q")
    assert res.exit_code == 2 and "line 1" in one_line(res) and "cannot read image file" in one_line(res)


def test_ctrl_c_of_a_study_counts_the_rows_of_its_benchmarks(tmp_path):
    from mirage.cli.common import kept

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "config.json").write_text("{}")
    (tmp_path / "shapes" / "results.jsonl").write_text(
        "".join(json.dumps({"question_id": f"q{i}", "source": "real"}) + "\n" for i in range(3)))
    assert kept(tmp_path).startswith(f"3 finished rows kept in {tmp_path} (shapes)")  # was: 0


def test_data_dir_reaches_saliency_invert_and_transfer(shapes_cli, tmp_path):
    from PIL import Image

    sqa = "/work/shared/fixtures/scienceqa"
    res = run("saliency", "--model", f"demo:{shapes_cli}", "--benchmark", "scienceqa", "--data-dir", sqa,
              "--limit", "1", "--out", tmp_path / "s", "-q")
    assert res.exit_code == 0, res.output  # was: no such option --data-dir
    assert "no pointing-game figures: the questions of scienceqa have no target box" in one_line(res)
    for cmd in ("invert", "transfer-types"):  # the flag reaches the benchmark's options, refused where unused
        res = run(cmd, "--data-dir", sqa, "--out", tmp_path / "x")
        assert res.exit_code == 2 and "--data-dir applies to" in one_line(res) and "not 'shapes'" in one_line(res)
    Image.new("RGB", (8, 8)).save(tmp_path / "u.png")
    res = run("transfer", "--from", tmp_path / "u.png", "--data-dir", f"scienceqa={sqa}", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "'scienceqa' is not one of --benchmark shapes" in one_line(res)


def test_progress_lines_where_output_is_not_a_terminal(shapes_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MIRAGE_PROGRESS_EVERY", "0")  # every advance (default: every 30 s)
    res = run("eval", "--model", f"demo:{shapes_cli}", "--conditions", "real", "--limit", "4", "--batch-size", "2",
              "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert "evaluating: 2/4 (50%)" in res.output and "evaluating: 4/4 (100%)" in res.output and "ETA" in res.output


def test_the_python_api_applies_the_thread_policy(monkeypatch):
    import mirage
    import mirage.threads

    calls = []
    monkeypatch.setattr(mirage.threads, "apply_threads", lambda n=None: calls.append(n))
    monkeypatch.setattr(mirage, "_THREADS", [])
    monkeypatch.setenv("MIRAGE_THREADS", "1")
    monkeypatch.delitem(vars(mirage), "evaluate", raising=False)
    assert callable(mirage.evaluate) and calls == [1]


def test_show_exports_csv_and_compare_pairs_two_runs(shapes_cli, tiny_model, tmp_path):
    import csv

    from safetensors.torch import load_file, save_file

    base = ["eval", "--conditions", "real,blank", "--limit", "4", "-q"]
    assert run(*base, "--model", f"demo:{shapes_cli}", "--out", tmp_path / "a").exit_code == 0
    other = tmp_path / "other"
    tiny_model.save_pretrained(other)  # model B: the same tiny model with one weight zeroed
    state = load_file(other / "model.safetensors")
    key = next(k for k in state if k.startswith("lm.") and k.endswith("weight"))
    state[key] = state[key] * 0
    save_file(state, other / "model.safetensors")
    assert run(*base, "--model", f"demo:{other}", "--out", tmp_path / "b").exit_code == 0
    res = run("show", tmp_path / "a", "--csv", tmp_path / "t.csv", "--rows", tmp_path / "r.csv")
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(open(tmp_path / "t.csv")))
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [(t["source"], float(t["accuracy"])) for t in table] == list(summary["accuracy"].items())
    assert len(list(csv.DictReader(open(tmp_path / "r.csv")))) == 8
    res = run("compare", tmp_path / "a", tmp_path / "b")
    assert res.exit_code == 0, res.output
    from mirage.stats import paired_difference

    a = {r["question_id"]: r["correct"] for r in rows(tmp_path / "a") if r["source"] == "real"}
    b = {r["question_id"]: r["correct"] for r in rows(tmp_path / "b") if r["source"] == "real"}
    want = paired_difference([a[q] for q in sorted(a)], [b[q] for q in sorted(a)])
    assert f"{want['difference']:+.3f}" in res.output and f"{want['mcnemar']['p']:.2g}" in res.output


def test_a_model_of_ones_own_by_module_and_class(shapes_cli, tmp_path, monkeypatch):
    (tmp_path / "my_vlms.py").write_text(
        "import torch\n"
        "from mirage.models.demo.modeling import DemoVLM\n\n\n"
        "class Mine(DemoVLM):  # a VLM subclass; here the demo's, loaded from a directory\n"
        "    @classmethod\n"
        "    def load(cls, path, device, dtype, **options):\n"
        "        return cls.from_pretrained(path, device=device, dtype=dtype or torch.float32)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["eval", "--conditions", "real", "--limit", "2", "-q"]
    res = run(*args, "--model", f"my_vlms:Mine:{shapes_cli}", "--out", tmp_path / "mine")
    assert res.exit_code == 0, res.output
    assert run(*args, "--model", f"demo:{shapes_cli}", "--out", tmp_path / "demo").exit_code == 0
    assert [r["probs"] for r in rows(tmp_path / "mine")] == [r["probs"] for r in rows(tmp_path / "demo")]
    res = run(*args, "--model", "my_vlms:Yours", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "module 'my_vlms' has no 'Yours'" in one_line(res)


def test_cosmetic_benchmarks_help_names_and_shared_permissions(tmp_path):
    import os

    from rich.console import Console

    from mirage.display import summary_table
    from mirage.runs import RunDir
    from mirage.stats import summarize

    res = run("benchmarks")
    assert "(generated locally)" in res.output and "test (1,000)" in res.output  # was an empty shapes row
    assert "file:PATH" in one_line(run("eval", "--help")) and "spec:PATH" in one_line(run("eval", "--help"))
    rows_ = [{"question_id": "q", "source": f"features-question-{e}-from-blank", "correct": True, "type": ""}
             for e in ("clip", "dino")]
    console = Console(width=60, record=True)
    console.print(summary_table(summarize(rows_)))
    text = console.export_text()
    assert "(no" in text and "type)" in text  # the untyped questions' column has a header
    assert "n-clip-f" in text and "n-dino-f" in text  # folded, not both cut to "features-questi…"
    old = os.umask(0o022)
    try:
        path = RunDir.open(tmp_path / "r", {"command": "eval"}).write_json("summary.json", {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # was 0600 whatever the umask


def test_an_optimize_only_report_names_no_missing_baseline(shapes_cli, tmp_path):
    out = tmp_path / "o"
    assert run("optimize", "--model", f"demo:{shapes_cli}", "--limit", "2", "--steps", "1", "--out", out,
               "-q").exit_code == 0
    assert run("report", out, "--no-questions").exit_code == 0
    page = " ".join((out / "report.html").read_text().split())
    assert "McNemar test against on" not in page and "no real or blank rows in this run: no paired test" in page


def test_models_import_nothing_above_them():
    # arrows point down: cli -> experiments -> loops (optimize, evaluate) -> models; training the demo's text LM
    # imported `evaluate` from models/demo (issue 31, the house)
    import ast
    from pathlib import Path

    import mirage

    root = Path(mirage.__file__).parent
    above = ("evaluate", "optimize", "experiments", "cli", "report", "curate")
    for path in (root / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = (path.parent.relative_to(root).parts[: len(path.parent.relative_to(root).parts)
                                                               - node.level + 1] + tuple((node.module or "").split(".")))
                assert not (target and target[0] in above), (path, node.module)


def test_train_demo_text_runs_as_typed(tmp_path):
    # it refused every --steps ("leave no joint training", with a traceback): its text-only phase is all it trains
    res = run("train-demo-text", "--out", tmp_path / "lm", "--steps", "1", "--batch-size", "2", "--eval-limit", "4",
              "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lm" / "config.json").is_file() and (tmp_path / "lm" / "MODEL_CARD.md").is_file()


def test_transfer_names_the_model_an_input_was_trained_for(shapes_cli, tmp_path):
    made = tmp_path / "made"
    (made / "artifacts").mkdir(parents=True)
    (made / "config.json").write_text(json.dumps({"command": "optimize", "model": "hf:some/other-vlm"}))
    art = made / "artifacts" / "features-universal.safetensors"
    art.write_bytes(b"")  # a torn file: one line, not safetensors' traceback
    res = run("transfer", "--from", made, "--model", f"demo:{shapes_cli}", "--out", tmp_path / "t")
    assert res.exit_code == 2 and "not a readable safetensors file" in one_line(res)
    from safetensors.torch import save_file

    save_file({"clip": torch.zeros(3, 5)}, str(art))  # features of another model's shape
    res = run("transfer", "--from", made, "--model", f"demo:{shapes_cli}", "--out", tmp_path / "t")
    out = one_line(res)
    assert res.exit_code == 2 and "clip is [3, 5], this model takes" in out, out
    assert "(made with --model hf:some/other-vlm)" in out, out


def test_a_huge_image_is_said_once_and_one_too_large_refused(monkeypatch, capsys):
    import io

    import numpy as np
    from PIL import Image

    import mirage.benchmarks.question as question

    monkeypatch.setattr(question, "_WARNED", set())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns above it, refuses above twice it

    def png(side):
        buf = io.BytesIO()
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    assert question.open_image(png(40), "q1").size == question.open_image(png(40), "q2").size == (40, 40)
    said = capsys.readouterr().err
    assert said.count("decompression-bomb limit") == 1 and "DecompressionBombWarning" not in said
    import pytest

    with pytest.raises(question.ImageLoadError, match="'q3'.*too large to decode"):
        question.open_image(png(50), "q3")


def test_a_hub_benchmark_skips_and_records_questions_whose_image_cannot_be_decoded(tiny_dir, tmp_path, monkeypatch):
    """Embedded image bytes the user cannot edit (a hub parquet): the questions asked whose image does not decode,
    strictly (a truncated one too, though lmms-eval's import turned PIL's LOAD_TRUNCATED_IMAGES on), are skipped
    with one warning line each and recorded in config.json; the other questions' `wrong` images pass over such
    images of the split; a larger --limit grows the run. Was: the whole load refused over one bad header anywhere
    in the split, and a truncated image failed the run at the same question on every resume."""
    import importlib

    import pyarrow.parquet as pq
    from PIL import ImageFile

    monkeypatch.setattr(importlib.import_module("mirage.evaluate"), "MAX_UNKNOWN_SHARE", 1.0)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as `import lmms_eval...` leaves it
    table = pq.read_table("/work/shared/fixtures/scienceqa/data/test-00000-of-00001.parquet")
    data = table.to_pylist()
    data[1]["image"]["bytes"] = data[1]["image"]["bytes"][: len(data[1]["image"]["bytes"]) // 2]  # truncated
    for i in (2, *range(5, 12)):
        data[i]["image"]["bytes"] = b"\x89PNG not an image"
    (tmp_path / "sqa" / "data").mkdir(parents=True)
    pq.write_table(type(table).from_pylist(data, schema=table.schema),
                   tmp_path / "sqa" / "data" / "test-00000-of-00001.parquet")
    out = tmp_path / "r"
    args = ["eval", "--model", f"demo:{tiny_dir}", "--benchmark", "scienceqa", "--data-dir", tmp_path / "sqa",
            "--conditions", "real,wrong", "--out", out, "-q"]
    res = run(*args, "--limit", "4")
    said = one_line(res)
    assert res.exit_code == 0, res.output
    assert said.count("skipped, its image cannot be decoded") == 2 and "Traceback" not in said
    assert "scienceqa: question 'scienceqa-test-00001' skipped" in said and "truncated" in said
    config = json.loads((out / "config.json").read_text())
    assert set(config["skipped_unreadable"]) == {"scienceqa-test-00001", "scienceqa-test-00002"}
    assert config["n_questions"] == 2
    first = rows(out)
    assert {(r["question_id"], r["source"]) for r in first} == {
        (f"scienceqa-test-0000{i}", s) for i in (0, 3) for s in ("real", "wrong")}
    res = run(*args, "--limit", "6")  # grows: 4 and 5 asked, 5 skipped
    assert res.exit_code == 0, res.output
    assert rows(out)[: len(first)] == first and len(rows(out)) == 6
    config = json.loads((out / "config.json").read_text())
    assert set(config["skipped_unreadable"]) == {f"scienceqa-test-0000{i}" for i in (1, 2, 5)}
    shown = one_line(run("show", out))
    assert "skipped, an image cannot be decoded (3 questions)" in shown and "scienceqa-test-00005" in shown


def test_optimize_runs_grow_by_more_questions(shapes_cli, tmp_path):
    """A larger --limit adds the new questions' rows and keeps the first ones byte for byte, computing nothing
    again: per question, new inputs; universal, the input trained on the first --train questions (kept) is scored on
    the new ones as held out. The grown run's rows are a fresh run's at the larger limit. Was: refused as a change
    of config (limit, n_questions)."""
    def lines(out):
        return (out / "results.jsonl").read_text().splitlines()

    for scope, extra, n, m in (("question", [], 3, 5), ("universal", ["--train", "2"], 4, 6)):
        args = ["optimize", "--model", f"demo:{shapes_cli}", "--input", "features", "--scope", scope, *extra,
                "--steps", "2", "--batch-size", "2", "-q"]
        out, fresh = tmp_path / scope, tmp_path / f"{scope}-fresh"
        assert run(*args, "--limit", n, "--out", out).exit_code == 0
        first = lines(out)
        artifacts = {p: p.read_bytes() for p in (out / "artifacts").rglob("*") if p.is_file()}
        res = run(*args, "--limit", m, "--out", out)
        assert res.exit_code == 0, res.output
        grown = lines(out)
        assert grown[: len(first)] == first  # kept, not computed again
        assert all(p.read_bytes() == b for p, b in artifacts.items())  # the universal input: not trained again
        config = json.loads((out / "config.json").read_text())
        assert (config["limit"], config["n_questions"]) == (m, m)
        assert run(*args, "--limit", m, "--out", fresh).exit_code == 0
        key = lambda r: (r["question_id"], r["source"])  # noqa: E731
        assert sorted(map(json.loads, grown), key=key) == sorted(rows(fresh), key=key)
        assert len(grown) == len(lines(fresh)) > len(first)
