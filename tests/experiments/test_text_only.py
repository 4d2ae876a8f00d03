"""Crafted inputs on a benchmark that needs no image: universal pixels trained on a `file:` set whose questions have
no image, its summary marked text-only, and the study's sentence setting its gain beside a vision benchmark's."""

import json

from mirage.benchmarks import load_benchmark
from mirage.blind import text_only_match
from mirage.evaluate import evaluate_conditions, summarize_conditions
from mirage.conditions import parse_conditions
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.experiments.study import table_row
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir


def test_universal_pixels_on_a_set_without_images(tiny_model, small_bench, tmp_path, one_thread):
    lines = [{"id": q.id, "question": q.text, "choices": list(q.choices), "answer": q.answer, "type": q.type}
             for q in small_bench.questions[:4]]  # ShapesQA's words (the tiny model's vocabulary), no image
    (tmp_path / "text.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    summaries = {}
    for name, bench in (("text", load_benchmark(f"file:{tmp_path / 'text.jsonl'}")),
                        ("shapes", small_bench.subset(4))):
        run = RunDir.open(tmp_path / name, {"x": name})
        conds = parse_conditions("blank")
        rows = evaluate_conditions(tiny_model, bench, conds, run=run)
        rows += run_optimization(tiny_model, bench, OptimizeSpec("pixels", scope="universal", train=2),
                                 OptimizeConfig(steps=1, batch_size=2), run)
        summaries[name] = summarize_conditions(run.rows(), bench, conds)
    assert summaries["text"]["no_images"] and "no_images" not in summaries["shapes"]
    assert summaries["text"]["n"]["pixels-universal"] == summaries["text"]["n"]["pixels-universal-png"] == 2
    table = [table_row(name, name, s) for name, s in summaries.items()]
    gain = table[0]["universal_gain"]["pixels-universal"]
    assert gain["difference"] == summaries["text"]["paired"]["pixels-universal"]["blank"]["difference"]
    (match,) = [m for m in text_only_match(table) if m["source"] == "pixels-universal"]
    assert match["no_images"] == "text" and match["vision"] == "shapes" and "no image to see" in match["sentence"]
