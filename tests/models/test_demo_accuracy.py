"""The shipped demo weights: the numbers the project stands on."""

import json

import pytest

from mirage import evaluate, load_benchmark, load_model


@pytest.fixture(scope="module")
def result():
    model = load_model("demo", device="cpu")
    return evaluate(model, load_benchmark("shapes", split="test", limit=200), "real,blank", batch_size=50)


def test_real_images_answer_at_least_93_percent(result):
    assert result.summary["n"]["real"] == 200
    assert result.summary["accuracy"]["real"] >= 0.93


def test_blank_falls_to_what_text_priors_allow(result):
    s = result.summary
    assert s["accuracy"]["blank"] <= s["accuracy"]["real"] - 0.4
    assert s["paired"]["blank"]["real"]["p"] < 1e-6
    assert s["by_type"]["blank"]["prior"] >= 0.6  # text-answerable questions survive a blank image
    visual = [t for t in s["by_type"]["blank"] if t != "prior"]
    assert all(s["by_type"]["blank"][t] <= 0.5 for t in visual)  # the rest is near chance (0.25)


def test_study_small_limit_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app
    out = tmp_path / "study"
    res = CliRunner().invoke(app, ["study", "--out", str(out), "--limit", "8", "--steps", "3", "-q"])
    assert res.exit_code == 0, res.output
    run = out / "shapes"  # the study directory holds one run directory per benchmark
    summary = json.loads((run / "summary.json").read_text())
    want = {"real", "none", "text-model",  # no image at all, and the demo's base LM: the study's S_wv and S_t
            "blank", "noise", "wrong", "blur", "shuffle",
            "image-only", "both",  # the shuffle decomposition's other two conditions (wrong is its third)
            "soft-prompt-question", "soft-prompt-universal", "soft-prompt-universal-train",  # the soft-prompt control
            "features-question", "pixels-question",
            "pixels-question-png", "features-universal", "features-universal-train", "pixels-universal",
            "pixels-universal-train", "pixels-universal-png", "features-question-clip", "features-question-siglip",
            "features-question-dino", "features-question-convnext",
            "features-question-from-blank", "inversion-question-from-blank", "inversion-question-from-blank-png"}  # inversion's two stages
    assert set(summary["n"]) == want and all(src in res.output for src in want)
    assert {"S_v", "S_wv", "S_t", "MG", "ML"} <= set(summary["blind"])
    saliency = json.loads((run / "saliency-summary.json").read_text())
    assert "saliency-gradient" in saliency and list((run / "artifacts" / "saliency-gradient").glob("*-real.png"))
    assert summary["n"]["features-universal"] == 4 and summary["n"]["features-question"] == 8
    assert len(list((run / "artifacts" / "pixels-question").glob("*.png"))) == 8
    lines = (run / "results.jsonl").read_text().splitlines()
    again = CliRunner().invoke(app, ["study", "--out", str(out), "--limit", "8", "--steps", "3", "-q"])
    assert again.exit_code == 0 and (run / "results.jsonl").read_text().splitlines() == lines  # resumed: nothing redone
