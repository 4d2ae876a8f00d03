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
