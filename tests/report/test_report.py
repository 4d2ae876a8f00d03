"""The run report: numbers equal mirage.stats on the rows, benchmark text escaped, galleries capped, a large run's
page stays small, and a real headless Chromium shows every image, logs no console error and runs no injected script."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from markupsafe import escape
from PIL import Image

from mirage.report import build_report, write_report
from mirage.stats import accuracy_ci, summarize

INJECTED = '<script>window.__mirage_pwned = 1; document.title = "pwned";</script>'
INJECTED_IMG = '<img src="x" onerror="window.__mirage_pwned = 2">'
SOURCES = ["real", "blank", "noise", "wrong", "blur", "shuffle", "pixels-question", "pixels-question-png",
           "pixels-universal", "pixels-universal-png"]


# ---- run directories -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    """A tiny real `mirage study` on the bundled demo model; the CLI writes the study's report at its end, and
    here its ShapesQA run directory (`shapes/`) gets its own, as `mirage report DIR/shapes` writes it."""
    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path_factory.mktemp("report") / "study"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a run this small gains nothing from two threads, and they spin when cores are busy
    try:
        res = CliRunner().invoke(app, ["study", "--out", str(out), "--limit", "6", "--steps", "2", "-q"])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    write_report(out / "shapes")
    return out, res.output


def _noise_png(path: Path, seed: int, side: int = 224) -> None:
    a = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)


def make_synthetic_run(root: Path, n: int = 1000, seed: int = 0) -> Path:
    """A run of `n` questions x 10 sources on a local benchmark whose texts try to inject HTML, with a folder of
    incompressible (noise) PNGs for every source: the worst case for the page's size."""
    rng = np.random.default_rng(seed)
    bench_dir = root / "bench"
    bench_dir.mkdir(parents=True)
    for k in range(8):
        Image.new("RGB", (224, 224), tuple(int(x) for x in rng.integers(0, 256, 3))).save(bench_dir / f"img{k}.png")
    types = ["colour", "count", "<b>bold</b> & co"]
    questions = []
    for i in range(n):
        text = f"Question {i}: Tom & Jerry {INJECTED}" if i % 2 == 0 else f"what is shown in picture {i} ?"
        choices = ["cat", INJECTED_IMG, "dog & <i>mouse</i>", "bird"]
        questions.append({"id": f"q{i:04d}", "question": text, "choices": choices, "answer": int(rng.integers(4)),
                          "image": f"img{i % 8}.png", "type": types[i % 3]})
    (bench_dir / "bench.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))

    run = root / "run"
    art = run / "artifacts"
    art.mkdir(parents=True)
    config = {"command": "study", "model": "demo", "benchmark": f"file:{bench_dir / 'bench.jsonl'}", "split": "file",
              "n_questions": n, "seed": seed, "steps": 3, "environment": {"device": "cpu", "torch": "x"}}
    (run / "config.json").write_text(json.dumps(config))
    rows = []
    held = [q for q in questions[n // 2:]]
    for s, source in enumerate(SOURCES):
        qs = held if source.startswith("pixels-universal") else questions
        p_right = 0.3 + 0.07 * s
        for q in qs:
            correct = bool(rng.random() < p_right)
            pred = q["answer"] if correct else (q["answer"] + 1) % 4
            probs = [0.1, 0.1, 0.1, 0.1]
            probs[pred] = 0.7
            row = {"question_id": q["id"], "source": source, "pred": "ABCD"[pred], "answer": "ABCD"[q["answer"]],
                   "correct": correct, "probs": probs, "type": q["type"]}
            if source == "pixels-question":
                row |= {"steps": int(rng.integers(1, 4)), "loss": float(rng.random()), "margin": 1.0}
            rows.append(row)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps(summarize(rows)))
    (run / "timings.json").write_text(json.dumps({"conditions": 1.5, "pixels-question": 2.0}))
    pool = art / ".pool"
    pool.mkdir()
    for k in range(20):
        _noise_png(pool / f"{k}.png", k)
    for source in SOURCES:  # a folder per source: hard links keep 10,000 files cheap to make
        (art / source).mkdir()
        for i, q in enumerate(questions):
            os.link(pool / f"{i % 20}.png", art / source / f"{q['id']}.png")
    _noise_png(art / "pixels-universal.png", 99)
    (art / "pixels-universal.history.json").write_text(json.dumps(
        [{"step": i + 1, "loss": 3.0 / (i + 1), "batch_accuracy": min(1.0, 0.25 + 0.05 * i)} for i in range(10)]))
    return run


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    run = make_synthetic_run(tmp_path_factory.mktemp("synthetic"))
    write_report(run)
    return run


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines() if line.strip()]


def _attrs(tag: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', tag)}


def _table_rows(page: str) -> dict[str, dict]:
    """The main table's rows, by source: their data attributes and their paired-test cells."""
    table = page[page.index('<table id="sources">'): page.index("</table>", page.index('<table id="sources">'))]
    out = {}
    for tr in re.findall(r"<tr data-source=.*?</tr>", table, re.S):
        attrs = _attrs(tr[: tr.index(">")])
        cells = re.findall(r"<td [^>]*data-baseline[^>]*>", tr)
        attrs["tests"] = {_attrs(td)["data-baseline"]: _attrs(td) for td in cells}
        attrs["text"] = re.sub(r"<[^>]+>", " ", tr)
        out[attrs["data-source"]] = attrs
    return out


def check_table_matches_stats(page: str, rows: list[dict]) -> None:
    summary = summarize(rows)
    table = _table_rows(page)
    assert set(table) == set(summary["n"])
    for source, tr in table.items():
        assert int(tr["data-n"]) == summary["n"][source]
        assert float(tr["data-acc"]) == summary["accuracy"][source]
        assert [float(tr["data-lo"]), float(tr["data-hi"])] == summary["ci95"][source]
        assert f"{summary['accuracy'][source]:.3f}" in tr["text"]
        assert set(tr["tests"]) == set(summary["paired"][source])
        for base, td in tr["tests"].items():
            test = summary["paired"][source][base]
            assert float(td["data-p"]) == test["p"]
            assert td["data-pair"] == f"{test['n']},{test['a_only']},{test['b_only']}"
    for source, by_type in summary["by_type"].items():
        for t, acc in by_type.items():
            cell = f'data-type="{html.escape(t)}" data-acc="{acc}"'
            assert cell in page, (source, t)


# ---- the real tiny run -------------------------------------------------------------------------------------------

def test_study_writes_report_and_prints_its_path(study_run):
    out, output = study_run
    assert (out / "report.html").is_file()
    assert f"report: {out / 'report.html'}" in " ".join(output.split())


def test_study_report_numbers_equal_stats(study_run):
    out = study_run[0] / "shapes"
    page = (out / "report.html").read_text()
    rows = _rows(out)
    check_table_matches_stats(page, rows)
    # the demo panel: noise, universal pixels and real, each on the universal input's held-out questions
    held = sorted(r["question_id"] for r in rows if r["source"] == "pixels-universal")
    panel = page[page.index('<section class="panel"'): page.index("</section>")]
    figures = {(a := _attrs(f))["data-source"]: a for f in re.findall(r"<figure [^>]*>", panel)}
    assert list(figures) == ["noise", "pixels-universal", "real"]
    for source, fig in figures.items():
        by_id = {r["question_id"]: r for r in rows if r["source"] == source}
        acc, lo, hi = accuracy_ci([bool(by_id[q]["correct"]) for q in held])
        assert int(fig["data-n"]) == len(held) and float(fig["data-acc"]) == acc
        assert f"[{lo:.3f}, {hi:.3f}]" in panel
    assert "The model does best with" in panel
    assert len(re.findall(r'<img src="data:image/png;base64,', panel)) == 3
    # plots of what the run records: universal loss curves, per-question steps and loss, per-encoder comparison
    for key in ("accuracy", "spectrum", "history", "per-question", "encoders"):
        assert f'id="plot-{key}"' in page
    # a gallery for the per-question pixels, with the question text and real image; features are no images
    assert 'data-key="pixels-question"' in page and 'data-key="features-question"' not in page
    assert "what " in page and 'alt="real image shapes-test-00000"' in page
    for fact in ("demo", "shapes", "test", "cpu", "wall time"):
        assert fact in page


def test_study_measures_what_needs_the_image(study_run):
    """The default study runs `none` and the demo's base LM beside the image conditions: summary.json's blind
    measures (the benchmark's and the study's table) and the report's panel."""
    out, output = study_run
    from mirage.models.text_lm import DEMO_TEXT_LM

    summary = json.loads((out / "shapes" / "summary.json").read_text())
    # the base LM's part runs where its weights ship (models/demo/weights/text-lm)
    measures = ("S_v", "S_wv", "S_t", "MG", "ML") if (DEMO_TEXT_LM / "config.json").is_file() else ("S_v", "S_wv", "MG")
    assert set(measures) <= set(summary["blind"])
    assert summary["n"]["none"] == summary["n"]["real"] == summary["n"].get("text-model", summary["n"]["real"])
    line = json.loads((out / "summary.json").read_text())["table"][0]
    assert all(line[m] == summary["blind"][m] for m in measures)
    assert 'id="blind"' in (out / "shapes" / "report.html").read_text() and "image-free measures" in output
    assert 'id="bench-shapes-blind"' in (out / "report.html").read_text()


@pytest.mark.parametrize("page", ["report.html", "shapes/report.html"])
def test_report_is_self_contained(study_run, page):
    page = (study_run[0] / page).read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)


# ---- synthetic runs ---------------------------------------------------------------------------------------------

def test_large_run_page_is_bounded_and_capped(synthetic_run):
    page_path = synthetic_run / "report.html"
    assert page_path.stat().st_size < 20e6
    page = page_path.read_text()
    check_table_matches_stats(page, _rows(synthetic_run))
    sections = re.findall(r'<section class="gallery-section".*?</section>', page, re.S)
    assert len(sections) == len(SOURCES)
    for sec in sections:
        assert sec.count('<figure class="card"') == 16
        assert "Showing the first 16 of 1000; 984 left out" in sec


def test_gallery_cap_follows_max_images(synthetic_run, tmp_path):
    out = write_report(synthetic_run, tmp_path / "small.html", max_images=3)
    page = out.read_text()
    assert page.count('<figure class="card"') == 3 * len(SOURCES)
    assert page.count("997 left out") == len(SOURCES)


def test_benchmark_text_is_escaped(synthetic_run):
    page = (synthetic_run / "report.html").read_text()
    assert "<script" not in page and "<img src=\"x\"" not in page and "<i>mouse" not in page
    assert str(escape(INJECTED)) in page and str(escape(INJECTED_IMG)) in page
    assert "Tom &amp; Jerry" in page and "dog &amp; &lt;i&gt;mouse&lt;/i&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page  # a question type, in the by-type table's header


def test_report_without_benchmark_says_so(synthetic_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run, ignore=shutil.ignore_patterns("artifacts"))
    (run / "artifacts").mkdir()
    (run / "artifacts" / "pixels-question").mkdir()
    for k in range(3):
        _noise_png(run / "artifacts" / "pixels-question" / f"q{k:04d}.png", k, side=32)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"benchmark": "file:/nonexistent/bench.jsonl"}))
    page = build_report(run)
    assert "could not be loaded" in page and "no real image" in page
    assert page.count('<figure class="card"') == 3 and "Which does the model do best with?" not in page
    assert "Tom" not in page  # no question text without the benchmark


def test_cli_report(synthetic_run, tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path / "page.html"
    res = CliRunner().invoke(app, ["report", str(synthetic_run), "--max-images", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert str(out) in " ".join(res.output.split()) and out.read_text().count('<figure class="card"') == 20
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "no config.json" in bad.output


# ---- a real browser ---------------------------------------------------------------------------------------------

def test_browser_shows_every_image_and_runs_no_injected_script(synthetic_run, tmp_path, browser):
    found = browser.browse(synthetic_run / "report.html", tmp_path)
    assert found["images"] > 10 * 16 and found["broken"] == []
    assert found["errors"] == [] and found["console"] == []
    assert found["pwned"] is None and found["title"] != "pwned" and found["shown"]


def test_browser_on_real_run_and_demo_panel_screenshot(study_run, tmp_path, browser):
    page = study_run[0] / "report.html"
    found = browser.browse(page, tmp_path)
    assert found["images"] >= 3 + 5 and found["broken"] == [] and found["errors"] == [] and found["console"] == []
    shot = tmp_path / "report-demo-panel.png"
    res = browser.run_chromium(["--window-size=1280,900", f"--screenshot={shot}", page.as_uri()], tmp_path / "profile2")
    assert shot.is_file(), res.stderr[-2000:]
    assert browser.console_lines(res.stderr) == []  # the page as written, under its CSP: no violation logged
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        panel = np.asarray(im.convert("RGB"))[200:700]
    assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 1000  # the noise pictures were drawn
    keep = os.environ.get("MIRAGE_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def test_study_parts_are_bounded_by_limit_and_steps(study_run):
    # `mirage study --limit 6 --steps 2`: no part may look at more questions or run more steps than the flags say.
    out, _ = study_run
    plan = json.loads((out / "config.json").read_text())["plan"]
    assert all(v <= 6 for k, v in plan.items() if k not in ("conditions", "batch_size") and not k.endswith("steps"))
    assert plan["steps"] == plan["universal_steps"] == plan["inversion_steps"] == 2  # inversion's too (was 4)
    assert max(r.get("steps", 0) for r in _rows(out / "shapes")) <= 2


def test_study_report_shows_inversion_cosines_and_saliency(study_run):
    out, _ = study_run
    page = (out / "shapes" / "report.html").read_text()  # the benchmark's own page
    assert 'id="inversion-table"' in page and "cosine end" in page and 'id="saliency-table"' in page
    assert "pixels inverted from per-question features" in page  # the "what" column of inversion's rows
