"""MMMU: loading the real fixture rows, the official LLaVA-1.5 prompt, and the ported answer parsing."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.mmmu import build_prompt, load_mmmu
from mirage.benchmarks.mmmu_judge import (eval_multi_choice, eval_open, extract_numbers, parse_multi_choice_response,
                                          parse_open_response)

FIXTURES = Path("/work/shared/fixtures/mmmu")
# The fixtures are shared, not part of the repository; the parser tests below do not need them.
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="MMMU fixture not available")

EXPECTED = {  # id -> (subject, answer index), in load order: subject, then file order
    "validation_Biology_1": ("Biology", 3), "validation_Clinical_Medicine_2": ("Clinical_Medicine", 3),
    "validation_Clinical_Medicine_23": ("Clinical_Medicine", 0), "validation_Energy_and_Power_10": ("Energy_and_Power", 1),
    "validation_Energy_and_Power_2": ("Energy_and_Power", 0), "validation_Energy_and_Power_24": ("Energy_and_Power", 0),
    "validation_Music_11": ("Music", 2),
}
ORGANS = {"A": "Kidneys", "B": "Small Intestines", "C": "Liver", "D": "Spine"}  # validation_Clinical_Medicine_23
EVAPORATOR = {"A": "E1 + E2 + E3", "B": "E3", "C": "E1 ", "D": "E1 + E2 "}  # validation_Energy_and_Power_24
ABCD = ["A", "B", "C", "D"]


def fixture_rows(subject: str) -> list[dict]:
    return pq.read_table(FIXTURES / subject / "validation-00000-of-00001.parquet").to_pylist()


# ----------------------------------------------------------------------------------------------- loading


@needs_fixtures
def test_load_fixture():
    bench = load_mmmu("validation", data_dir=FIXTURES)
    assert bench.name == "mmmu" and bench.split == "validation"
    assert [q.id for q in bench] == list(EXPECTED)
    for q in bench:
        subject, answer = EXPECTED[q.id]
        assert q.kind == "mc" and q.type == subject and q.answer == answer and len(q.choices) == 4
        assert len(q.images) == 1 and q.images[0][:8] == b"\x89PNG\r\n\x1a\n"
        assert q.image(0).mode == "RGB"
        assert "<image 1>" in q.text  # placeholders stay, as in the official prompt
        assert q.meta["all_choices"] == ABCD and q.meta["index2ans"]["A"] == q.choices[0]
        assert q.meta["question_type"] == "multiple-choice" and q.meta["image_numbers"] == [1]
    organs = bench[2]
    assert organs.choices == tuple(ORGANS.values()) and organs.answer_letter == "A"
    assert organs.meta["options"] == "['Kidneys', 'Small Intestines', 'Liver', 'Spine']"


@needs_fixtures
def test_registered_and_subjects_filter():
    bench = load_benchmark("mmmu", split="validation", data_dir=str(FIXTURES), subjects=["Music"])
    assert [q.id for q in bench] == ["validation_Music_11"]


@needs_fixtures
def test_unknown_subject_did_you_mean():
    with pytest.raises(ValueError, match=r"did you mean 'Music'.*allowed: Accounting"):
        load_mmmu(data_dir=FIXTURES, subjects=["Muisc"])


@needs_fixtures
def test_missing_dir_and_split(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_mmmu(data_dir=missing)
    with pytest.raises(FileNotFoundError, match=rf"'dev'.*{FIXTURES}"):
        load_mmmu("dev", data_dir=FIXTURES)
    with pytest.raises(FileNotFoundError, match=r"'Art'"):  # asked for explicitly, but not in the directory
        load_mmmu(data_dir=FIXTURES, subjects=["Art"])
    with pytest.raises(ValueError, match=r"did you mean 'validation'"):
        load_mmmu("valdation", data_dir=FIXTURES)


@needs_fixtures
def test_open_and_multi_image_rows(tmp_path):
    import pyarrow as pa

    row = fixture_rows("Music")[0]
    img = row["image_1"]
    open_row = dict(row, id="validation_Music_99", question_type="open", options="[]", answer="42",
                    image_2={"bytes": b"second", "path": "b.png"})
    gap_row = dict(row, id="validation_Music_98", image_1=None, image_3=img)
    (tmp_path / "Music").mkdir()
    pq.write_table(pa.Table.from_pylist([row, open_row, gap_row], schema=pq.read_schema(
        FIXTURES / "Music" / "validation-00000-of-00001.parquet")), tmp_path / "Music" / "validation-00000-of-00001.parquet")
    bench = load_mmmu(data_dir=tmp_path)
    mc, op, gap = bench
    assert op.kind == "open" and op.choices == () and op.answer == -1 and op.meta["answer"] == "42"
    assert "index2ans" not in op.meta
    assert op.images == (img["bytes"], b"second") and op.meta["image_numbers"] == [1, 2]  # image_1 first
    assert gap.images == (img["bytes"],) and gap.meta["image_numbers"] == [3]
    assert bench.prompt(op) == build_prompt(open_row)


# ----------------------------------------------------------------------------------------------- prompt


@needs_fixtures
def test_build_prompt_multiple_choice():
    row = fixture_rows("Clinical_Medicine")[1]
    # llava1.5.yaml's folded template "{}\n{}\nAnswer ...", with each option line ending in "\n".
    assert build_prompt(row) == (
        "Which organ(s) are abnormally large in this abdominal radiograph? <image 1>\n"
        "(A) Kidneys\n(B) Small Intestines\n(C) Liver\n(D) Spine\n"
        "\n"
        "Answer with the option's letter from the given choices directly.")


@needs_fixtures
def test_build_prompt_open():
    row = dict(fixture_rows("Music")[0], question_type="open", options="[]", answer="trill")
    # No blank line for the short-answer template: "{}\nAnswer the question using a single word or phrase."
    assert build_prompt(row) == ("Name the written-out ornament, which is marked with bracket. <image 1>\n"
                                 "Answer the question using a single word or phrase.")


@needs_fixtures
def test_benchmark_prompt_equals_build_prompt():
    bench = load_mmmu(data_dir=FIXTURES)
    rows = [r for s in ("Biology", "Clinical_Medicine", "Energy_and_Power", "Music") for r in fixture_rows(s)]
    assert [bench.prompt(q) for q in bench] == [build_prompt(r) for r in rows]
    # Trailing spaces of options are kept ('E1 '), as the official f-string keeps them.
    assert "(C) E1 \n(D) E1 + E2 \n\n" in bench.prompt(bench[5])


# ----------------------------------------------------------------------------------------------- multiple choice


def test_mc_letter_in_parentheses():
    # "(B)" is in the response; the trailing "." is stripped first.
    assert parse_multi_choice_response("The answer is (B).", ABCD, ORGANS) == "B"


def test_mc_bare_letter():
    # No "(X)"; " C " (space-padded) is found.
    assert parse_multi_choice_response("C", ABCD, ORGANS) == "C"
    assert parse_multi_choice_response("I think C is right", ABCD, ORGANS) == "C"


def test_mc_answer_text():
    # No letter; more than 5 words, so option texts are searched: "liver" -> C.
    assert parse_multi_choice_response("The abnormally large organ here is the liver", ABCD, ORGANS) == "C"
    # The same text alone is only 1 word: not searched, so the random fallback decides (Random(7) draws C anyway,
    # Random(0) draws D: see test_mc_random_fallback).
    assert parse_multi_choice_response("Liver", ABCD, ORGANS, random.Random(0)) == "D"


def test_mc_several_candidates_last_wins():
    # Brackets: "(A)" and "(C)" both occur; the one found last (largest rfind) wins.
    assert parse_multi_choice_response("(A) is wrong, the answer is (C)", ABCD, ORGANS) == "C"
    # Bare letters: " A " and " B " both occur; B is the later one.
    assert parse_multi_choice_response("A or B? I pick B", ABCD, ORGANS) == "B"
    # Option texts: "e1 + e2 + e3", "e3", "e1 " and "e1 + e2 " all occur; "e3" starts last, so B (E3) wins even
    # though the response names option A.
    assert parse_multi_choice_response("I believe the capacity equals E1 + E2 + E3 overall", ABCD, EVAPORATOR) == "B"
    # Tie: "e1 " (C) and "e1 + e2 " (D, matched thanks to the padding space) start at the same place; argmax keeps
    # the first candidate, C.
    assert parse_multi_choice_response("the capacity of this evaporator is just E1 + E2", ABCD, EVAPORATOR) == "C"


def test_mc_random_fallback():
    # 4 words, no letter: random.choice over the letters, reproducible with the same seed.
    draw = lambda seed: parse_multi_choice_response("I am not sure", ABCD, ORGANS, random.Random(seed))
    assert draw(7) == draw(7) == random.Random(7).choice(ABCD) == "C"
    assert parse_multi_choice_response("I am not sure", ABCD, ORGANS) == "D"  # default rng: Random(0)
    assert eval_multi_choice("C", "C") and not eval_multi_choice("C", "D") and eval_multi_choice(["B", "C"], "C")


# ----------------------------------------------------------------------------------------------- open


def test_open_single_number():
    # "is " leaves the shortest tail "42"; as a number it becomes 42.0 (key and extracted number, deduplicated).
    assert parse_open_response("The answer is 42.") == [42.0]


def test_open_multiple_numbers():
    # No indicator ("are" is none), so the whole response is the key; both numbers are extracted too.
    assert parse_open_response("The sides are 3 and 4") == ["the sides are 3 and 4", 3.0, 4.0]
    assert eval_open("4", parse_open_response("The sides are 3 and 4"))


def test_open_commas_and_units():
    # Key "1,250 dollars" (not a number: text); the comma pattern gives "1,250" and the plain pattern also "250".
    assert extract_numbers("1,250 dollars") == ["1,250", "250"]
    preds = parse_open_response("The total cost is 1,250 dollars")
    assert preds == ["1,250 dollars", 1250.0, 250.0]
    assert eval_open("1250", preds) and eval_open("1,250", preds)
    # Scientific notation: "3e8" plus, from the plain pattern, the exponent's "8".
    assert parse_open_response("The speed is 3e8 m/s") == ["3e8 m/s", 3e8, 8.0]


def test_open_plain_text():
    # "is " -> "the liver"; a gold string matches when it is a substring of a candidate.
    preds = parse_open_response("It is the liver")
    assert preds == ["the liver"]
    assert eval_open("Liver", preds) and not eval_open("kidney", preds)
    assert eval_open(["Tampa", "Florida"], parse_open_response("It is in Florida"))


def test_open_sentence_split_only_on_newlines():
    # The official code lower-cases before splitting on r"\.\s(?=[A-Z])", so sentences are not split: one part,
    # whose shortest tail ("is " -> "7") is the only key.
    assert parse_open_response("The answer is 5. So the result is 7") == [7.0]
    assert parse_open_response("The answer is 5\nI am sure") == [5.0]  # newlines do split


def test_eval_open_numbers():
    # Both sides are rounded to 2 decimals: 3.14159 -> 3.14 matches, 3.146 -> 3.15 does not.
    assert eval_open("3.14", parse_open_response("The result is 3.14159"))
    assert not eval_open("3.14", parse_open_response("The result is 3.146"))
    # A numeric gold never matches text candidates.
    assert not eval_open("42", parse_open_response("forty-two"))
    # One-character golds are padded (" c", "c "): "c" alone matches, "bb" does not.
    assert eval_open("C", parse_open_response("the answer is c"))
    assert not eval_open("A", parse_open_response("Bb"))


def test_eval_open_rejects_a_string():
    # A string would be compared character by character (the known bug of a popular port).
    with pytest.raises(TypeError):
        eval_open("42", "42")
