"""Tests for mirage.stats: bootstrap CIs, exact McNemar, and run summaries."""

import math
import random

import pytest

from mirage.stats import accuracy_ci, mcnemar_exact, paired_difference, summarize


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


def test_accuracy_ci_deterministic_for_seed():
    rng = random.Random(1)
    correct = [rng.random() < 0.7 for _ in range(200)]
    assert accuracy_ci(correct, seed=3) == accuracy_ci(correct, seed=3)
    assert accuracy_ci(correct, seed=3) != accuracy_ci(correct, seed=4)


def test_accuracy_ci_degenerate():
    assert accuracy_ci([True] * 7) == (1.0, 1.0, 1.0)
    assert accuracy_ci([False] * 7) == (0.0, 0.0, 0.0)
    assert all(math.isnan(x) for x in accuracy_ci([]))


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
    assert set(out) == {"n", "accuracy", "ci95", "by_type", "paired"}
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
    assert paired["noise"]["real"] == {"n": 4, "a_only": 1, "b_only": 2, "p": 1.0}
    assert paired["noise"]["blank"] == {"n": 3, "a_only": 2, "b_only": 1, "p": 1.0}
    assert paired["blank"]["real"] == {"n": 3, "a_only": 0, "b_only": 1, "p": 1.0}
    assert paired["real"]["blank"] == {"n": 3, "a_only": 1, "b_only": 0, "p": 1.0}


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
