"""`mirage curate`: the questions that need the image, from synthetic runs over a local benchmark, round-tripped."""

import json

import numpy as np
import pytest
from PIL import Image

from typer.testing import CliRunner

from mirage.benchmarks import load_benchmark
from mirage.cli import app
from mirage.curate import curate


def cli(*args):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def bench_file(tmp_path):
    """Six questions, five with an image, in the file: format."""
    lines = []
    for i in range(6):
        row = {"id": f"q{i}", "question": f"what is {i} ?", "choices": ["red", "blue", "green"], "answer": "B",
               "type": "colour" if i % 2 else "prior"}
        if i != 5:
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
            row["image"] = f"{i}.png"
        lines.append(json.dumps(row))
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_run(path, bench_file, spec: dict[str, str]) -> str:
    """A run directory as mirage eval writes it; spec: source -> one 1/0 per question q0..q5 ('.' = no row)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"command": "eval", "model": path.name, "benchmark":
                                                  f"file:{bench_file}", "split": "file"}))
    rows = [{"question_id": f"q{i}", "source": s, "correct": c == "1", "type": "x", "pred": "A", "answer": "B"}
            for s, v in spec.items() for i, c in enumerate(v) if c != "."]
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_keeps_exactly_the_questions_that_need_the_image(tmp_path, bench_file):
    # q0 needs the image in both; q1 solved without it by b's text model; q2 wrong with real in a; q3 solved by
    # blank in a (only counts with --also blank); q4 wrong with real in b; q5 has no rows.
    a = fake_run(tmp_path / "a", bench_file, {"real": "11011.", "none": "00000.", "blank": "00010."})
    b = fake_run(tmp_path / "b", bench_file, {"real": "11110.", "none": "00000.", "text-model": "01000.",
                                                  "blank": "00000."})
    out = tmp_path / "cur"
    result = curate([a, b], out)
    assert [q for q, v in result["questions"].items() if v["kept"]] == ["q0", "q3"]
    assert result["questions"]["q1"]["runs"][b]["solved_by"] == ["text-model"]
    assert result["runs"][1]["image_free_sources"] == ["none", "text-model"]
    assert json.loads((out / "curation.json").read_text()) == result
    assert [q for q, v in curate([a, b], out, also=["blank"])["questions"].items() if v["kept"]] == ["q0"]
    with pytest.raises(ValueError, match="--also noise: run .* has no rows of noise"):
        curate([a, b], out, also=["blank", "noise"])
    kept = [q for q, v in curate([a, b], out, min_runs=1)["questions"].items() if v["kept"]]
    assert kept == ["q0", "q1", "q2", "q3", "q4"]  # each needs the image in one run at least
    # the JSONL loads back as a file: benchmark, with its images and the original prompts
    bench = load_benchmark(f"file:{out / 'questions.jsonl'}")
    original = load_benchmark(f"file:{bench_file}")
    assert [q.id for q in bench] == kept and len(list((out / "images").iterdir())) == 5
    for q in bench:
        o = next(x for x in original if x.id == q.id)
        assert (q.text, q.choices, q.answer, q.type) == (o.text, o.choices, o.answer, o.type)
        assert bench.prompt(q) == original.prompt(o)
        assert np.array_equal(np.asarray(q.image()), np.asarray(o.image()))


def test_refusals(tmp_path, bench_file):
    no_blind = fake_run(tmp_path / "a", bench_file, {"real": "111111", "blank": "000000"})
    with pytest.raises(ValueError, match="no image-free source"):
        curate([no_blind], tmp_path / "o")
    ok = fake_run(tmp_path / "b", bench_file, {"real": "111111", "none": "000000"})
    with pytest.raises(ValueError, match="--min-runs 3"):
        curate([ok], tmp_path / "o", min_runs=3)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        curate([tmp_path / "nope"], tmp_path / "o")


def test_cli_eval_none_text_model_then_curate_round_trips(shapes_cli, tmp_path):
    """eval with none and a text model prints and stores the blind measures; curate writes a set eval runs on."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mirage.models.demo.modeling import DemoVLM

    tok = DemoVLM.from_pretrained(shapes_cli).tokenizer
    lm_dir = tmp_path / "lm"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    res = cli("eval", "--model", f"demo:{shapes_cli}", "--conditions", "real,none,blank", "--text-model",
              f"hf:{lm_dir}", "--limit", "12", "--out", str(tmp_path / "run"), "--quiet")
    assert res.exit_code == 0, res.output
    assert "image-free measures" in res.output and "MG" in res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"S_v", "S_wv", "S_t", "MG", "ML", "by_type"} <= set(summary["blind"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["text_model"] == f"hf:{lm_dir}"
    res = cli("curate", str(tmp_path / "run"), "--out", str(tmp_path / "cur"), "--min-runs", "1")
    assert res.exit_code == 0, res.output
    n = json.loads((tmp_path / "cur" / "curation.json").read_text())["n_kept"]
    if n:  # a random tiny model may need the image nowhere; the JSONL is then empty
        res = cli("eval", "--model", f"demo:{shapes_cli}", "--benchmark", f"file:{tmp_path / 'cur' / 'questions.jsonl'}",
                  "--conditions", "real", "--out", str(tmp_path / "run2"), "--quiet")
        assert res.exit_code == 0, res.output
        assert json.loads((tmp_path / "run2" / "summary.json").read_text())["n"]["real"] == n
