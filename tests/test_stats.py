"""Tests for mirage.stats: Wilson intervals, paired (Newcombe) intervals, exact McNemar, and run summaries."""

import math
import random

import pytest

import numpy as np

from mirage.stats import (accuracy_ci, mcnemar_exact, paired_difference, paired_difference_ci, summarize,
                          wilson_interval)


def test_accuracy_ci_value_is_mean_and_interval_contains_it():
    correct = [True] * 30 + [False] * 20
    acc, lo, hi = accuracy_ci(correct)
    assert acc == pytest.approx(0.6)
    assert lo < acc < hi


def test_accuracy_ci_narrows_with_n():
    _, lo_small, hi_small = accuracy_ci([True, False] * 10)
    _, lo_big, hi_big = accuracy_ci([True, False] * 1000)
    assert hi_big - lo_big < (hi_small - lo_small) / 5


def test_accuracy_ci_level_widens_interval():
    correct = [True, True, False] * 30
    _, lo90, hi90 = accuracy_ci(correct, level=0.90)
    _, lo99, hi99 = accuracy_ci(correct, level=0.99)
    assert lo99 < lo90 and hi99 > hi90


def test_wilson_hand_computed_and_order_free():
    # 30/50: the textbook Wilson interval [0.4618, 0.7239]
    assert wilson_interval(30, 50) == pytest.approx((0.4618, 0.7239), abs=1e-4)
    rng = random.Random(1)
    correct = [rng.random() < 0.7 for _ in range(200)]
    assert accuracy_ci(correct) == accuracy_ci(sorted(correct))  # no resampling: nothing depends on order


def test_accuracy_ci_does_not_collapse_at_0_and_1():
    # changed with the move from the bootstrap (which gave [1, 1] here) to Wilson
    acc, lo, hi = accuracy_ci([True] * 1000)
    assert acc == hi == 1.0 and lo < 1.0 and lo == pytest.approx(1000 / (1000 + 1.959964**2), abs=1e-6)
    acc, lo, hi = accuracy_ci([False] * 7)
    assert acc == lo == 0.0 and 0.3 < hi < 0.4  # 0/7: [0, 0.354]
    assert all(math.isnan(x) for x in accuracy_ci([]))


def _coverage(interval, truth, draws):
    return np.mean([interval(*d)[0] <= truth <= interval(*d)[1] for d in draws])


def test_wilson_and_paired_intervals_cover_at_the_nominal_level():
    """Simulated coverage near 95%, also near the boundary where a bootstrap or Wald interval falls short."""
    rng = np.random.default_rng(0)
    for p, n in ((0.97, 60), (0.5, 40)):
        ks = rng.binomial(n, p, size=2000)
        assert 0.93 <= _coverage(lambda k: wilson_interval(k, n), p, [(k,) for k in ks]) <= 0.985
    # paired: both right 0.80, only a 0.12, only b 0.03, neither 0.05 -> true difference 0.09
    cells = rng.multinomial(80, [0.80, 0.12, 0.03, 0.05], size=1000)
    draws = [([True] * c[0] + [True] * c[1] + [False] * c[2] + [False] * c[3],
              [True] * c[0] + [False] * c[1] + [True] * c[2] + [False] * c[3]) for c in cells]
    cov = _coverage(lambda a, b: paired_difference_ci(a, b)[1:], 0.09, draws)
    assert 0.93 <= cov <= 0.985


def test_paired_interval_at_the_boundary():
    d, lo, hi = paired_difference_ci([True] * 50, [True] * 50)
    assert d == 0 and lo < 0 < hi  # no disagreement is not certainty
    d, lo, hi = paired_difference_ci([True] * 50, [False] * 50)
    assert d == hi == 1.0 and 0.85 < lo < 1.0
    d, lo, hi = paired_difference_ci([True, True, False, True], [False, True, False, False])
    assert -1 <= lo < d == 0.5 < hi <= 1
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_ci([True], [])


def test_mcnemar_hand_computed():
    # 8 questions only a gets right, 1 only b, 5 both right, 3 both wrong.
    a = [True] * 8 + [False] * 1 + [True] * 5 + [False] * 3
    b = [False] * 8 + [True] * 1 + [True] * 5 + [False] * 3
    res = mcnemar_exact(a, b)
    expected_p = 2 * (math.comb(9, 0) + math.comb(9, 1)) / 2**9
    assert res == {"n": 17, "a_only": 8, "b_only": 1, "p": pytest.approx(expected_p)}
    assert expected_p == 0.0390625


def test_mcnemar_symmetric():
    a = [True, True, True, False, False, True, False]
    b = [False, False, True, True, False, False, False]
    ab, ba = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert (ab["a_only"], ab["b_only"]) == (ba["b_only"], ba["a_only"])
    assert ab["p"] == pytest.approx(ba["p"])


def test_mcnemar_no_discordant_pairs():
    res = mcnemar_exact([True, False, True], [True, False, True])
    assert res == {"n": 3, "a_only": 0, "b_only": 0, "p": 1.0}


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar_exact([True], [True, False])


def _rows():
    spec = {
        "real": {"q1": (True, "a"), "q2": (True, "a"), "q3": (False, "b"), "q4": (True, "b")},
        "blank": {"q1": (True, "a"), "q2": (False, "a"), "q3": (False, "b")},
        "noise": {"q1": (False, "a"), "q2": (True, "a"), "q3": (True, "b"), "q4": (False, "b"), "q5": (True, "c")},
    }
    return [
        {"question_id": q, "source": s, "correct": c, "type": t}
        for s, qs in spec.items()
        for q, (c, t) in qs.items()
    ]


def test_summarize_numbers():
    out = summarize(_rows())
    assert set(out) == {"n", "accuracy", "ci95", "by_type", "paired", "intervals"}
    assert "Wilson" in out["intervals"]["accuracy"] and "Newcombe" in out["intervals"]["difference"]
    assert list(out["n"]) == ["real", "blank", "noise"]
    assert out["n"] == {"real": 4, "blank": 3, "noise": 5}
    assert out["accuracy"] == {"real": 0.75, "blank": 0.3333, "noise": 0.6}
    for s, (lo, hi) in out["ci95"].items():
        assert lo <= out["accuracy"][s] <= hi
    assert out["by_type"] == {
        "real": {"a": 1.0, "b": 0.5},
        "blank": {"a": 0.5, "b": 0.0},
        "noise": {"a": 0.5, "b": 0.5, "c": 1.0},
    }


def test_summarize_paired_only_on_shared_questions():
    paired = summarize(_rows())["paired"]
    assert set(paired["real"]) == {"blank"}  # never against itself
    assert set(paired["blank"]) == {"real"}
    # q4 and q5 are missing from blank, q5 from real: those pairs are left out.
    test = lambda d: {k: d[k] for k in ("n", "a_only", "b_only", "p")}
    assert test(paired["noise"]["real"]) == {"n": 4, "a_only": 1, "b_only": 2, "p": 1.0}
    assert test(paired["noise"]["blank"]) == {"n": 3, "a_only": 2, "b_only": 1, "p": 1.0}
    assert test(paired["blank"]["real"]) == {"n": 3, "a_only": 0, "b_only": 1, "p": 1.0}
    assert test(paired["real"]["blank"]) == {"n": 3, "a_only": 1, "b_only": 0, "p": 1.0}
    # the difference on the shared questions only, with its paired interval around it
    for src, base, d in (("noise", "real", -0.25), ("noise", "blank", 0.3333), ("real", "blank", 0.3333)):
        lo, hi = paired[src][base]["ci95"]
        assert paired[src][base]["difference"] == d and lo < d < hi


def test_summarize_without_baselines_has_empty_paired():
    rows = [{"question_id": "q1", "source": "noise", "correct": True, "type": "a"}]
    assert summarize(rows)["paired"] == {"noise": {}}


def test_summarize_small_p_keeps_significant_digits():
    rows = [{"question_id": f"q{i}", "source": s, "correct": s == "real", "type": "a"}
            for i in range(30) for s in ("real", "blank")]
    p = summarize(rows)["paired"]["blank"]["real"]["p"]
    assert 0 < p < 1e-6


def test_summarize_independent_of_row_order():
    rng = random.Random(0)
    rows = [
        {"question_id": f"q{i:03d}", "source": s, "correct": rng.random() < 0.6, "type": rng.choice("xyz")}
        for s in ("real", "blank", "noise")
        for i in range(120)
    ]
    expected = summarize(rows)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    assert summarize(shuffled) == expected


def test_summarize_rejects_duplicate_rows():
    rows = _rows() + [{"question_id": "q1", "source": "real", "correct": False, "type": "a"}]
    with pytest.raises(ValueError, match="duplicate"):
        summarize(rows)


def test_paired_difference():
    d = paired_difference([True, True, True, False], [False, False, True, False])
    assert d["difference"] == 0.5 and d["ci95"][0] <= 0.5 <= d["ci95"][1]
    assert d["mcnemar"]["a_only"] == 2 and d["mcnemar"]["b_only"] == 0
