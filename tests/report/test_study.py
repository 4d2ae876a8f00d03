"""The study's report: one self-contained page with the cross-benchmark table (equal to summary.json), each
benchmark's demo panel and full section with unique ids and working in-page links, shown by a real Chromium."""

from __future__ import annotations

import html
import json
import re

from mirage.report import write_report


def _attrs(tag: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', tag)}


def test_study_report_table_equals_summary(tiny_study):
    out, output = tiny_study
    page = (out / "report.html").read_text()
    assert f"report: {out / 'report.html'}" in " ".join(output.split())
    summary = json.loads((out / "summary.json").read_text())
    table = page[page.index('<table id="study-table">'): page.index("</table>", page.index('id="study-table"'))]
    for line in summary["table"]:
        row = table[table.index(f'<tr data-benchmark="{line["benchmark"]}">'):]
        row = row[: row.index("</tr>")]
        cells = {a["data-measure"]: a for a in map(_attrs, re.findall(r"<td [^>]*data-measure[^>]*>", row))}
        assert float(cells["S_v"]["data-value"]) == line["S_v"]["value"]
        assert [float(cells["S_v"]["data-lo"]), float(cells["S_v"]["data-hi"])] == line["S_v"]["ci95"]
        best = line["best_crafted"]
        assert cells["best"]["data-source"] == best["source"] and float(cells["best"]["data-value"]) == best["value"]
        assert float(cells["vs_real"]["data-value"]) == best["vs_real"]["difference"]
        assert f'href="#bench-{line["dir"]}"' in row
        for m in ("image_only", "text_only", "neither", "image_adds", "text_adds", "pair_beyond"):  # the shuffles
            assert float(cells[m]["data-value"]) == line["shuffle"][m]["value"], m
            assert [float(cells[m]["data-lo"]), float(cells[m]["data-hi"])] == line["shuffle"][m]["ci95"], m
    # the picture: every benchmark's pair / image alone / text alone / neither beside chance, across benchmarks and
    # per question type in each benchmark's section
    assert 'id="plot-shuffle-benchmarks"' in page
    for line in summary["table"]:  # ids are prefixed by their benchmark's section
        assert f'id="bench-{line["dir"]}-plot-shuffle"' in page and f'id="bench-{line["dir"]}-shuffle-table"' in page
    # the soft-prompt control: each benchmark's table and the sentences its summary derives, in the page's words
    for line in summary["table"]:
        assert f'id="bench-{line["dir"]}-soft-prompt-table"' in page
        control = summary["benchmarks"][line["benchmark"]]["soft_prompt"]
        for sentence in control["question"]["sentences"] + control["universal"]["sentences"]:
            assert sentence in html.unescape(page)


def test_study_report_sections_panels_ids_and_links(tiny_study):
    page = (tiny_study[0] / "report.html").read_text()
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # sections do not share ids
    links = set(re.findall(r'\shref="#([^"]+)"', page))
    assert links and links <= set(ids)  # every in-page link lands
    for name in ("shapes", "scienceqa"):
        assert f'<section class="benchmark" id="bench-{name}"' in page
        assert f'id="bench-{name}-sources"' in page and f'id="bench-{name}-plots"' in page
        panels = page[page.index(f'<div class="benchmark-panels" data-benchmark="{name}">'):]
        panels = panels[: panels.index("</section>")]
        assert 'class="panel"' in panels and "Which does the model do best with?" in panels
        assert len(re.findall(r'<img src="data:image/png;base64,', panels)) >= 2  # noise and the universal image
    # self-contained: no scripts, no network, every reference embedded or in the page
    assert "<script" not in page and "<link" not in page and "url(" not in page
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in refs)


def test_mirage_report_on_a_study_directory(tiny_study, tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app

    out = tiny_study[0]
    res = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "again.html")])
    assert res.exit_code == 0, res.output
    strip = lambda p: re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "", p.read_text())  # noqa: E731
    assert strip(tmp_path / "again.html") == strip(out / "report.html")  # from the files alone, as the study wrote it
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text((out / "config.json").read_text())
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "unfinished")])
    assert bad.exit_code == 2 and "has not finished" in " ".join(bad.output.split())


def test_browser_shows_the_study_report(tiny_study, tmp_path, browser):
    found = browser.browse(tiny_study[0] / "report.html", tmp_path)
    assert found["images"] >= 2 * 5 and found["broken"] == []
    assert found["errors"] == [] and found["console"] == []
    res = browser.run_chromium(["--window-size=1280,900", f"--screenshot={tmp_path / 'shot.png'}",
                                (tiny_study[0] / "report.html").as_uri()], tmp_path / "profile2")
    assert (tmp_path / "shot.png").is_file() and browser.console_lines(res.stderr) == []  # under its CSP
    write_report(tiny_study[0] / "shapes")  # a benchmark's run directory still has its own report
    assert (tiny_study[0] / "shapes" / "report.html").is_file()
