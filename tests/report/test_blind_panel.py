"""The report's image-free panel shows summary.json's `blind` numbers and names the interval methods."""

import json
import re

from mirage.blind import blind_measures
from mirage.report import build_report
from tests.test_blind import SPEC, TYPES, rows


def test_blind_panel_shows_the_blind_measures(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "eval", "model": "m", "benchmark": "shapes"}))
    rs = [{**r, "pred": "A", "answer": "A"} for r in rows(SPEC, TYPES)]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    page = build_report(run, questions=False)
    blind = blind_measures(rs)
    panel = page[page.index('id="blind"'): page.index('<h2 id="table">')]
    for types, block in [("all", blind), *blind["by_type"].items()]:
        row = panel[panel.index(f'data-types="{types}"'):]
        row = row[: row.index("</tr>")]
        for m in ("S_v", "S_wv", "S_t", "MG", "ML"):
            found = re.search(rf'data-measure="{m}" data-value="([^"]+)" data-lo="([^"]+)" data-hi="([^"]+)"', row)
            assert [float(x) for x in found.groups()] == [block[m]["value"], *block[m]["ci95"]], (types, m)
    assert "Wilson score interval" in panel and "Newcombe" in panel
    assert "Wilson" in page[page.index('<h2 id="table">'):]  # the main table names its method too


def test_no_panel_without_image_free_sources(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "eval", "model": "m", "benchmark": "shapes"}))
    rs = [{**r, "pred": "A", "answer": "A"} for r in rows({"real": "1101", "blank": "0100"}, "aabb")]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    assert 'id="blind"' not in build_report(run, questions=False)
