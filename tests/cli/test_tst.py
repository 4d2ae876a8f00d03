"""`mirage tst` and `mirage curate --prune tst` as a user types them, on the tiny demo model and 24 ShapesQA
questions: trained-blind rows beside none, their measures in summary.json and the report, a resume that redoes
nothing, IBP's curation.json and the one-line errors."""

import json

from typer.testing import CliRunner

from mirage.cli import app


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_tst_then_ibp_through_the_commands(shapes_cli, tmp_path):
    run, cur = tmp_path / "run", tmp_path / "cur"
    res = cli("tst", run)
    assert res.exit_code == 2 and "has no config.json" in res.output and "Traceback" not in res.output
    res = cli("eval", "--model", f"demo:{shapes_cli}", "--conditions", "real,none", "--out", run, "-q")
    assert res.exit_code == 0, res.output
    res = cli("curate", run, "--prune", "tst", "--out", cur)
    assert res.exit_code == 2 and "no tst-rf rows: run `mirage tst" in res.output
    res = cli("tst", run, "--folds", 3, "--epochs", 1, "--batch-size", 8, "-q")
    assert res.exit_code == 0, res.output
    assert "TsT_lm" in res.output and "TsT_rf" in res.output
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for source in ("tst-rf", "tst-lm"):
        mine = [r for r in rows if r["source"] == source]
        assert len(mine) == 24 and {r["fold"] for r in mine} == {0, 1, 2}
    blind = json.loads((run / "summary.json").read_text())["blind"]
    assert {"S_v", "S_wv", "TsT_lm", "TsT_rf", "gap_lm", "gap_rf"} <= set(blind)
    assert blind["gap_lm"]["vs"] == "none" and blind["TsT_rf"]["n"] == 24
    assert json.loads((run / "summary.json").read_text())["n"]["real"] == 24  # eval's summary kept
    res = cli("tst", run, "--folds", 3, "--epochs", 1, "--batch-size", 8, "-q")  # resumes: nothing left to do
    assert res.exit_code == 0 and len((run / "results.jsonl").read_text().splitlines()) == len(rows)
    res = cli("tst", run, "--folds", 4, "--diagnostics", "rf", "-q")
    assert res.exit_code == 2 and "other folds" in res.output

    res = cli("curate", run, "--prune", "tst", "--out", cur, "--budget", 6, "--batch", 3, "--no-chance-stop")
    assert res.exit_code == 0, res.output
    curation = json.loads((cur / "curation.json").read_text())
    removed = [q for r in curation["rounds"] for q in r["removed"]]
    assert curation["n_kept"] + len(removed) == 24 and len(removed) <= 6
    assert all({"n", "accuracy", "ci95", "by_type", "scores", "removed"} <= set(r) for r in curation["rounds"])
    assert len((cur / "questions.jsonl").read_text().splitlines()) == curation["n_kept"]
    assert not set(removed) & {json.loads(line)["id"] for line in (cur / "questions.jsonl").read_text().splitlines()}
    res = cli("report", run)
    assert res.exit_code == 0, res.output
    assert "TsT_rf" in (run / "report.html").read_text()
