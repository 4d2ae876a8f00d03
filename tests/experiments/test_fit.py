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
