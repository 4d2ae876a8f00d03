"""Trained-blind baselines (TsT): cross-fitting without leakage, the forest on planted shortcuts, LoRA on a text LM
and on a tiny Qwen2.5-VL's LM, resume after a kill mid-fold, and Iterative Bias Pruning's stopping rules."""

import json

import numpy as np
import pytest
import torch

from mirage.benchmarks.question import Benchmark, Question, letter_prompt
from mirage.curate import bias_pruning
from mirage.experiments import tst
from mirage.experiments.tst import LoraSettings, assign_folds, decoder_of, run_tst
from mirage.models import Visual
from mirage.runs import RunDir
from mirage.stats import accuracy_ci

WORDS = [f"w{i}" for i in range(40)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (two spin against each other on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

KEYS = ["alpha", "bravo", "charlie", "delta"]
PARTNERS = ["apple", "banana", "cherry", "date"]


def synthetic(n: int, shortcut: bool, seed: int = 0) -> Benchmark:
    """Questions of random words with four options of random words; with `shortcut`, one of four keywords in the
    question names a word of the answer (keyword i -> partner word i in the gold option), else nothing does."""
    rng = np.random.default_rng(seed)
    qs = []
    for i in range(n):
        answer, key = int(rng.integers(4)), int(rng.integers(4))
        words = list(rng.choice(WORDS, 5))
        choices = [list(rng.choice(WORDS, 2)) for _ in range(4)]
        if shortcut:
            words.insert(int(rng.integers(5)), KEYS[key])
            choices[answer].insert(int(rng.integers(3)), PARTNERS[key])
        qs.append(Question(f"q{i:04d}", " ".join(words), tuple(" ".join(c) for c in choices), answer, type="t"))
    return Benchmark("synthetic", "test", qs, letter_prompt)


def test_the_forest_finds_a_planted_shortcut_and_stays_at_chance_without(tmp_path):
    for shortcut in (True, False):
        bench = synthetic(120, shortcut)
        run = RunDir.open(tmp_path / str(shortcut), {"benchmark": "synthetic"})
        rows = run_tst(None, bench, run, ("rf",), folds=5)
        acc, lo, hi = accuracy_ci([r["correct"] for r in rows])
        assert len(rows) == 120 and {r["source"] for r in rows} == {"tst-rf"}
        if shortcut:
            assert lo > 0.7, acc
        else:
            assert abs(acc - 0.25) < 0.1, acc  # chance, within sampling error of 120 questions


def test_no_question_is_scored_by_a_model_that_trained_on_its_text(tmp_path, monkeypatch):
    bench = synthetic(60, False)
    twin = bench.questions[7]
    bench.questions.append(Question("twin", twin.text, twin.choices, twin.answer, type="t"))  # identical text
    folds = assign_folds(bench.questions, [bench.prompt(q) for q in bench], 5, 0)
    assert folds["twin"] == folds[twin.id]  # identical text: one fold
    assert assign_folds(bench.questions, [bench.prompt(q) for q in bench], 5, 0) == folds  # deterministic
    calls = []
    fit = tst.forest_probs

    def recording(train, test, *a, **k):
        calls.append(([bench.prompt(q) for q in train], [q.id for q in test], [bench.prompt(q) for q in test]))
        return fit(train, test, *a, **k)

    monkeypatch.setattr(tst, "forest_probs", recording)
    run = RunDir.open(tmp_path / "run", {"benchmark": "synthetic"})
    rows = run_tst(None, bench, run, ("rf",), folds=5)
    assert len(calls) == 5 and sorted(i for _, ids, _ in calls for i in ids) == sorted(q.id for q in bench)
    for train, _, test in calls:
        assert not set(train) & set(test)  # no scored text among the training texts, twins included
    state = json.loads((run.artifacts_dir / "tst.json").read_text())["tst-rf"]
    assert state["folds"] == folds and all(r["fold"] == folds[r["question_id"]] for r in rows)


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    from mirage.benchmarks.shapes.questions import vocabulary
    from mirage.models.demo.tokenizer import build_tokenizer
    from mirage.models.text_lm import load_text_model

    tok = build_tokenizer(vocabulary())
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("lm")
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(d)
    tok.save_pretrained(d)
    return load_text_model(f"hf:{d}", device="cpu")


def test_lora_rows_resume_after_a_kill_mid_fold_and_leave_the_lm_as_it_was(text_lm, small_bench, tmp_path,
                                                                           monkeypatch):
    settings = LoraSettings(epochs=2, lr=1e-2, batch_size=8)
    prompts = [small_bench.prompt(q) for q in small_bench][:4]
    before = text_lm.next_token_logits(prompts, Visual.none()).detach()
    whole = run_tst(None, small_bench, RunDir.open(tmp_path / "whole", {"b": 1}), ("lm",), folds=3, lm=text_lm,
                    lora=settings)
    after = text_lm.next_token_logits(prompts, Visual.none()).detach()
    assert torch.equal(before, after)  # the adapters are gone again
    assert not [n for n, _ in text_lm.named_modules() if "lora" in n]
    assert len(whole) == len(small_bench) and {r["zero_shot"] for r in whole} == {"text-model"}
    assert max(abs(a - b) for r in whole for a, b in zip(r["probs"], _zero_shot(text_lm, small_bench, r))) > 1e-3

    trained, steps = [], [0]
    lora_rows, step = tst.lora_rows, torch.optim.AdamW.step

    def counting(model, bench, train, test, fold, *a, **k):
        trained.append(fold)
        return lora_rows(model, bench, train, test, fold, *a, **k)

    def killed_in_fold_1(self, *a, **k):
        steps[0] += 1
        if trained[-1] == 1 and steps[0] > 1:
            raise KeyboardInterrupt  # a kill in the middle of fold 1's training
        return step(self, *a, **k)

    monkeypatch.setattr(tst, "lora_rows", counting)
    monkeypatch.setattr(torch.optim.AdamW, "step", killed_in_fold_1)
    run = RunDir.open(tmp_path / "killed", {"b": 1})
    with pytest.raises(KeyboardInterrupt):
        run_tst(None, small_bench, run, ("lm",), folds=3, lm=text_lm, lora=settings)
    assert trained == [0, 1] and {r["fold"] for r in run.rows()} == {0}
    assert not [n for n, _ in text_lm.named_modules() if "lora" in n]  # removed on the way out too
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    run = RunDir.open(tmp_path / "killed", {"b": 1})
    run_tst(None, small_bench, run, ("lm",), folds=3, lm=text_lm, lora=settings)
    assert trained == [0, 1, 1, 2]  # fold 0 kept, not retrained
    key = lambda r: r["question_id"]  # noqa: E731
    assert sorted(run.rows(), key=key) == sorted(whole, key=key)  # the same rows as the uninterrupted run
    with pytest.raises(Exception, match="other settings"):
        run_tst(None, small_bench, run, ("lm",), folds=3, lm=text_lm, lora=LoraSettings(epochs=1))


def test_lm_checkpointing_is_chosen_per_batch_by_measuring(text_lm, small_bench, monkeypatch):
    """Auto: training steps without checkpointing measured against the budget, the heaviest batch first, then a
    binary search for the heaviest that fits; only the heavier batches recompute. Where all fit, training is exactly
    as with checkpointing off (the probes draw none of dropout's randomness and leave no gradient); where some or
    all do not, the rows stay the same (recomputation changes no number) and checkpointing is off again after."""
    from dataclasses import replace

    from mirage import memory

    decoder = decoder_of(text_lm)
    renamed = hasattr(decoder, "activation_checkpointing_enable")  # transformers >= 5.2x's names
    is_on = lambda: getattr(decoder, "is_activation_checkpointing" if renamed else "is_gradient_checkpointing")  # noqa: E731
    probes, chosen, switched, steps = [], [], [], []
    real_peak, real_choice, real_switch = memory.peak, tst.checkpointed_batches, tst.set_checkpointing
    real_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda *a, **k: (steps.append(is_on()), real_step(*a, **k))[1])
    monkeypatch.setattr(memory, "peak", lambda *a, **k: probes.append(real_peak(*a, **k)) or probes[-1])
    monkeypatch.setattr(tst, "checkpointed_batches", lambda *a, **k: chosen.append(real_choice(*a, **k)) or chosen[-1])
    monkeypatch.setattr(tst, "set_checkpointing", lambda d, on: (switched.append(on), real_switch(d, on))[1])
    train, test = small_bench.questions[:14], small_bench.questions[16:20]  # the last batch, 2 of the longest
    base = LoraSettings(epochs=1, lr=1e-2, batch_size=4)  # prompts, is lighter than the full ones before it
    batches = tst.length_batches(train, small_bench.prompt, 4, None)
    by_weight = sorted(batches, key=lambda b: tst.batch_weight(b, small_bench.prompt))

    def rows(**changes):
        probes.clear(), chosen.clear(), switched.clear(), steps.clear()
        return tst.lora_rows(text_lm, small_bench, train, test, 0, settings=replace(base, **changes))

    def same(a, b):
        return all(x["pred"] == y["pred"] and x["probs"] == pytest.approx(y["probs"], abs=1e-6) for x, y in zip(a, b))

    off = rows(checkpointing=False)
    assert not probes and not switched
    assert rows() == off and not probes and not switched  # the CPU without a budget: nothing measured, off
    assert rows(memory_gib=64) == off and len(probes) == 1 and chosen == [set()] and not switched  # all fit
    assert probes[0] > memory.resident(decoder, text_lm.device)
    heaviest = probes[0]
    nothing = rows(memory_gib=1e-6)  # nothing fits: the search probes down to the lightest batch, all recompute
    assert chosen == [{b[0].id for b in batches}] and switched == [True, False] and all(steps) and same(nothing, off)
    lightest = probes[-1]
    assert lightest < heaviest
    mixed = rows(memory_gib=(lightest + heaviest) / 2 / memory.GIB)
    heavy = chosen[0]
    assert 0 < len(heavy) < len(batches)
    assert heavy == {b[0].id for b in by_weight[len(by_weight) - len(heavy):]}  # the heaviest ones, by weight
    assert sum(steps) == len(heavy) and len(steps) == len(batches)  # those steps alone recomputed
    assert switched[-1] is False and same(mixed, off)
    assert not [n for n, _ in text_lm.named_modules() if "lora" in n]
    assert not is_on()  # off again


def test_lm_step_that_runs_out_of_memory_without_checkpointing_is_retried_with_it(text_lm, small_bench, monkeypatch):
    """Auto: a batch the probes judged to fit (or did not measure) that runs out of GPU memory without checkpointing
    is taken again with it, and recomputes from then on: no update from the failed try, the random streams as
    before it, so the rows are those of a run where nothing failed."""
    from dataclasses import replace

    decoder = decoder_of(text_lm)
    renamed = hasattr(decoder, "activation_checkpointing_enable")
    is_on = lambda: getattr(decoder, "is_activation_checkpointing" if renamed else "is_gradient_checkpointing")  # noqa: E731
    train, test = small_bench.questions[:12], small_bench.questions[16:20]
    base = LoraSettings(epochs=2, lr=1e-2, batch_size=4)
    target = small_bench.prompt(tst.length_batches(train, small_bench.prompt, 4, None)[1][0])
    real_logits, real_step = text_lm.next_token_logits, torch.optim.AdamW.step
    raised, steps = [], []

    def logits(prompts, visual):
        if prompts[0] == target and not is_on():
            torch.rand(7)  # what a forward's dropout draws before memory runs out
            raised.append(1)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_logits(prompts, visual)

    off = tst.lora_rows(text_lm, small_bench, train, test, 0, settings=replace(base, checkpointing=False))
    monkeypatch.setattr(text_lm, "next_token_logits", logits)
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda *a, **k: (steps.append(is_on()), real_step(*a, **k))[1])
    got = tst.lora_rows(text_lm, small_bench, train, test, 0, settings=base)  # auto, no budget on the CPU: none
    assert raised == [1] and len(steps) == 2 * 3 and sum(steps) == 2  # the batch recomputed in both epochs
    for a, b in zip(got, off):
        assert a["pred"] == b["pred"] and a["probs"] == pytest.approx(b["probs"], abs=1e-6)
    assert not is_on()
    with pytest.raises(torch.cuda.OutOfMemoryError):  # forced off: the error is the user's to see
        tst.lora_rows(text_lm, small_bench, train, test, 0, settings=replace(base, checkpointing=False))
    assert not [n for n, _ in text_lm.named_modules() if "lora" in n]


def _zero_shot(lm, bench, row):
    q = next(q for q in bench if q.id == row["question_id"])
    logits = lm.choice_logits([bench.prompt(q)], Visual.none(), [len(q.choices)])[0]
    return logits.softmax(-1).tolist()


def test_a_tiny_qwen2_5_vl_lm_runs_a_fold_with_lora(sqa_bench, tmp_path):
    from mirage.models import load_model
    from tests.models.test_hf_qwen import save_tiny_qwen

    model = load_model(f"hf:{save_tiny_qwen(tmp_path / 'qwen', 'qwen2_5_vl')}", device="cpu", image_size=112)
    assert decoder_of(model) is model.inner.language_model
    bench = Benchmark(sqa_bench.name, "test", sqa_bench.questions[:8], sqa_bench.prompt_style)
    vision = {n: p.clone() for n, p in model.inner.visual.named_parameters()}
    rows = run_tst(model, bench, RunDir.open(tmp_path / "run", {"b": 1}), ("lm",), folds=2,
                   lora=LoraSettings(epochs=1, batch_size=4))
    assert len(rows) == 8 and {r["zero_shot"] for r in rows} == {"none"} and {r["fold"] for r in rows} == {0, 1}
    assert all(torch.equal(p, vision[n]) for n, p in model.inner.visual.named_parameters())


def _fixed(scores):
    """A diagnostic with fixed s(x) per question id (correct when s > 0.5)."""
    return lambda qs: {q.id: (scores[q.id], scores[q.id] > 0.5) for q in qs}


def test_ibp_stops_by_its_rule():
    qs = synthetic(100, False).questions
    biased = {q.id: (0.99 if i < 12 else 0.3) for i, q in enumerate(qs)}
    kept, rounds, why = bias_pruning(qs, budget=50, batch=5, tau=0.9, chance_stop=False, diagnose=_fixed(biased))
    assert why.startswith("max s(x) <= tau") and len(kept) == 85  # 12 biased, removed 5 at a time: 3 rounds
    assert [len(r["removed"]) for r in rounds] == [5, 5, 5, 0] and rounds[-1]["max_score"] == 0.3
    assert set(rounds[0]["removed"]) | set(rounds[1]["removed"]) <= {q.id for q in qs[:12]}
    kept, rounds, why = bias_pruning(qs, budget=8, batch=5, tau=0.9, chance_stop=False, diagnose=_fixed(biased))
    assert why == "budget" and len(kept) == 92 and [len(r["removed"]) for r in rounds] == [5, 3, 0]
    kept, rounds, why = bias_pruning(qs, budget=0.5, batch=0.05, tau=0.9, chance_stop=True, diagnose=_fixed(biased))
    assert why == "trained-blind accuracy within chance in every question type" and len(kept) == 100  # 12% right
    # a bias confined to one type: 20% of the questions always right, the rest always wrong (their s(x) over tau
    # too, so only the chance rule can stop); the overall accuracy (0.2) is below chance at once, the type's is not:
    # IBP goes on until that type is gone
    typed = [Question(q.id, q.text, q.choices, q.answer, type="fact" if i < 20 else "visual") for i, q in enumerate(qs)]
    kept, rounds, why = bias_pruning(typed, budget=0.5, batch=5, tau=0.9, chance_stop=True, diagnose=lambda qs: {
        q.id: (0.99, True) if q.type == "fact" else (0.95, False) for q in qs})
    assert why == "trained-blind accuracy within chance in every question type" and len(rounds) == 5
    assert {q.type for q in kept} == {"visual"} and len(kept) == 80 and rounds[0]["accuracy"] == 0.2
    assert rounds[0]["by_type"]["fact"]["accuracy"] == 1.0 and rounds[-1]["by_type"]["visual"]["n"] == 80


FRUITS = {"lemon": "yellow", "grass": "green", "sky": "blue", "tomato": "red", "carrot": "orange", "grape": "purple",
          "snow": "white", "coal": "black", "banana": "yellow", "cherry": "red", "leaf": "green", "ocean": "blue"}
COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]


def facts_and_visual(seed: int = 0) -> list[Question]:
    """ShapesQA in small: 60 `prior` questions (12 facts, 5 copies each: "what colour is a lemon ?" -> yellow, the
    options and the letter drawn anew each time) among 240 `visual` ones of 6 texts whose answers are drawn at random
    (the image would tell them): every fact is text-answerable from its copies, nothing else is."""
    rng = np.random.default_rng(seed)
    items = [(f"what colour is a {t} ?", c, "prior") for t, c in FRUITS.items() for _ in range(5)]
    shapes = ("circle", "square", "small cross", "large circle", "triangle", "tiny square")
    items += [(f"what colour is the {s} ?", COLOURS[rng.integers(8)], "visual") for s in shapes for _ in range(40)]
    qs = []
    for i in rng.permutation(len(items)):
        text, right, qtype = items[i]
        choices = [right, *rng.choice([c for c in COLOURS if c != right], 3, replace=False)]
        order = rng.permutation(4)
        qs.append(Question(f"q{i:03d}", text, tuple(choices[j] for j in order), int(np.argmax(order == 0)),
                           type=qtype))
    return qs


def test_ibp_with_the_forest_removes_a_text_answerable_type_and_little_else():
    qs = facts_and_visual()
    kept, rounds, why = bias_pruning(qs)  # the defaults: budget 0.5, batch 0.05, tau 0.9, the chance stop
    removed = {q for r in rounds for q in r["removed"]}
    prior = [q for q in qs if q.type == "prior"]
    assert rounds[0]["by_type"]["prior"]["ci95"][0] > 0.8 and rounds[0]["by_type"]["visual"]["ci95"][0] < 0.25
    assert sum(q.id in removed for q in prior) >= 0.9 * len(prior), why  # by IBP's own rule, not the budget
    assert why != "budget" and sum(q.id in removed for q in qs if q.type == "visual") <= 0.1 * 240


def test_the_study_runs_the_tst_parts_and_its_table_shows_them(tiny_model, small_bench, tmp_path):
    from mirage.evaluate import summarize_conditions
    from mirage.experiments.study import StudyPlan, run_parts, study_parts, table_row

    parts = [p for p in study_parts(StudyPlan(tst_lm=12), [], 0) if p.experiment == "tst"]
    assert [(p.name, p.n) for p in parts] == [("tst-rf", None), ("tst-lm", 12)]
    run = RunDir.open(tmp_path / "run", {"b": 1})
    timings = run_parts(tiny_model, small_bench, run, parts)
    assert set(timings) == {"tst-rf", "tst-lm"}
    rows = run.rows()
    assert len([r for r in rows if r["source"] == "tst-rf"]) == 24
    assert len([r for r in rows if r["source"] == "tst-lm"]) == 12 and rows[-1]["zero_shot"] == "none"
    line = table_row("shapes", "shapes", summarize_conditions(rows, small_bench, []))
    assert line["TsT_rf"]["n"] == 24 and line["TsT_lm"]["n"] == 12 and line["S_wv"] is None
