"""Caption conditions end to end through a tiny model: captions made once with the fixed prompt (equal to the
model's own generation on the real image), cached in the run and resumed, the model answering from them with no
image; another model's captions and captions from a file; the decomposition printed by `mirage eval`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mirage.benchmarks.question import Benchmark
from mirage.captions import make_captions
from mirage.cli import app
from mirage.conditions import CAPTION_PROMPT, ConditionContext, get_condition, parse_conditions
from mirage.errors import MirageError
from mirage.evaluate import evaluate
from mirage.models.vlm import NONE
from mirage.runs import read_rows

TOKENS = 12  # captions of at most 12 tokens here (128 in use): a random tiny model never stops by itself


@pytest.fixture(autouse=True)
def short_captions(monkeypatch):
    monkeypatch.setattr("mirage.captions.CAPTION_TOKENS", TOKENS)


def test_eval_prints_the_decomposition_and_answers_from_captions(tmp_path, tiny_dir, tiny_model, small_bench):
    out = tmp_path / "run"
    args = ["eval", "--model", f"demo:{tiny_dir}", "--limit", "6", "--conditions",
            "real,image-only,wrong,both,caption:self", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "where the score comes from" in text and "image adds to" in text and "pair beyond" in text
    summary = json.loads((out / "summary.json").read_text())
    shuffle = summary["shuffle"]
    assert shuffle["pair"]["n"] == 6 and shuffle["chance"]["value"] == 0.25
    assert set(shuffle) >= {"pair", "image_only", "text_only", "neither", "image_adds", "text_adds", "pair_beyond"}
    for m in ("image_adds", "text_adds", "pair_beyond"):  # each difference is printed with its interval
        lo, hi = shuffle[m]["ci95"]  # (value, then the interval on the cell's next line)
        assert all(part in text for part in (f"{shuffle[m]['value']:+.3f}", f"[{lo:+.3f},", f"{hi:+.3f}]")), m
    config = json.loads((out / "config.json").read_text())
    assert config["captions"]["prompt"] == CAPTION_PROMPT and config["captions"]["max_new_tokens"] == TOKENS
    # the captions are the model's own greedy answers to the caption prompt on the real image
    captions = read_rows(out / "captions.jsonl")
    qs = small_bench.questions[:6]
    assert [c["question_id"] for c in captions] == [q.id for q in qs]
    expected = tiny_model.generate([CAPTION_PROMPT] * 6, tiny_model.visual_from_images([q.image(0) for q in qs]),
                                   TOKENS)
    assert [c["caption"] for c in captions] == expected
    rows = [r for r in read_rows(out / "results.jsonl") if r["source"] == "caption:self"]
    assert len(rows) == 6 and all(r["caption_by"] == "self" for r in rows)
    # answered with no image, from the caption put before the question's words
    cond = get_condition("caption:self")
    ctx = ConditionContext(Benchmark("shapes", "test", qs), captions={"self": dict(zip([q.id for q in qs], expected))})
    asked = cond.ask(qs[0], ctx)
    assert asked.text == f"Image description: {expected[0]}\n{qs[0].text}" and asked.choices == qs[0].choices
    assert cond.visual(tiny_model, [asked], ctx).stage == NONE
    # the report shows each caption beside its question
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    assert 'id="captions-table"' in page and 'id="plot-shuffle"' in page
    assert f'data-question="{qs[0].id}" data-captioner="self"' in page


def test_captions_are_made_once_and_resume(tmp_path, tiny_model, small_bench, monkeypatch):
    bench = small_bench.subset(5)
    run_dir = tmp_path / "run"
    evaluate(tiny_model, bench, "real,caption:self", out=run_dir, batch_size=2)
    made = read_rows(run_dir / "captions.jsonl")
    assert len(made) == 5
    # a run killed after two captions: only the other three are made again, equal to the first run's
    lines = (run_dir / "captions.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "captions.jsonl").write_text("".join(lines[:2]))
    (run_dir / "results.jsonl").write_text("")
    calls = []
    generate = type(tiny_model).generate
    monkeypatch.setattr(type(tiny_model), "generate", lambda self, p, v, n=8: calls.append(len(p)) or
                        generate(self, p, v, n))
    again = evaluate(tiny_model, bench, "real,caption:self", out=run_dir, batch_size=2)
    assert sum(calls) == 3 and read_rows(run_dir / "captions.jsonl") == made
    assert len([r for r in again.rows if r["source"] == "caption:self"]) == 5
    calls.clear()
    evaluate(tiny_model, bench, "real,caption:self", out=run_dir, batch_size=2)  # all cached: none made
    assert calls == []


def test_captions_from_another_model_and_from_a_file(tmp_path, tiny_dir, tiny_model, small_bench):
    bench = small_bench.subset(3)
    other = make_captions(f"demo:{tiny_dir}", tiny_model, bench.questions)  # another model, loaded by its spec
    assert other == make_captions("self", tiny_model, bench.questions)  # (here the same weights)
    path = tmp_path / "captions.jsonl"
    path.write_text("".join(json.dumps({"question_id": q.id, "caption": f"a red square {i}"}) + "\n"
                            for i, q in enumerate(bench)))
    res = evaluate(tiny_model, bench, f"real,caption:file:{path}", out=tmp_path / "run")
    rows = [r for r in res.rows if r["source"] == f"caption:file:{path}"]
    assert len(rows) == 3 and rows[0]["caption_by"] == f"file:{path}"
    kept = read_rows(tmp_path / "run" / "captions.jsonl")  # kept in the run, for its report
    assert [c["caption"] for c in kept] == ["a red square 0", "a red square 1", "a red square 2"]
    path.write_text(json.dumps({bench[0].id: "one caption only"}))
    with pytest.raises(MirageError, match=rf"has no caption of question '{bench[1].id}'"):
        evaluate(tiny_model, bench, f"caption:file:{path}")


@pytest.mark.parametrize("spec, message", [("caption:", "unknown captioner ''"),
                                           ("caption:gpt", "unknown captioner 'gpt'"),
                                           ("caption:file:/no/such.jsonl", "caption file '/no/such.jsonl' does not")])
def test_bad_captioners_are_refused(spec, message):
    with pytest.raises(MirageError, match=message):
        parse_conditions(spec)


def test_a_finished_run_grows_by_a_caption_condition(tmp_path, tiny_dir):
    out = tmp_path / "run"
    base = ["eval", "--model", f"demo:{tiny_dir}", "--limit", "3", "--out", str(out), "-q"]
    assert CliRunner().invoke(app, [*base, "--conditions", "real"]).exit_code == 0
    res = CliRunner().invoke(app, [*base, "--conditions", "real,caption:self"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["captions"]["prompt"] == CAPTION_PROMPT
    assert len(read_rows(out / "results.jsonl")) == 6 and len(read_rows(out / "captions.jsonl")) == 3
