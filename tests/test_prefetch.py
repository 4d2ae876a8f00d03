"""Prefetching: the items' order and results whatever the threads' timing; errors at their turn; evaluation rows
the same with and without worker threads and length-ordered batches."""

from __future__ import annotations

import random
import threading
import time

import pytest

from mirage.conditions import parse_conditions
from mirage.evaluate import evaluate_conditions
from mirage.prefetch import by_length, length_batches, prefetched, prompt_batches
from mirage.runs import RunDir


def _slow_square(x):
    time.sleep(random.Random(x).random() * 0.01)  # finish out of order
    return x * x, threading.current_thread().name


@pytest.mark.parametrize("workers", [0, 1, 4])
def test_prefetched_keeps_order_and_results(workers):
    got = list(prefetched(_slow_square, range(30), workers))
    assert [(i, r[0]) for i, r in got] == [(i, i * i) for i in range(30)]
    names = {r[1] for _, r in got}
    assert (names == {threading.current_thread().name}) == (workers == 0)


def test_prefetched_raises_at_the_failing_items_turn():
    def make(x):
        if x == 5:
            raise ValueError("item 5 is bad")
        return x

    seen = []
    with pytest.raises(ValueError, match="item 5"):
        for item, _ in prefetched(make, range(10), 3):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetched_runs_ahead_but_bounded_and_stops_when_closed():
    started = []

    def make(x):
        started.append(x)
        return x

    it = prefetched(make, range(100), 2, ahead=3)
    assert next(it) == (0, 0)
    time.sleep(0.05)
    assert len(started) <= 4  # the one yielded plus `ahead` in flight
    it.close()
    n = len(started)
    time.sleep(0.05)
    assert len(started) == n < 100


def test_by_length_is_stable_and_checks_sizes():
    assert by_length(list("abcde"), [3, 1, 3, 0, 1]) == list("dbeac")
    with pytest.raises(ValueError, match="2 items but 3 lengths"):
        by_length(["a", "b"], [1, 2, 3])


def test_length_batches_fill_one_length_batches_first():
    lengths = [5, 7, 5, 7, 5, 6, 7, 5, 9, 5]  # five of length 5, three of 7
    got = length_batches(list(range(10)), lengths, 2)
    assert got == [[0, 2], [4, 7], [1, 3], [9, 5], [6, 8]]  # 5,5 | 5,5 | 7,7 | then the rest by length: 5,6 | 7,9
    assert length_batches(list(range(10)), lengths, 20) == [[0, 2, 4, 7, 9, 5, 1, 3, 6, 8]]
    assert length_batches([], [], 3) == []


def test_prompt_batches_group_equal_lengths(tiny_model, small_bench):
    batches = prompt_batches(tiny_model, small_bench, small_bench.questions, 4)
    assert [len(b) for b in batches] == [4] * 6
    length = {q.id: len(tiny_model.tokenizer(small_bench.prompt(q), add_special_tokens=False).input_ids)
              for q in small_bench}
    assert len(set(length.values())) > 1  # else this test shows nothing
    # every question once; one-length batches first
    assert sorted(q.id for b in batches for q in b) == sorted(q.id for q in small_bench)
    spans = [len({length[q.id] for q in b}) for b in batches]
    assert spans == sorted(spans) and spans[0] == 1


def test_evaluation_rows_same_with_worker_threads(tiny_model, small_bench, tmp_path):
    conds = parse_conditions("real,blank,noise,wrong")
    inline = evaluate_conditions(tiny_model, small_bench, conds, batch_size=5, quiet=True, workers=0)
    threaded = evaluate_conditions(tiny_model, small_bench, conds, batch_size=5, quiet=True, workers=3)
    assert threaded == inline  # same rows, same (question) order
    assert [(r["source"], r["question_id"]) for r in inline] == [
        (c.name, q.id) for c in conds for q in small_bench]
    run = RunDir.open(tmp_path / "run", {"x": 1})
    stored = evaluate_conditions(tiny_model, small_bench, conds, batch_size=5, quiet=True, workers=3, run=run)
    key = lambda r: (r["source"], r["question_id"])  # noqa: E731
    assert sorted(stored, key=key) == sorted(inline, key=key)


def test_score_batches_batches_and_prepares_only_the_pending(tmp_path):
    from mirage.benchmarks.question import Question
    from mirage.evaluate import pending, score_batches

    qs = [Question(f"q{i}", "t", ("a", "b"), 0) for i in range(7)]
    run = RunDir.open(tmp_path / "run", {"x": 1})
    run.append([{"question_id": "q3", "source": "s"}])  # done before: neither batched nor prepared again
    batched, prepared_for = [], []

    def batching(todo):
        batched.append([q.id for q in todo])
        return [todo[::-1][i : i + 4] for i in range(0, len(todo), 4)]  # some order of the caller's choosing

    def prepare(batch):
        prepared_for.append([q.id for q in batch])
        return [q.id.upper() for q in batch]

    def rows_for(batch, prepared):
        assert prepared == [q.id.upper() for q in batch]  # each batch gets its own preparation
        return [{"question_id": q.id, "source": "s"} for q in batch]

    batches = [("s", b) for b in batching(pending(qs, "s", run))]
    new = score_batches(batches, lambda _, batch, prepared: rows_for(batch, prepared), run,
                        ahead=lambda items: prefetched(lambda item: prepare(item[1]), items, 2))
    assert batched == [["q0", "q1", "q2", "q4", "q5", "q6"]]
    assert [r["question_id"] for r in new] == ["q6", "q5", "q4", "q2", "q1", "q0"]
    assert sorted(map(tuple, prepared_for)) == sorted([("q6", "q5", "q4", "q2"), ("q1", "q0")])
    assert sorted(r["question_id"] for r in run.rows()) == [f"q{i}" for i in range(7)]  # each once


def test_one_prefetch_pipeline_spans_the_conditions(tiny_model, small_bench, monkeypatch):
    """The next condition's first batch is prepared while the last ones of the condition before are scored: one
    pipeline over every (condition, batch), not one per condition that starts empty (the GPU waiting on the host
    once per condition)."""
    import importlib

    evaluate_module = importlib.import_module("mirage.evaluate")  # the package's `evaluate` is the function

    calls = []
    real = evaluate_module.visual_batches

    def spy(model, visual_of, items, workers=None):
        calls.append([name for name, _ in items])
        yield from real(model, visual_of, items, workers)

    monkeypatch.setattr(evaluate_module, "visual_batches", spy)
    conds = parse_conditions("real,blank")
    rows = evaluate_conditions(tiny_model, small_bench, conds, batch_size=8, quiet=True, workers=2)
    assert calls == [["real"] * 3 + ["blank"] * 3]
    assert [(r["source"], r["question_id"]) for r in rows] == [(c.name, q.id) for c in conds for q in small_bench]


def test_late_rows_are_read_after_the_next_batch_is_queued_and_kept_on_an_error(tmp_path):
    """`score_batches` with `rows_for` returning a function (`score_later`): batch k's rows are read after batch k+1
    is launched (its device work queued first), every row lands once and in order, and when a batch fails the one
    before it is still written."""
    from mirage.benchmarks.question import Question
    from mirage.evaluate import score_batches

    qs = [Question(f"q{i}", "t", ("a", "b"), 0) for i in range(6)]
    events = []

    def rows_for(source, batch, fail_at=None):
        if batch[0].id == fail_at:
            raise RuntimeError(f"batch at {fail_at} failed")
        events.append(("launch", batch[0].id))

        def read():
            events.append(("read", batch[0].id))
            return [{"question_id": q.id, "source": source} for q in batch]
        return read

    batches = [("s", qs[i : i + 2]) for i in range(0, 6, 2)]
    run = RunDir.open(tmp_path / "run", {"x": 1})
    rows = score_batches(batches, rows_for, run)
    assert events == [("launch", "q0"), ("launch", "q2"), ("read", "q0"), ("launch", "q4"), ("read", "q2"),
                      ("read", "q4")]
    assert [r["question_id"] for r in rows] == [q.id for q in qs] == [r["question_id"] for r in run.rows()]
    run2 = RunDir.open(tmp_path / "run2", {"x": 1})
    with pytest.raises(RuntimeError, match="batch at q4 failed"):
        score_batches(batches, lambda s, b: rows_for(s, b, fail_at="q4"), run2)
    assert [r["question_id"] for r in run2.rows()] == ["q0", "q1", "q2", "q3"]  # nothing scored is lost
