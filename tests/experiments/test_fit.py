"""`--batch-size auto`'s search, measured on the CPU under a memory budget (the GPU's free memory in real runs)."""

import pytest

from mirage.experiments import OptimizeSpec
from mirage.experiments.fit import fit_batch, parse_batch_size, step_peak
from mirage.inputs import Reference
from mirage.errors import UsageError
from mirage.memory import GIB
from mirage.optimize import OptimizeConfig


def test_checkpointing_only_where_the_plain_step_does_not_fit(tiny_model, small_bench):
    from dataclasses import replace

    bench = replace(small_bench, questions=small_bench.questions[:2])
    spec = OptimizeSpec("features", detach=["convnext"])  # the user's detach: the ladder has no detach rung left
    cfg = OptimizeConfig()
    ref = Reference.from_benchmark(tiny_model, bench)
    plain = step_peak(tiny_model, bench, spec, cfg, 1, ref)
    limit = int(plain * 0.95)  # one question fits only if checkpointing saves > 5 % (it saves ~14 % here)
    fit = fit_batch(tiny_model, bench, spec, cfg, ref, memory_gib=limit / GIB)
    try:
        assert (fit.batch_size, fit.switches) == (1, ["grad_checkpointing"])
        tried = [(p["batch"], p["switches"], p["fits"]) for p in fit.probes]
        assert tried == [(1, [], False), (1, ["grad_checkpointing"], True), (2, ["grad_checkpointing"], False)]
        assert fit.probes[1]["peak_bytes"] <= limit < fit.probes[0]["peak_bytes"]
        assert tiny_model.training  # the switch is on for the run that follows
        assert "batch size auto: 1 (grad_checkpointing" in fit.describe()
    finally:
        from mirage.experiments.optimization import clear_switches
        clear_switches(tiny_model)
    assert not tiny_model.training


def test_parse_batch_size():
    assert parse_batch_size("auto") == "auto" and parse_batch_size("12") == 12
    for bad in ("0", "-3", "big"):
        with pytest.raises(UsageError, match="--batch-size: .* neither a positive integer nor auto"):
            parse_batch_size(bad)


def test_study_parts_fit_their_batch_and_record_it(tiny_model, small_bench, tmp_path, monkeypatch):
    """`mirage study --batch-size auto` (the default): an optimization part measured within --memory (a GPU's free
    memory in real runs) takes the batch `fit_batch` chooses, recorded per part in timings.json, and leaves no
    switch on for the next part; on the CPU without --memory the preset's batch stands and nothing is recorded."""
    import json
    from dataclasses import replace

    import mirage.experiments.study as study
    from mirage.experiments.study import Part, run_parts
    from mirage.runs import RunDir

    used = []
    run_optimization = study.run_optimization
    monkeypatch.setattr(study, "run_optimization", lambda m, b, s, c, *a: used.append(c.batch_size) or
                        run_optimization(m, b, s, c, *a))

    bench = replace(small_bench, questions=small_bench.questions[:3])
    spec, cfg = OptimizeSpec("features"), OptimizeConfig(steps=1, batch_size=1)
    for memory, batch in ((64.0, 3), (None, 1)):
        run = RunDir.open(tmp_path / str(memory), {"command": "test"})
        run.start_invocation({})
        part = Part("features-question", "optimization", 3, {"spec": spec, "cfg": cfg, "auto": True, "memory": memory})
        run_parts(tiny_model, bench, run, [part])
        assert used.pop() == batch and len([r for r in run.rows() if r["source"] == "features-question"]) == 3
        inv = json.loads((run.path / "timings.json").read_text())["invocations"][-1]
        if memory is None:
            assert "batch_auto" not in inv
        else:
            got = inv["batch_auto"]["features-question"]
            assert (got["batch_size"], got["switches"], got["budget_gib"]) == (3, [], 64.0) and got["probes"]
        assert not tiny_model.training
