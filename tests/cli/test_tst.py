"""`mirage tst` and `mirage curate --prune tst` as a user types them, on the tiny demo model and 24 ShapesQA
questions: trained-blind rows beside none, their measures in summary.json and the report, a resume that redoes
nothing, IBP's curation.json and the one-line errors."""

import json

from typer.testing import CliRunner

from mirage.cli import app


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_tst_then_ibp_through_the_commands(shapes_cli, tmp_path, monkeypatch):
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
    res = cli("tst", run, "--memory", 1, "--no-grad-checkpointing", "-q")
    assert res.exit_code == 2 and "--memory applies to the automatic choice" in res.output and "not both" in res.output

    res = cli("curate", run, "--prune", "tst", "--out", cur, "--budget", 6, "--batch", 3, "--no-chance-stop")
    assert res.exit_code == 0, res.output
    curation = json.loads((cur / "curation.json").read_text())
    removed = [q for r in curation["rounds"] for q in r["removed"]]
    assert curation["n_kept"] + len(removed) == 24 and len(removed) <= 6
    assert all({"n", "accuracy", "ci95", "by_type", "scores", "removed"} <= set(r) for r in curation["rounds"])
    assert len((cur / "questions.jsonl").read_text().splitlines()) == curation["n_kept"]
    assert not set(removed) & {json.loads(line)["id"] for line in (cur / "questions.jsonl").read_text().splitlines()}
    # the LM as IBP's diagnostic: round 0 the run's tst-lm rows, then LoRA refitted on what remains, fold by fold
    from mirage.experiments import tst

    fits, lora_rows = [], tst.lora_rows

    def recording(model, bench, train, test, fold, *a, **k):
        fits.append(({q.id for q in train}, {q.id for q in test}))
        return lora_rows(model, bench, train, test, fold, *a, **k)

    monkeypatch.setattr(tst, "lora_rows", recording)
    res = cli("curate", run, "--prune", "tst", "--diagnostic", "lm", "--out", tmp_path / "cur-lm", "--budget", 6,
              "--batch", 3, "--tau", 0, "--no-chance-stop")  # tau 0: only the budget stops it, after 2 refits
    assert res.exit_code == 0, res.output
    assert "IBP (tst-lm)" in res.output
    curation = json.loads((tmp_path / "cur-lm" / "curation.json").read_text())
    assert curation["diagnostic"] == "tst-lm" and curation["diagnostic_settings"]["epochs"] == 1
    lm_rows = {r["question_id"]: r for r in rows if r["source"] == "tst-lm"}
    first = curation["rounds"][0]
    assert first["scores"] == {q: r["probs"]["ABCD".index(r["answer"])] for q, r in lm_rows.items()}
    refits = len(curation["rounds"]) - 1  # every later round refits the 3 folds on what the earlier ones left
    assert refits == 2 and len(fits) == 3 * refits and curation["stopped"] == "budget"
    for i, r in enumerate(curation["rounds"][1:]):
        gone = {q for earlier in curation["rounds"][: i + 1] for q in earlier["removed"]}
        left = set(lm_rows) - gone
        assert set(r["scores"]) == left and not gone & set().union(*(a | b for a, b in fits[3 * i : 3 * i + 3]))
        assert all(not a & b for a, b in fits[3 * i : 3 * i + 3])  # no question scored by a model trained on it
    res = cli("curate", run, "--prune", "tst", "--diagnostic", "svm", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "--diagnostic 'svm': give rf or lm" in res.output and "Traceback" not in res.output
    res = cli("report", run)
    assert res.exit_code == 0, res.output
    assert "TsT_rf" in (run / "report.html").read_text()
