"""Report pieces that misled a first reader (issue 20): squashed loss curves, the attack's metric, empty columns."""

from __future__ import annotations

from mirage.report.plots import history_figure


def test_history_gives_each_source_its_own_step_axis():
    # a 100-step inversion beside a 5-step universal run: the short curve must span its own panel, not 5% of it
    histories = {"universal-noise": [{"step": i + 1, "loss": 2.0 - 0.1 * i} for i in range(5)],
                 "inversion-question-from-blank": [{"step": i + 1, "loss": 1.0 - 0.001 * i} for i in range(100)]}
    fig = history_figure(histories)
    loss_axes = [ax for ax in fig.axes if "loss" in ax.get_title()]
    assert len(loss_axes) == 2
    short = next(ax for ax in loss_axes if ax.get_title().startswith("universal-noise"))
    assert short.get_xlim()[1] < 10, short.get_xlim()


def _rows(source: str, qids: range, right_every: int) -> list[dict]:
    return [{"source": source, "question_id": f"q{i}", "type": "colour", "correct": i % right_every == 0}
            for i in qids]


def test_vs_real_says_why_when_the_run_has_no_real_rows():
    from mirage.report.tables import baselines, source_rows
    from mirage.stats import summarize

    rows = _rows("blank", range(20), 3) + _rows("universal-noise", range(20), 2)  # an optimize run: no `real`
    table = source_rows(summarize(rows), rows)
    assert baselines(table) == ["real", "blank"]
    uni = next(r for r in table if r.info.name == "universal-noise")
    assert uni.unpaired == {"real": "no real rows in this run"}
    assert "blank" in uni.paired


def test_vs_real_says_why_when_no_question_is_shared():
    from mirage.report.tables import source_rows
    from mirage.stats import summarize

    rows = _rows("real", range(10), 2) + _rows("universal-noise-train", range(10, 20), 2)
    uni = next(r for r in source_rows(summarize(rows), rows) if r.info.name == "universal-noise-train")
    assert uni.unpaired["real"] == "no questions in common with real"


def test_patch_rows_show_the_attack_success_rate(tmp_path):
    import json

    from mirage.report.build import build_run_report
    from mirage.stats import summarize

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"question_id": f"q{i}", "source": source, "pred": "A", "answer": "A" if i % 2 else "B",
             "correct": bool(i % 2), "type": "colour"} for source in ("real", "patch-untargeted") for i in range(10)]
    (run / "config.json").write_text(json.dumps({"command": "patch", "model": "demo", "benchmark": "shapes"}))
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps(summarize(rows)))
    (run / "patch-untargeted.summary.json").write_text(json.dumps({"evaluations": {"patch-untargeted": {
        "n": 10, "n_attackable": 5, "success_rate": [0.6, 0.2307, 0.8824], "drop": [0.3, 0.1, 0.5]}}}))
    page = build_run_report(run, questions=False)
    assert "attack success [95% CI]" in page
    cell = page.split('data-source="patch-untargeted"', 1)[1].split("</tr>", 1)[0]
    assert 'data-success="0.6"' in cell and "[0.231, 0.882]" in cell
    real = page.split('data-source="real"', 1)[1].split("</tr>", 1)[0]
    assert "data-success" not in real


def test_demo_panel_verdict_among_what_the_run_evaluated():
    # A generator run has no `real` rows: the panel said "the model does best with random noise" as if the real
    # image had been compared, and showed "The real image -, n = 0" without a word.
    from mirage.report.demo_panel import PanelImage, _verdict

    def image(label, source, correct):
        im = PanelImage(label, source, None, "")
        im.correct = {f"q{i}": c for i, c in enumerate(correct)}
        im.n, im.accuracy, im.ci95 = len(correct), sum(correct) / max(1, len(correct)), (0.0, 1.0)
        return im

    noise = image("Random noise", "noise", [True, True, False, False])
    optimized = image("Optimized universal noise", "pixels-universal", [True, False, False, False])
    real = PanelImage("The real image", "real", None, "")
    lines = _verdict([noise, optimized, real])
    assert lines[0].startswith("Of the pictures this run evaluated, the model does best with random noise")
    assert "Not evaluated in this run, so not compared: the real image (no 'real' rows)." in lines
    full = _verdict([noise, optimized, image("The real image", "real", [True] * 4)])
    assert full[0].startswith("The model does best with the real image") and not any("Not evaluated" in x for x in full)
