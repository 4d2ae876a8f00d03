"""`file:PATH` benchmarks: a valid JSONL loads; each malformed line is refused, naming its line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.local import file_prompt, load_jsonl, mc_prompt
from mirage.benchmarks.question import Question
from mirage.benchmarks.scienceqa import build_prompt

GOOD = [
    {"id": "q1", "question": "What color is the square?", "choices": ["red", "blue", "green"], "answer": "B",
     "image": "img/square.png", "subject": "colors"},
    {"id": "q2", "question": "2 + 2 = ?", "choices": ["3", "4"], "answer": 1, "type": "math", "source": "hand"},
    {"id": "q3", "question": "Is the sky blue?", "choices": ["yes", "no"], "answer": 0},
]


def write(folder: Path, rows: list, name: str = "mine.jsonl") -> Path:
    """Rows as JSONL (a str or bytes row is written verbatim), with the one image the good rows use."""
    (folder / "img").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (0, 0, 255)).save(folder / "img" / "square.png")
    path = folder / name
    def encode(row) -> bytes:
        return row if isinstance(row, bytes) else (row if isinstance(row, str) else json.dumps(row)).encode()

    path.write_bytes(b"".join(encode(r) + b"\n" for r in rows))
    return path


def test_valid_file(tmp_path):
    path = write(tmp_path, [GOOD[0], "", GOOD[1], "   ", GOOD[2]])
    bench = load_jsonl(path)
    assert (bench.name, bench.split, len(bench)) == ("mine", "file", 3)
    assert [q.id for q in bench] == ["q1", "q2", "q3"]
    assert [q.answer for q in bench] == [1, 1, 0]
    assert [q.type for q in bench] == ["colors", "math", ""]
    assert bench[0].image().getpixel((0, 0)) == (0, 0, 255)
    assert bench[1].images == () and bench[1].meta["source"] == "hand"
    assert bench.prompt(bench[0]) == ("What color is the square?\nA. red\nB. blue\nC. green\n"
                                      "Answer with the option's letter from the given choices directly.")
    assert bench.prompt_style is file_prompt  # mc_prompt unless a line brings its own prompt


def test_mc_prompt_is_scienceqa_without_context():
    q = Question("x", "Which one?", ("a", "b", "c", "d"), 2)
    assert mc_prompt(q) == build_prompt(q)


def test_lowercase_letter_answer(tmp_path):
    assert load_jsonl(write(tmp_path, [{**GOOD[2], "answer": "b"}]))[0].answer == 1


BAD = {  # case -> (bad line, words the error must contain besides the line number)
    "not json": ('{"id": "x", "question": ', ["not valid JSON"]),
    "not utf-8": (b'{"id": "\xff"}', ["not valid UTF-8"]),
    "not an object": ("[1, 2]", ["JSON object"]),
    "missing id": ({k: v for k, v in GOOD[2].items() if k != "id"}, ["'id'", "missing"]),
    "missing question": ({k: v for k, v in GOOD[2].items() if k != "question"}, ["'question'", "missing"]),
    "missing choices": ({k: v for k, v in GOOD[2].items() if k != "choices"}, ["'choices'", "missing"]),
    "missing answer": ({k: v for k, v in GOOD[2].items() if k != "answer"}, ["'answer'", "missing"]),
    "id not str": ({**GOOD[2], "id": 7}, ["'id'"]),
    "question not str": ({**GOOD[2], "question": ["?"]}, ["'question'"]),
    "choices not list": ({**GOOD[2], "choices": "yes,no"}, ["'choices'"]),
    "choice not str": ({**GOOD[2], "choices": ["yes", 2]}, ["'choices'"]),
    "one choice": ({**GOOD[2], "choices": ["yes"]}, ["'choices'", "has 1"]),
    "letter out of range": ({**GOOD[2], "answer": "C"}, ["'answer'", "'C'", "A-B"]),
    "not a letter": ({**GOOD[2], "answer": "yes"}, ["'answer'", "'yes'"]),
    "index out of range": ({**GOOD[2], "answer": 2}, ["'answer'", "index 2"]),
    "negative index": ({**GOOD[2], "answer": -1}, ["'answer'", "index -1"]),
    "bool answer": ({**GOOD[2], "answer": True}, ["'answer'", "bool"]),
    "float answer": ({**GOOD[2], "answer": 1.0}, ["'answer'", "float"]),
    "duplicate id": ({**GOOD[2], "id": "q1"}, ["'id'", "duplicate", "'q1'", "line 1"]),
    "image missing": ({**GOOD[2], "image": "img/nope.png"}, ["'image'", "img/nope.png", "does not exist"]),
    "image not an image": ({**GOOD[2], "image": "mine.jsonl"}, ["'image'", "mine.jsonl", "cannot read"]),
    "image not str": ({**GOOD[2], "image": 3}, ["'image'"]),
    "type not str": ({**GOOD[2], "type": 3}, ["'type'"]),
    "image and images": ({**GOOD[0], "images": ["img/square.png"]}, ["'image' and 'images'", "one of them"]),
    "images not a list": ({**GOOD[2], "images": "img/square.png"}, ["'images'", "list of image paths"]),
    "images empty": ({**GOOD[2], "images": []}, ["'images'", "non-empty"]),
    "images missing one": ({**GOOD[2], "images": ["img/square.png", "img/nope.png"]},
                           ["'images'", "img/nope.png", "does not exist"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_line(tmp_path, case):
    line, words = BAD[case]
    path = write(tmp_path, [GOOD[0], "", line, GOOD[1]])  # the bad line is line 3 (after an empty one)
    with pytest.raises(ValueError) as err:
        load_jsonl(path)
    msg = str(err.value)
    assert str(path) in msg and "line 3:" in msg, msg
    for word in words:
        assert word in msg, msg


def test_a_line_may_hold_several_images_in_order(tmp_path):
    path = write(tmp_path, [{**GOOD[2], "question": "Which? <image> or <image>",
                             "images": ["img/square.png", "img/square.png"]}, GOOD[0]])
    bench = load_jsonl(path)
    assert bench.all_images and [len(q.images) for q in bench] == [2, 1]
    assert bench[0].images == (str(tmp_path / "img" / "square.png"),) * 2 and "images" not in bench[0].meta
    assert not load_jsonl(write(tmp_path, [GOOD[0]], "one.jsonl")).all_images


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no questions"):
        load_jsonl(write(tmp_path, ["", " "]))


def test_load_benchmark_file(tmp_path):
    path = write(tmp_path, GOOD)
    bench = load_benchmark(f"file:{path}")
    assert (bench.name, bench.split, len(bench)) == ("mine", "file", 3)
    limited = load_benchmark(f"file:{path}", split="ignored", limit=2)
    assert [q.id for q in limited] == ["q1", "q2"] and limited.prompt_style is file_prompt
    with pytest.raises(FileNotFoundError):
        load_benchmark(f"file:{tmp_path / 'missing.jsonl'}")


def test_a_line_may_bring_its_own_prompt(tmp_path):
    """`prompt` (as `mirage curate` writes it): the question is asked exactly so; a non-string is refused."""
    row = {"id": "q1", "question": "what ?", "choices": ["a", "b"], "answer": "A", "prompt": "what ? A . a B . b"}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    bench = load_jsonl(path)
    assert bench.prompt(bench[0]) == "what ? A . a B . b" and mc_prompt(bench[0]) != bench.prompt(bench[0])
    path.write_text(json.dumps({**row, "prompt": 3}) + "\n")
    with pytest.raises(ValueError, match="line 1: field 'prompt': must be a string"):
        load_jsonl(path)
