import json

import numpy as np
import pytest
import torch
from PIL import Image

from mirage.experiments import OWN_LOOPS, OptimizeSpec, apply_switches, run_optimization
from mirage.inputs import INPUTS, PARAMS, Reference
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir


@pytest.fixture(scope="module")
def ref(tiny_model, small_bench):
    return Reference.from_benchmark(tiny_model, small_bench)


def _specs():
    out = [("features", {}), ("tokens", {}), ("soft-prompt", {})] + [("pixels", {"param": p}) for p in PARAMS]
    assert {k for k, _ in out} | set(OWN_LOOPS) == set(INPUTS.names())  # a new input needs a case here (or its own loop)  # a new input must be added here
    return out


@pytest.mark.parametrize("scope", ["question", "universal"])
@pytest.mark.parametrize("kind, opts", _specs())
def test_every_input_and_scope_runs_and_writes_rows(tiny_model, small_bench, tmp_path, kind, opts, scope):
    bench = small_bench.subset(6)
    spec = OptimizeSpec(kind, scope=scope, train=3, **opts)
    run = RunDir.open(tmp_path / "run", {"x": 1})
    rows = run_optimization(tiny_model, bench, spec, OptimizeConfig(steps=3, batch_size=4, lr=0.05), run)
    sources = {r["source"] for r in rows}
    if scope == "question":
        want = {spec.source} | ({f"{spec.source}-png"} if kind == "pixels" else set())
        assert sources == want and sum(r["source"] == spec.source for r in rows) == 6
        assert all(1 <= r["steps"] <= 3 for r in rows if r["source"] == spec.source)
    else:
        want = {spec.source, f"{spec.source}-train"} | ({f"{spec.source}-png"} if kind == "pixels" else set())
        assert sources == want
        history = json.loads((run.artifacts_dir / f"{spec.source}.history.json").read_text())
        assert [h["step"] for h in history] == [1, 2, 3]


def test_png_is_written_reread_and_rechecked(tiny_model, small_bench, tmp_path):
    run = RunDir.open(tmp_path / "run", {"x": 1})
    spec = OptimizeSpec("pixels", quantize=True)
    rows = run_optimization(tiny_model, small_bench.subset(4), spec, OptimizeConfig(steps=4, batch_size=2), run)
    opt = {r["question_id"]: r for r in rows if r["source"] == "pixels-question"}
    png = {r["question_id"]: r for r in rows if r["source"] == "pixels-question-png"}
    assert opt.keys() == png.keys() and len(opt) == 4
    for qid, r in opt.items():
        img = Image.open(run.path / r["artifact"])
        assert img.mode == "RGB" and img.size == (224, 224)
        # quantisation-aware: the float optimum already was the 8-bit image, so the real path agrees closely
        assert png[qid]["probs"] == pytest.approx(r["probs"], abs=0.05)


def test_memory_switches_keep_results(tiny_model, small_bench, ref, tmp_path):
    import copy
    bench = small_bench.subset(3)
    spec = OptimizeSpec("pixels")
    base = run_optimization(tiny_model, bench, spec, OptimizeConfig(steps=2, batch_size=3),
                            RunDir.open(tmp_path / "a", {"x": 1}), ref)
    model = copy.deepcopy(tiny_model)
    apply_switches(model, OptimizeSpec("features"), grad_checkpointing=True, offload=True)
    assert model.lm.model.gradient_checkpointing and model.vision["clip"].model.encoder.gradient_checkpointing
    apply_switches(model, spec, grad_checkpointing=True, offload=False)
    switched = run_optimization(model, bench, spec, OptimizeConfig(steps=2, batch_size=3),
                                RunDir.open(tmp_path / "b", {"x": 1}), ref)
    key = lambda rows: sorted((r["question_id"], r["source"], r["pred"], r.get("steps")) for r in rows)
    assert key(base) == key(switched)
    bf16 = copy.deepcopy(tiny_model).to(torch.bfloat16)
    rows = run_optimization(bf16, bench, OptimizeSpec("features"), OptimizeConfig(steps=2, batch_size=3),
                            RunDir.open(tmp_path / "c", {"x": 1}), ref)
    assert len(rows) == 3 and all(np.isfinite(r["probs"]).all() for r in rows)


def test_bad_optimize_flags_name_the_problem():
    with pytest.raises(ValueError, match="did you mean 'universal'"):
        OptimizeSpec(scope="univeral")
    with pytest.raises(ValueError, match="did you mean 'fourier'"):
        OptimizeSpec("pixels", param="fourrier")
    with pytest.raises(KeyError, match="did you mean 'margin'"):
        OptimizeSpec(objective="margn")


def test_compiled_blocks_give_the_eager_results(tiny_model, small_bench, ref, tmp_path):
    """`--compile` traces every repeated block (towers, aggregator, LM layers) through dynamo and AOTAutograd; the
    results must not move. aot_eager is the same tracing as inductor without code generation (seconds on a CPU)."""
    import copy
    bench = small_bench.subset(3)
    spec = OptimizeSpec("pixels")
    cfg = OptimizeConfig(steps=2, batch_size=3, early_stop=0)
    eager = run_optimization(tiny_model, bench, spec, cfg, RunDir.open(tmp_path / "a", {"x": 1}), ref)
    model = copy.deepcopy(tiny_model)
    apply_switches(model, spec, compile="aot_eager")
    compiled_ids = {id(m) for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None}
    assert {id(m) for m in model.lm.model.layers} <= compiled_ids  # every LM layer (this tiny model's towers have 1)
    compiled = run_optimization(model, bench, spec, cfg, RunDir.open(tmp_path / "b", {"x": 1}), ref)
    for e, c in zip(sorted(eager, key=str), sorted(compiled, key=str)):
        assert [e[k] for k in ("question_id", "source", "pred")] + [e.get("steps")] == [c[k] for k in ("question_id", "source", "pred")] + [c.get("steps")]
        assert e["probs"] == pytest.approx(c["probs"], abs=1e-4)
    with pytest.raises(ValueError, match="no repeated blocks"):
        apply_switches(torch.nn.Linear(2, 2), spec, compile="aot_eager")
