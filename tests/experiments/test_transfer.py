import json

import pytest
from typer import Typer
from typer.testing import CliRunner

from mirage.cli.transfer import transfer_cmd, transfer_types_cmd
from mirage.benchmarks.question import Benchmark
from mirage.inputs import Reference, build_input
from mirage.objectives import OBJECTIVES
from mirage.optimize import OptimizeConfig, optimize_universal
from mirage.runs import RunDir
from mirage.stats import paired_difference
from mirage.experiments.transfer import (load_universal, transfer_matrix, type_benchmarks, type_transfer,
                                         universal_artifacts)

CELL = {"trained_on", "evaluated_on", "n", "accuracy", "ci95", "blank_accuracy", "gain", "gain_ci95", "mcnemar"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tiny_model, small_bench, tmp_path_factory):
    """Two tiny universal inputs (features on colour questions, pixels on position questions), each in a run."""
    ref = Reference.from_benchmark(tiny_model, small_bench)
    types = type_benchmarks(small_bench)
    out = {}
    for kind, t in (("features", "colour"), ("pixels", "position")):
        run = RunDir.open(tmp_path_factory.mktemp(t), {"x": t, "model": "demo:tiny-a"})
        inp = build_input(kind, tiny_model, 1, ref)
        optimize_universal(tiny_model, types[t], types[t].questions[:4], inp, OBJECTIVES.get("ce"),
                           OptimizeConfig(steps=2, batch_size=2), f"{kind}-universal", run, lr=0.05)
        out[t] = run
    return out


def test_type_benchmarks_partition_the_questions(small_bench):
    types = type_benchmarks(small_bench)
    assert set(types) == set(small_bench.types())
    assert sorted(q.id for b in types.values() for q in b) == sorted(q.id for q in small_bench)
    assert all(q.type == t for t, b in types.items() for q in b) and types["colour"].name == "shapes-colour"


def test_artifacts_are_found_and_loaded(trained, tiny_model, tmp_path):
    found = universal_artifacts(trained["colour"].path)
    (name, path), = found.items()
    assert name.endswith("/features-universal") and path.suffix == ".safetensors"
    kind, visual = load_universal(tiny_model, path)
    assert kind == "features" and set(visual.value) == {s.name for s in tiny_model.encoders}
    kind, visual = load_universal(tiny_model, trained["position"].artifacts_dir / "pixels-universal.png")
    assert kind == "pixels" and visual.stage == "processed"
    (tmp_path / "artifacts" / "features-question").mkdir(parents=True)  # per-question inputs only
    with pytest.raises(FileNotFoundError, match="no universal input"):
        universal_artifacts(tmp_path)


def test_transfer_matrix_is_2x2_with_intervals_and_gain_over_blank(trained, tiny_model, small_bench, tmp_path):
    types = type_benchmarks(small_bench)
    benches = {"colour": types["colour"], "position": types["position"]}
    inputs = {"on-colour": trained["colour"].path, "on-position": trained["position"].path}
    run = RunDir.open(tmp_path / "t", {"x": 1})
    m = transfer_matrix(tiny_model, inputs, benches, run)
    baselines = ["blank-features", "noise-features", "blank-pixels", "noise-pixels"]
    assert m["rows"] == ["on-colour", "on-position", *baselines] and m["columns"] == ["colour", "position"]
    assert len(m["cells"]) == 6 and all(len(line) == 2 for line in m["cells"])
    for i, line in enumerate(m["cells"]):
        for j, cell in enumerate(line):
            trained = m["rows"][i] in inputs
            assert set(cell) == CELL | ({"vs_baseline"} if trained else set())
            assert cell["trained_on"] == m["rows"][i] and cell["evaluated_on"] == m["columns"][j]
            assert cell["n"] == len(benches[m["columns"][j]])
            assert cell["ci95"][0] <= cell["accuracy"] <= cell["ci95"][1]
            assert cell["gain"] == pytest.approx(cell["accuracy"] - cell["blank_accuracy"], abs=1e-3)
    assert m["inputs"]["on-colour"]["kind"] == "features" and m["inputs"]["on-position"]["kind"] == "pixels"
    assert m["inputs"]["noise-pixels"] == {"path": None, "kind": "pixels", "baseline": "noise"}
    # each trained cell against the untrained inputs of its kind and shape, paired on the same questions
    rows = {(r["source"], r["question_id"]): r["correct"] for r in run.rows()}
    cell = m["cells"][1][0]  # pixels trained on position, evaluated on colour
    ids = [q.id for q in benches["colour"]]
    diff = paired_difference([rows["on-position", q] for q in ids], [rows["noise-pixels", q] for q in ids])
    assert cell["vs_baseline"]["noise"] == {"n": len(ids), "difference": diff["difference"], "ci95": diff["ci95"],
                                            "p": diff["mcnemar"]["p"]}
    assert m["inputs"]["on-colour"]["crafted_on"] == "demo:tiny-a"
    assert json.loads((run.path / "transfer.json").read_text()) == m
    n_rows = len(run.rows())
    assert transfer_matrix(tiny_model, inputs, benches, run) == m and len(run.rows()) == n_rows  # resumed: no rework
    assert transfer_matrix(tiny_model, inputs, benches) == m  # without a run directory
    # the report draws the matrix as a heat map
    from mirage.report import build_report

    html = build_report(run.path, questions=False)
    assert "Transfer across benchmarks" in html


def test_type_transfer_trains_one_input_per_type(tiny_model, small_bench, tmp_path):
    bench = Benchmark("shapes", "test", [q for q in small_bench if q.type in ("colour", "size")])
    m = type_transfer(tiny_model, bench, RunDir.open(tmp_path / "tt", {"x": 1}), steps=1, batch_size=2)
    assert m["rows"] == [*m["columns"], "blank-features", "noise-features"] and m["columns"] == ["colour", "size"]
    assert m["cells"][0][0]["n"] == 7 - 3 and m["cells"][1][1]["n"] == 4 - 2  # held-out halves
    assert (tmp_path / "tt" / "inputs" / "size" / "artifacts" / "features-universal.safetensors").exists()


def test_transfer_cli(trained, tiny_model, tmp_path):
    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir)
    app = Typer()
    app.command("transfer")(transfer_cmd)
    app.command("transfer-types")(transfer_types_cmd)
    args = ["transfer", "--model", f"demo:{model_dir}", "--from", f"colour={trained['colour'].path}",
            "--from", str(trained["position"].path), "--benchmark", "shapes", "--limit", "12", "--by-type",
            "--out", str(tmp_path / "cli"), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "cli" / "transfer.json").read_text())
    assert m["rows"][:2] == ["colour", f"{trained['position'].path.name}/pixels-universal"]
    assert "noise-pixels" in res.output  # the baseline rows in the table
    assert all(c.startswith("shapes:") for c in m["columns"]) and "trained on" in res.output
    res = CliRunner().invoke(app, ["transfer", "--from", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "neither an artifact file nor a run directory" in res.output


def test_cross_model_transfer_against_its_baseline(trained, tiny_model, small_bench, tmp_path):
    """A universal input crafted on model A evaluated on model B of the same input size (another tiny demo, other
    weights), with its paired tests against B's blank and noise inputs; a model of another feature shape is
    refused, naming the tensor and both shapes."""
    import torch

    from mirage.errors import MirageError
    from mirage.models.demo.modeling import DemoVLM

    from ..conftest import tiny_config

    torch.manual_seed(1)
    other = DemoVLM(tiny_config(len(tiny_model.tokenizer)), tiny_model.tokenizer).eval()
    other.name_or_path = "demo:tiny-b"
    bench = type_benchmarks(small_bench)["colour"]
    m = transfer_matrix(other, {"a": trained["colour"].path, "p": trained["position"].path}, {"colour": bench})
    assert m["model"] == "demo:tiny-b" and m["inputs"]["a"]["crafted_on"] == "demo:tiny-a"
    assert set(m["cells"][0][0]["vs_baseline"]) == {"blank", "noise"} and m["cells"][0][0]["n"] == len(bench)
    cfg = tiny_config(len(tiny_model.tokenizer))
    cfg.encoders["clip"]["config"]["hidden_size"] = 48
    wider = DemoVLM(cfg, tiny_model.tokenizer).eval()
    with pytest.raises(MirageError, match=r"clip is \[\d+, 32\], this model takes \[\d+, 48\].*same input size"):
        transfer_matrix(wider, {"a": trained["colour"].path}, {"colour": bench})
