import pytest
import torch
from safetensors.torch import load_file

from mirage.benchmarks.question import Benchmark
from mirage.inputs import Reference, build_input
from mirage.objectives import OBJECTIVES
from mirage.optimize import OptimizeConfig, optimize_questions, optimize_universal
from mirage.runs import RunDir


@pytest.fixture(scope="module")
def ref(tiny_model, small_bench):
    return Reference.from_benchmark(tiny_model, small_bench)


def test_optimization_lowers_the_loss(tiny_model, small_bench, ref):
    qs = small_bench.questions[:4]
    inp = build_input("features", tiny_model, 4, ref)
    for s, q in enumerate(qs):
        inp.reset(s, q.id)
    ce = OBJECTIVES.get("ce")
    before, _ = ce(tiny_model, [small_bench.prompt(q) for q in qs], inp(torch.arange(4)), qs)
    slot_of = held_slots(inp)
    optimize_questions(tiny_model, Benchmark("s", "t", qs), inp, ce, OptimizeConfig(steps=15, early_stop=0),
                       "features-question", None, lr=0.1)
    after, _ = ce(tiny_model, [small_bench.prompt(q) for q in qs], inp(torch.tensor([slot_of[q.id] for q in qs])), qs)
    assert (after < before).all()


def held_slots(inp) -> dict:
    """Which slot each question took (the loop's order is its own: longest prompts first)."""
    slot_of, start = {}, inp.start

    def spy(slot, key):
        slot_of[key] = slot
        start(slot, key)

    inp.start = spy
    return slot_of


def test_queue_takes_the_longest_prompts_first_and_keeps_benchmark_order_among_equals(tiny_model, small_bench, ref):
    """Batches of like length (little padding), the largest first (a batch too large fails at once)."""
    from mirage.prefetch import prompt_lengths

    bench = small_bench.subset(12)
    lengths = dict(zip([q.id for q in bench], prompt_lengths(tiny_model, [bench.prompt(q) for q in bench])))
    assert len(set(lengths.values())) > 2
    inp = build_input("tokens", tiny_model, 1, ref)
    slot_of = held_slots(inp)
    optimize_questions(tiny_model, bench, inp, OBJECTIVES.get("ce"), OptimizeConfig(steps=1, early_stop=0), "t", None)
    order = list(slot_of)  # the order the questions took a slot
    index = {q.id: i for i, q in enumerate(bench)}
    assert order == sorted(index, key=lambda k: (-lengths[k], index[k]))


def test_batched_equals_one_at_a_time(tiny_model, small_bench, ref, tmp_path):
    bench = small_bench.subset(7)
    cfg = OptimizeConfig(steps=6, early_stop=2, stop_margin=0.05)
    results = {}
    for bs in (1, 3):
        run = RunDir.open(tmp_path / f"b{bs}", {"x": 1})
        inp = build_input("features", tiny_model, bs, ref)
        rows = optimize_questions(tiny_model, bench, inp, OBJECTIVES.get("ce"), cfg, "f", run, lr=0.1)
        results[bs] = (rows, run)
    (a, run_a), (b, run_b) = results[1], results[3]
    by_id = lambda rows: {r["question_id"]: r for r in rows}
    ra, rb = by_id(a), by_id(b)
    assert ra.keys() == rb.keys() == {q.id for q in bench}
    for qid in ra:
        assert ra[qid]["steps"] == rb[qid]["steps"] and ra[qid]["pred"] == rb[qid]["pred"]
        assert ra[qid]["probs"] == pytest.approx(rb[qid]["probs"], abs=1e-3)
        fa = load_file(str(run_a.path / ra[qid]["artifact"]))
        fb = load_file(str(run_b.path / rb[qid]["artifact"]))
        for k in fa:
            # Adam divides by sqrt(v): near-zero gradients amplify float-order noise of batched matmuls,
            # so a few elements may differ by a small fraction of one step (lr 0.1); the rest agree closely
            torch.testing.assert_close(fa[k], fb[k], atol=1e-3, rtol=0)
            assert (fa[k] - fb[k]).abs().mean() < 1e-6


def test_early_stop_and_refill_visit_every_question_once(tiny_model, small_bench, ref):
    bench = small_bench.subset(7)
    inp = build_input("tokens", tiny_model, 3, ref)
    # a margin every question meets at once: each stops after `early_stop` forwards, i.e. early_stop - 1 updates
    cfg = OptimizeConfig(steps=50, early_stop=2, stop_margin=-1e9)
    rows = optimize_questions(tiny_model, bench, inp, OBJECTIVES.get("ce"), cfg, "t", None, lr=0.01)
    assert sorted(r["question_id"] for r in rows) == sorted(q.id for q in bench)
    assert {r["steps"] for r in rows} == {1}
    never = optimize_questions(tiny_model, bench.subset(2), build_input("tokens", tiny_model, 3, ref),
                               OBJECTIVES.get("ce"), OptimizeConfig(steps=4, early_stop=2, stop_margin=1e9), "t",
                               None, lr=0.01)
    assert {r["steps"] for r in never} == {4}


def test_detached_and_unselected_encoders_get_no_gradient(tiny_model, small_bench, ref):
    inp = build_input("features", tiny_model, 2, ref, encoders=["clip", "convnext"], detach=["convnext"])
    for s in range(2):
        inp.reset(s, f"q{s}")
    assert set(inp.params) == {"clip", "convnext"} and not inp.params["convnext"].requires_grad
    visual = inp(torch.arange(2))
    torch.testing.assert_close(visual.value["dino"][0], ref.blank_features["dino"][0])  # held at blank
    loss, _ = OBJECTIVES.get("ce")(tiny_model, [small_bench.prompt(q) for q in small_bench.questions[:2]], visual,
                                   small_bench.questions[:2])
    loss.sum().backward()
    assert inp.params["clip"].grad.abs().sum() > 0 and inp.params["convnext"].grad is None
    slot_of = held_slots(inp)
    optimize_questions(tiny_model, small_bench.subset(2), inp, OBJECTIVES.get("ce"), OptimizeConfig(steps=3), "f", None)
    fresh = build_input("features", tiny_model, 2, ref, encoders=["clip", "convnext"], detach=["convnext"])
    for q in small_bench.questions[:2]:  # each slot's frozen tensor is its question's own init
        fresh.reset(slot_of[q.id], q.id)
    torch.testing.assert_close(inp.params["convnext"].detach(), fresh.params["convnext"].detach(), rtol=0, atol=0)
    assert not torch.equal(inp.params["clip"].detach(), fresh.params["clip"].detach())  # ... while clip moved


def test_single_encoder_pixels_send_gradient_through_that_encoder_only(tiny_model, small_bench, ref):
    inp = build_input("pixels", tiny_model, 1, ref, encoders=["siglip"])
    inp.reset(0, "q")
    calls = []
    hooks = [tiny_model.vision[n].register_forward_hook(lambda m, i, o, n=n: calls.append(n)) for n in tiny_model.vision]
    visual = inp(torch.zeros(1, dtype=torch.long))
    for h in hooks:
        h.remove()
    assert calls == ["siglip"] and visual.stage == "features"
    q = small_bench.questions[0]
    OBJECTIVES.get("ce")(tiny_model, [small_bench.prompt(q)], visual, [q])[0].sum().backward()
    assert inp.pixels.grad.abs().sum() > 0


def test_universal_resume_equals_uninterrupted(tiny_model, small_bench, ref, tmp_path):
    bench = small_bench.subset(12)
    cfg = OptimizeConfig(steps=6, batch_size=3, checkpoint_every=1)
    ce = OBJECTIVES.get("ce")
    full_run = RunDir.open(tmp_path / "full", {"x": 1})
    full = build_input("pixels", tiny_model, 1, ref, param="raw")
    h_full = optimize_universal(tiny_model, bench, bench.questions[:8], full, ce, cfg, "u", full_run, lr=0.05)
    run = RunDir.open(tmp_path / "crash", {"x": 1})
    optimize_universal(tiny_model, bench, bench.questions[:8], build_input("pixels", tiny_model, 1, ref, param="raw"),
                       ce, cfg, "u", run, lr=0.05, stop_after=4)  # dies after 4 steps
    resumed = build_input("pixels", tiny_model, 1, ref, param="raw")
    h_res = optimize_universal(tiny_model, bench, bench.questions[:8], resumed, ce, cfg, "u", run, lr=0.05)
    assert h_res == h_full
    assert torch.equal(resumed.pixels, full.pixels)  # bit for bit: the checkpoint holds the exact state
    assert (run.artifacts_dir / "u.png").read_bytes() == (full_run.artifacts_dir / "u.png").read_bytes()


@pytest.mark.parametrize("kind, opts", [("features", {}), ("pixels", {"param": "fourier"}), ("tokens", {})])
def test_universal_run_gives_the_same_bytes_on_a_multithreaded_cpu(tiny_model, small_bench, ref, tmp_path, kind,
                                                                   opts):
    # Every row uses slot 0, so the backward sums many rows into one slot: that sum must not depend on thread timing.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = OptimizeConfig(steps=3, batch_size=12)
        outs = []
        for i in range(2):
            inp = build_input(kind, tiny_model, 1, ref, **opts)
            run = RunDir.open(tmp_path / f"r{i}", {"x": 1})
            optimize_universal(tiny_model, small_bench, small_bench.questions[:12], inp, OBJECTIVES.get("ce"), cfg,
                               "u", run, lr=0.1)
            art = run.artifacts_dir / "u.png"
            outs.append((art if art.exists() else art.with_suffix(".safetensors")).read_bytes())
    finally:
        torch.set_num_threads(threads)
    assert outs[0] == outs[1]


def test_all_encoders_detached_still_finishes(tiny_model, small_bench, ref):
    names = [s.name for s in tiny_model.encoders]
    inp = build_input("features", tiny_model, 2, ref, detach=names)
    rows = optimize_questions(tiny_model, small_bench.subset(3), inp, OBJECTIVES.get("ce"),
                              OptimizeConfig(steps=2, early_stop=0), "f", None)
    assert len(rows) == 3 and {r["steps"] for r in rows} == {2}


def test_an_input_holds_one_row_per_image_of_its_slots(tiny_model, ref):
    """`images` rows per slot: a batch of questions asked with 2 and 3 images reads rows slot x 3 + k, in order;
    a one-image input shows its slot's row as every image (universal); the Visual carries each row's count and
    `select` takes whole rows' images. Image k starts seeded by the question's `image_key`, the first as a
    one-image input of the question does."""
    from mirage.models.vlm import Visual

    inp = build_input("tokens", tiny_model, 2, ref, images=3)
    inp.start(1, "q7")
    one = build_input("tokens", tiny_model, 1, ref)
    one.start(0, "q7")
    assert torch.equal(inp.tokens[3], one.tokens[0]) and not torch.equal(inp.tokens[4], inp.tokens[3])
    v = inp.visual([1, 0], "cpu", [2, 3])
    assert v.counts == (2, 3) and torch.equal(v.value, inp.tokens[[3, 4, 0, 1, 2]])
    shared = one.visual([0, 0], "cpu", [2, 3])
    assert torch.equal(shared.value, one.tokens[[0] * 5])
    picked = v.select([1])
    assert picked.counts == (3,) and torch.equal(picked.value, inp.tokens[[0, 1, 2]])
    assert Visual("tokens", v.value).select([1]).value.shape[0] == 1


def test_slot_adam_is_torch_adam_per_slot():
    """Each slot steps as its own torch.optim.Adam would: paused slots keep their values and moments, a reset slot
    starts again from step 0 (the reference: one torch.optim.Adam per slot, rebuilt on reset)."""
    from mirage.slot_adam import SlotAdam

    torch.manual_seed(0)
    slots, rows = 3, 2
    p = torch.nn.Parameter(torch.randn(slots * rows, 4, 5))
    opt = SlotAdam([p], slots, 0.1, rows=rows)
    ref = [torch.nn.Parameter(p.detach()[s * rows:(s + 1) * rows].clone()) for s in range(slots)]
    ref_opt = [torch.optim.Adam([r], lr=0.1) for r in ref]
    for k in range(6):
        if k == 4:  # slot 1 gets a new question
            opt.reset(1)
            ref_opt[1] = torch.optim.Adam([ref[1]], lr=0.1)
        active = torch.tensor([True, k % 2 == 0, k != 3])
        p.grad = torch.randn_like(p)
        before = p.detach().clone()
        opt.step(active)
        for s in range(slots):
            mine = p.detach()[s * rows:(s + 1) * rows]
            if active[s]:
                ref[s].grad = p.grad[s * rows:(s + 1) * rows].clone()
                ref_opt[s].step()
            else:
                assert torch.equal(mine, before[s * rows:(s + 1) * rows])
            torch.testing.assert_close(mine, ref[s].detach(), rtol=0, atol=1e-6)
    assert opt.t.tolist() == [6, 1, 5]  # slot 1: steps 0 and 2, then reset, then step 4
