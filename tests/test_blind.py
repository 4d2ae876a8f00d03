"""MMStar's image-free measures (mirage.blind) against a hand computation on a synthetic run."""


from mirage.blind import blind_measures
from mirage.stats import paired_difference_ci, wilson_interval


def rows(spec: dict[str, str], types: str) -> list[dict]:
    """spec: source -> a string of 1/0 per question (q0, q1, ...); types: one letter per question."""
    return [{"question_id": f"q{i}", "source": s, "correct": c == "1", "type": types[i]}
            for s, outcomes in spec.items() for i, c in enumerate(outcomes)]


SPEC = {"real": "1111111110", "none": "1101100100", "text-model": "1001000000", "blank": "1100000000"}
TYPES = "aaaaabbbbb"


def test_mg_ml_by_hand():
    b = blind_measures(rows(SPEC, TYPES))
    # S_v 9/10, S_wv 5/10, S_t 2/10 -> MG 0.4, ML 0.3
    assert (b["S_v"]["value"], b["S_wv"]["value"], b["S_t"]["value"]) == (0.9, 0.5, 0.2)
    assert b["MG"]["value"] == 0.4 and b["ML"]["value"] == 0.3 and b["ML"]["difference"] == 0.3
    assert b["S_v"]["ci95"] == [round(x, 4) for x in wilson_interval(9, 10)]
    real, none = [c == "1" for c in SPEC["real"]], [c == "1" for c in SPEC["none"]]
    assert b["MG"]["ci95"] == [round(x, 4) for x in paired_difference_ci(real, none)[1:]]
    # type a (q0-q4): real 5/5, none 4/5, text 2/5 -> MG 0.2, ML 0.4
    a = b["by_type"]["a"]
    assert (a["S_v"]["value"], a["S_wv"]["value"], a["S_t"]["value"], a["MG"]["value"], a["ML"]["value"]) == \
        (1.0, 0.8, 0.4, 0.2, 0.4)
    # type b: none 1/5, text 0/5, real 4/5
    assert b["by_type"]["b"]["MG"]["value"] == 0.6 and b["by_type"]["b"]["ML"]["value"] == 0.2
    assert "Wilson" in b["intervals"]["accuracy"] and b["sources"]["S_wv"] == "none"


def test_ml_clips_at_zero_and_its_interval_too():
    spec = {"none": "1000000000", "text-model": "1111100000"}
    b = blind_measures(rows(spec, "a" * 10))
    assert b["ML"]["value"] == 0.0 and b["ML"]["difference"] == -0.4
    lo, hi = b["ML"]["ci95"]
    assert lo == 0.0 and 0.0 <= hi < 0.1
    assert "MG" not in b and "S_v" not in b  # no real rows: only what its sources allow


def test_paired_on_shared_questions_only():
    spec = {"real": "1111111111", "none": "00000"}  # none on q0-q4 only
    b = blind_measures(rows(spec, "a" * 10))
    assert b["MG"]["n"] == 5 and b["MG"]["value"] == 1.0 and b["S_v"]["n"] == 10


def test_absent_without_image_free_sources():
    assert blind_measures(rows({"real": "11", "blank": "01"}, "aa")) is None


def test_soft_prompt_control_by_hand():
    """Per scope: each crafted input against the soft prompt (paired, on shared questions) and blank; `within_soft`
    when the crafted input's advantage is not significant; the steps of the questions that ended right; one
    sentence per crafted input, saying which."""
    from mirage.blind import soft_prompt_control
    from mirage.stats import paired_difference

    n = 40
    spec = {"blank": "0" * 30 + "1" * 10,
            "features-question": "1" * 40, "soft-prompt-question": "1" * 38 + "00",  # within: 1.0 vs 0.95
            "features-universal": "1" * 36 + "0000", "soft-prompt-universal": "0" * 30 + "1" * 10,  # exceeds
            "features-universal-train": "1" * 40, "features-question-clip": "1" * 40}  # neither is compared
    data = rows(spec, "a" * n)
    for r in data:
        if r["source"].endswith("-question"):
            r["steps"] = 3 + int(r["question_id"][1:]) % 4 if r["source"].startswith("features") else 9
    assert soft_prompt_control([r for r in data if not r["source"].startswith("soft")]) is None
    c = soft_prompt_control(data)
    q, u = c["question"]["sources"], c["universal"]["sources"]
    assert set(q) == {"features-question", "soft-prompt-question"} and set(u) == {"features-universal",
                                                                                 "soft-prompt-universal"}
    outcome = lambda s: [ch == "1" for ch in spec[s]]  # noqa: E731
    diff = paired_difference(outcome("features-question"), outcome("soft-prompt-question"))
    assert q["features-question"]["vs_soft"] == {"n": n, "difference": diff["difference"], "ci95": diff["ci95"],
                                                 "p": diff["mcnemar"]["p"]}
    assert q["features-question"]["within_soft"] and not u["features-universal"]["within_soft"]
    assert q["soft-prompt-question"]["vs_blank"]["value"] == 0.7  # 0.95 - 0.25
    assert q["soft-prompt-question"]["vs_blank"]["ci95"] == [
        round(x, 4) for x in paired_difference_ci(outcome("soft-prompt-question"), outcome("blank"))[1:]]
    steps = q["features-question"]["steps"]  # 3, 4, 5, 6 repeating: ten of each
    assert (steps["n_right"], steps["median"], steps["max"], steps["counts"]) == (40, 4.5, 6, {"3": 10, "4": 10,
                                                                                             "5": 10, "6": 10})
    assert q["soft-prompt-question"]["steps"]["n_right"] == 38  # the two it never got right do not count
    assert "lies within the soft prompt's" in c["question"]["sentences"][0]
    assert "Median steps to a right answer: 4.5 against the soft prompt's 9" in c["question"]["sentences"][0]
    assert "exceeds the soft prompt's" in c["universal"]["sentences"][0]
    flat = [r | {"source": "pixels-universal"} for r in data if r["source"] == "blank"]  # blank's own answers
    (sentence,) = soft_prompt_control(data + flat)["universal"]["sentences"][1:]
    assert sentence.startswith("pixels-universal: no gain over blank to explain (+0.000")


def test_text_only_match_sets_gains_side_by_side():
    """A universal input's gain over blank on a set with no image beside its gain on a vision benchmark: a match
    when the 95% intervals overlap, said in words; a benchmark without the input is left out."""
    from mirage.blind import text_only_match

    gain = lambda d, lo, hi: {"n": 100, "difference": d, "ci95": [lo, hi]}  # noqa: E731
    table = [{"benchmark": "shapes", "universal_gain": {"pixels-universal": gain(0.02, -0.01, 0.05),
                                                        "features-universal": gain(0.30, 0.25, 0.35)}},
             {"benchmark": "file:text.jsonl", "no_images": True,
              "universal_gain": {"pixels-universal": gain(0.04, 0.0, 0.08), "features-universal": gain(0.0, -0.03, 0.03)}},
             {"benchmark": "mmstar"}]
    out = {m["source"]: m for m in text_only_match(table)}
    assert set(out) == {"pixels-universal", "features-universal"}
    assert out["pixels-universal"]["match"] and not out["features-universal"]["match"]
    assert out["pixels-universal"]["vision"] == "shapes" and out["pixels-universal"]["no_images"] == "file:text.jsonl"
    assert "which has no image to see, +0.040 [+0.000, +0.080], matches its gain on shapes" in \
        out["pixels-universal"]["sentence"]
    assert "do not overlap" in out["features-universal"]["sentence"]
    assert text_only_match(table[:1] + table[2:]) == []  # no text-only benchmark: nothing to set beside
# The shuffle decomposition (Multi-modal Data Spectrum): pair, image alone, text alone, neither
SHUFFLE = {"real": "1111111100", "image-only": "1100110000", "wrong": "1010001100", "both": "1000100000"}


def test_shuffle_decomposition_by_hand():
    from mirage.blind import shuffle_decomposition

    chance = {f"q{i}": (0.25 if i < 5 else 0.5) for i in range(10)}
    d = shuffle_decomposition(rows(SHUFFLE, TYPES), chance)
    # pair 8/10, image alone 4/10, text alone 4/10, neither 2/10
    assert [d[m]["value"] for m in ("pair", "image_only", "text_only", "neither")] == [0.8, 0.4, 0.4, 0.2]
    assert d["image_only"]["ci95"] == [round(x, 4) for x in wilson_interval(4, 10)]
    # image adds to text = pair - text alone = 0.4; text adds to image = pair - image alone = 0.4;
    # either alone: q0, q1, q2, q4, q5, q6, q7 -> 7/10; the pair beyond it: 0.8 - 0.7 = 0.1
    assert (d["image_adds"]["value"], d["text_adds"]["value"], d["pair_beyond"]["value"]) == (0.4, 0.4, 0.1)
    real = [c == "1" for c in SHUFFLE["real"]]
    either = [a == "1" or b == "1" for a, b in zip(SHUFFLE["image-only"], SHUFFLE["wrong"])]
    assert sum(either) == 7
    assert d["pair_beyond"]["ci95"] == [round(x, 4) for x in paired_difference_ci(real, either)[1:]]
    assert d["image_adds"]["ci95"] == [
        round(x, 4) for x in paired_difference_ci(real, [c == "1" for c in SHUFFLE["wrong"]])[1:]]
    assert d["chance"] == {"n": 10, "value": 0.375}
    # type b (q5-q9): pair 3/5, image alone 1/5, text alone 2/5 (q6, q7), neither 0; either alone q5, q6, q7
    b = d["by_type"]["b"]
    assert [b[m]["value"] for m in ("pair", "image_only", "text_only", "neither")] == [0.6, 0.2, 0.4, 0.0]
    assert (b["image_adds"]["value"], b["text_adds"]["value"], b["pair_beyond"]["value"]) == (0.2, 0.4, 0.0)
    assert b["chance"]["value"] == 0.5 and d["sources"]["image_only"] == "image-only"


def test_shuffle_decomposition_needs_a_shuffle_and_pairs_what_exists():
    from mirage.blind import shuffle_decomposition

    assert shuffle_decomposition(rows({"real": "11", "wrong": "01"}, "aa")) is None
    d = shuffle_decomposition(rows({"real": "1111", "image-only": "10"}, "aaaa"))
    assert d["text_adds"]["n"] == 2 and d["text_adds"]["value"] == 0.5 and d["pair"]["n"] == 4
    assert "image_adds" not in d and "pair_beyond" not in d and "neither" not in d and "chance" not in d


def test_run_difference_by_hand():
    """Every measure of run B minus run A on the questions both have: accuracies with Newcombe's paired interval,
    differences of differences (MG) with a paired t interval on the per-question differences."""
    from scipy.stats import t

    from mirage.blind import run_difference

    a = rows({"real": "1111100000", "none": "1010100000"}, "a" * 10)
    b = rows({"real": "1111111000", "none": "1010000000", "blank": "1"}, "a" * 10)
    d = run_difference(a, b)["measures"]
    assert "blank" not in d  # a source of one run only
    real_a, real_b = [c == "1" for c in "1111100000"], [c == "1" for c in "1111111000"]
    assert d["real"] == d["S_v"] == {"n": 10, "a": 0.5, "b": 0.7, "difference": 0.2, "ci95": [
        round(x, 4) for x in paired_difference_ci(real_b, real_a)[1:]]}
    # MG per question: A real - none = 0101000000 -> 0.2; B = 0101111000 -> 0.5; B - A = 0000111000
    diffs = [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    mean = sum(diffs) / 10
    sd = (sum((x - mean) ** 2 for x in diffs) / 9) ** 0.5
    half = t.ppf(0.975, 9) * sd / 10 ** 0.5
    assert d["MG"]["a"] == 0.2 and d["MG"]["b"] == 0.5 and d["MG"]["difference"] == 0.3
    assert d["MG"]["ci95"] == [round(mean - half, 4), round(mean + half, 4)]
    assert "S_t" not in d and "ML" not in d
