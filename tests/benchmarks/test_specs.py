"""Each bundled spec on fixture files written in its dataset's hub layout and schema: which rows load, their
choices and gold, and the prompt byte for byte as lmms-eval's doc_to_text gives it (written out by hand below)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mirage.benchmarks import load_benchmark

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
ANSWER = "Answer with the option's letter from the given choices directly."


def png(colour=(200, 30, 30)) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def write(root: Path, rel: str, rows: list[dict], schema: pa.Schema) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


# ----------------------------------------------------------------------------------------------- MMStar

MMSTAR = pa.schema([("index", pa.int64()), ("question", pa.string()), ("image", IMAGE), ("answer", pa.string()),
                    ("category", pa.string()), ("l2_category", pa.string()),
                    ("meta_info", pa.struct([("source", pa.string()), ("split", pa.string()),
                                             ("image_path", pa.string())]))])


def mmstar_files(tmp_path: Path) -> Path:
    def row(i, q, a, cat):
        return {"index": i, "question": q, "image": png(), "answer": a, "category": cat, "l2_category": "l2",
                "meta_info": {"source": "MMBench", "split": "val", "image_path": f"images/{i}.jpg"}}

    write(tmp_path, "mmstar.parquet", [
        row(0, "Which option describe the object relationship in the image correctly?\nOptions: A: The suitcase is "
               "on the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The "
               "suitcase is beneath the book.", "A", "instance reasoning"),
        row(7, "Given $f(x)=\\frac{1}{x}$ and the set {a, b}, what is f(2)? Options: A: ½, B: 2, C: {½}, D: π",
            "C", "math"),
        row(12, " Is the man wearing a hat? Please answer yes or no.\nOptions: A: Yes, B: No", "B",
            "coarse perception"),
        row(30, "Which panel is the odd one out?", "D", "logical reasoning"),
    ], MMSTAR)
    (tmp_path / "MMStar.tsv").write_text("not read\n")
    return tmp_path


def test_mmstar(tmp_path):
    mmstar_files(tmp_path)
    bench = load_benchmark("mmstar", data_dir=str(tmp_path))
    assert (bench.name, bench.split, len(bench)) == ("mmstar", "val", 4)
    assert [q.id for q in bench] == ["0", "7", "12", "30"]
    assert bench[0].choices == ("The suitcase is on the book.", "The suitcase is beneath the cat.",
                                "The suitcase is beneath the bed.", "The suitcase is beneath the book.")
    assert bench[1].choices == ("½", "2", "{½}", "π") and bench[1].answer == 2
    assert bench[2].choices == ("Yes", "No") and bench[2].answer == 1
    assert bench[3].choices == ("A", "B", "C", "D") and bench[3].answer == 3  # no options in the text: bare letters
    assert [q.type for q in bench] == ["instance reasoning", "math", "coarse perception", "logical reasoning"]
    post = "\nAnswer with the option's letter from the given choices directly"  # no period, as in lmms-eval
    assert bench.prompt(bench[1]) == ("Given $f(x)=\\frac{1}{x}$ and the set {a, b}, what is f(2)? Options: A: ½, "
                                      "B: 2, C: {½}, D: π" + post)
    assert bench.prompt(bench[2]) == "Is the man wearing a hat?\nOptions: A: Yes, B: No" + post
    assert bench[0].image().size == (8, 6)


# ----------------------------------------------------------------------------------------------- AI2D

AI2D = pa.schema([("question", pa.string()), ("options", pa.list_(pa.string())), ("answer", pa.string()),
                  ("image", IMAGE)])


def ai2d_files(tmp_path: Path) -> Path:
    write(tmp_path, "data/test-00000-of-00001.parquet", [
        {"question": "Which stage follows the larva?", "options": ["pupa", "egg", "adult", "nymph"], "answer": "0",
         "image": png()},
        {"question": "Is the Moon's phase {waxing}?", "options": ["yes", "no"], "answer": "1", "image": png()},
        {"question": "What does arrow “E” show?", "options": ["évaporation", "condensation", "runoff"],
         "answer": "2", "image": png()},
    ], AI2D)
    return tmp_path


def test_ai2d(tmp_path):
    ai2d_files(tmp_path)
    bench = load_benchmark("ai2d", data_dir=str(tmp_path))
    assert [q.id for q in bench] == ["ai2d-test-00000", "ai2d-test-00001", "ai2d-test-00002"]
    assert [q.answer for q in bench] == [0, 1, 2] and [len(q.choices) for q in bench] == [4, 2, 3]
    assert bench.prompt(bench[2]) == ("What does arrow “E” show?\nA. évaporation\nB. condensation\nC. runoff\n"
                                      + ANSWER)


# ----------------------------------------------------------------------------------------------- CV-Bench

CVBENCH = pa.schema([("idx", pa.int64()), ("type", pa.string()), ("task", pa.string()), ("image", IMAGE),
                     ("question", pa.string()), ("choices", pa.list_(pa.string())), ("answer", pa.string()),
                     ("prompt", pa.string()), ("filename", pa.string()), ("source", pa.string()),
                     ("source_dataset", pa.string()), ("source_filename", pa.string())])


def cvbench_row(idx, kind, task, question, choices, answer, source):
    options = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))
    return {"idx": idx, "type": kind, "task": task, "image": png(), "question": question, "choices": choices,
            "answer": answer, "prompt": f"{question} Select from the following choices.\n{options}",
            "filename": f"img/{kind}/{task}/{idx}.png", "source": source, "source_dataset": source,
            "source_filename": "x.jpg"}


@pytest.fixture
def cvbench_dir(tmp_path):
    write(tmp_path, "test_2d.parquet", [
        cvbench_row(0, "2D", "Count", "How many chairs are in the image?", ["3", "2", "1", "0", "4", "5"], "(B)",
                    "ADE20K"),
        cvbench_row(1, "2D", "Relation", "Is the {lamp} left of the bed?", ["left", "right"], "(A)", "COCO"),
    ], CVBENCH)
    write(tmp_path, "test_3d.parquet", [
        cvbench_row(0, "3D", "Depth", "Which is closer to the camera, the café table or the sofa?",
                    ["café table", "sofa"], "(B)", "Omni3D"),
    ], CVBENCH)
    return tmp_path


def test_cvbench(cvbench_dir):
    both = load_benchmark("cvbench", data_dir=str(cvbench_dir))
    assert (both.name, len(both)) == ("cvbench", 3)
    assert [q.type for q in both] == ["Count", "Relation", "Depth"] and [q.answer for q in both] == [1, 0, 1]
    assert both[0].choices == ("3", "2", "1", "0", "4", "5")
    assert both.prompt(both[0]) == (
        "Note: You only need to respond with A, B, C, D, E, F without providing any additional information.\n\n"
        "How many chairs are in the image? Select from the following choices.\n(A) 3\n(B) 2\n(C) 1\n(D) 0\n(E) 4\n(F) 5")
    assert both.prompt(both[2]).startswith("Note: You only need to respond with A, B without")
    three = load_benchmark("cvbench", data_dir=str(cvbench_dir), config="3D")
    assert (three.name, [q.type for q in three]) == ("cvbench-3D", ["Depth"])
    assert [q.type for q in load_benchmark("cvbench", data_dir=str(cvbench_dir), config="2D")] == ["Count", "Relation"]


# ----------------------------------------------------------------------------------------------- POPE

POPE = pa.schema([("id", pa.string()), ("question_id", pa.string()), ("question", pa.string()),
                  ("answer", pa.string()), ("image_source", pa.string()), ("image", IMAGE),
                  ("category", pa.string())])


def pope_files(tmp_path: Path) -> Path:
    def row(i, q, a, cat):
        return {"id": str(i), "question_id": str(i % 3 + 1), "question": q, "answer": a,
                "image_source": "COCO_val2014_000000310196", "image": png(), "category": cat}

    write(tmp_path, "data/test-00000-of-00002.parquet", [row(0, "Is there a snowboard in the image?", "yes",
                                                             "adversarial")], POPE)
    write(tmp_path, "data/test-00001-of-00002.parquet", [
        row(1, "  Is there a dining table in the image? ", "no", "popular"),
        row(2, "Is there a café sign in the image?", "no", "random"),
    ], POPE)
    write(tmp_path, "Full/adversarial-00000-of-00001.parquet", [row(9, "Is there a cat?", "yes", "adversarial")], POPE)
    return tmp_path


def test_pope_reads_only_its_split(tmp_path):
    pope_files(tmp_path)
    bench = load_benchmark("pope", data_dir=str(tmp_path))
    assert len(bench) == 3 and [q.type for q in bench] == ["adversarial", "popular", "random"]
    assert [q.choices for q in bench] == [("yes", "no")] * 3 and [q.answer for q in bench] == [0, 1, 1]
    assert bench.prompt(bench[1]) == ("Is there a dining table in the image?\n"
                                      "Answer the question using a single word or phrase.")
    # generated answers are judged as lmms-eval's pope_process_results does: the whole response, exactly
    assert bench.judge(bench[0], " Yes\n") == ("yes", "yes", True)
    assert bench.judge(bench[1], "No.") == ("no.", "no", False)
    assert bench.subset(2).judge(bench[1], "no")[2]  # subsets keep the judge


# ----------------------------------------------------------------------------------------------- MMBench

# `index` is a string in the hub's "en" config
MMBENCH = pa.schema([("index", pa.string()), ("question", pa.string()), ("hint", pa.string()), ("A", pa.string()),
                     ("B", pa.string()), ("C", pa.string()), ("D", pa.string()), ("answer", pa.string()),
                     ("category", pa.string()), ("image", IMAGE), ("source", pa.string()),
                     ("L2-category", pa.string()), ("comment", pa.string()), ("split", pa.string())])


def mmbench_row(index, question, hint, options, answer, category="image_scene"):
    opts = dict(zip("ABCD", options + [None] * (4 - len(options))))
    return {"index": str(index), "question": question, "hint": hint, **opts, "answer": answer, "category": category,
            "image": png(), "source": "ScienceQA", "L2-category": "coarse_perception", "comment": None,
            "split": "dev"}


@pytest.fixture
def mmbench_dir(tmp_path):
    write(tmp_path, "en/dev-00000-of-00001.parquet", [
        mmbench_row(0, "Which scene is shown?", None, ["a beach", "a forest", "a city", "a desert"], "B"),
        mmbench_row(1, "Solve for $x$: {x+1=2}", "The equation is linear.\nx ∈ ℝ", ["0", "1"], "B",
                    "math"),
        mmbench_row(1000000, "Which scene is shown?", None, ["a forest", "a city", "a desert", "a beach"], "A"),
        mmbench_row(2, "Which mood does the image convey?", "", ["calm", "tense", "joyful"], "C", "image_emotion"),
    ], MMBENCH)
    write(tmp_path, "en/test-00000-of-00001.parquet", [mmbench_row(5, "test?", None, ["x", "y"], None)], MMBENCH)
    write(tmp_path, "cn/dev-00000-of-00001.parquet", [mmbench_row(6, "哪个?", None, ["甲", "乙"], "A")], MMBENCH)
    return tmp_path


def test_mmbench(mmbench_dir):
    bench = load_benchmark("mmbench", data_dir=str(mmbench_dir))
    assert [q.id for q in bench] == ["0", "1", "2"]  # the circular copy (index 1000000) is dropped
    assert [q.choices for q in bench][1] == ("0", "1") and [q.answer for q in bench] == [1, 1, 2]
    assert [q.type for q in bench] == ["image_scene", "math", "image_emotion"]
    assert bench.prompt(bench[0]) == ("Which scene is shown? There are several options:\nA. a beach\nB. a forest\n"
                                      "C. a city\nD. a desert\n\n" + ANSWER)
    assert bench.prompt(bench[1]) == ("The equation is linear.\nx ∈ ℝ Solve for $x$: {x+1=2} There are several "
                                      "options:\nA. 0\nB. 1\n\n" + ANSWER)
    # an empty (not null) hint keeps its space, as lmms-eval's check lets it through
    assert bench.prompt(bench[2]) == (" Which mood does the image convey? There are several options:\nA. calm\n"
                                      "B. tense\nC. joyful\n\n" + ANSWER)


def test_mmbench_circular(mmbench_dir):
    bench = load_benchmark("mmbench", data_dir=str(mmbench_dir), circular=True)
    assert bench.name == "mmbench-circular" and len(bench) == 4 + 2 + 3
    assert [q.id for q in bench][:4] == ["0@r0", "0@r1", "0@r2", "0@r3"]
    r1 = bench[1]
    assert r1.choices == ("a forest", "a city", "a desert", "a beach") and r1.answer_letter == "A"
    assert r1.meta["circular"] == {"group": "0", "rotation": 1}
    # the rotation's prompt is the one MMBench's own circular copy (index 1000000 above) would get
    assert bench.prompt(r1) == ("Which scene is shown? There are several options:\nA. a forest\nB. a city\n"
                                "C. a desert\nD. a beach\n\n" + ANSWER)
    assert [q.choices[q.answer] for q in bench] == ["a forest"] * 4 + ["1"] * 2 + ["joyful"] * 3
    # --limit counts questions, each then asked in every rotation
    limited = load_benchmark("mmbench", data_dir=str(mmbench_dir), circular=True, limit=2)
    assert [q.id for q in limited] == ["0@r0", "0@r1", "0@r2", "0@r3", "1@r0", "1@r1"]


# ----------------------------------------------------------------------------------------------- SEED-Bench

SEED = pa.schema([("answer", pa.string()), ("choice_a", pa.string()), ("choice_b", pa.string()),
                  ("choice_c", pa.string()), ("choice_d", pa.string()), ("data_id", pa.string()),
                  ("data_type", pa.string()), ("question", pa.string()), ("question_id", pa.string()),
                  ("question_type_id", pa.int16()), ("image", pa.list_(IMAGE)), ("segment", pa.string())])


def seedbench_files(tmp_path: Path) -> Path:
    def row(qid, q, a, kind, type_id, frames=1):
        return {"answer": a, "choice_a": "one", "choice_b": "two {2}", "choice_c": "trois", "choice_d": "四",
                "data_id": f"{qid}.jpg", "data_type": kind, "question": q, "question_id": qid,
                "question_type_id": type_id, "image": [png()] * frames, "segment": None}

    write(tmp_path, "data/test-00000-of-00001.parquet", [
        row("101669", "How many towels are in the image? ", "B", "image", 5),
        row("v-2001", "What happens next?", "A", "video", 11, frames=3),
        row("54321", "What does the sign say?", "D", "image", 9),
    ], SEED)
    return tmp_path


def test_seedbench(tmp_path):
    seedbench_files(tmp_path)
    bench = load_benchmark("seedbench", data_dir=str(tmp_path))
    assert [q.id for q in bench] == ["101669", "54321"] and [q.answer for q in bench] == [1, 3]
    assert [q.type for q in bench] == ["Instances Counting", "Text Understanding"]
    assert bench.prompt(bench[0]) == ("How many towels are in the image? \nA. one\nB. two {2}\nC. trois\nD. 四\n"
                                      + ANSWER)


# ----------------------------------------------------------------------------------------------- RealWorldQA

RWQA = pa.schema([("image", IMAGE), ("question", pa.string()), ("answer", pa.string())])
RWQA_INSTRUCTION = "Please answer directly with only the letter of the correct option and nothing else."


def realworldqa_files(tmp_path: Path) -> Path:
    write(tmp_path, "data/test-00000-of-00002.parquet", [
        {"image": png(), "question": f"In which direction is the car turning?\nA. Left\nB. Right\nC. Straight\n"
                                     f"{RWQA_INSTRUCTION}", "answer": "B"},
        {"image": png(), "question": "How many lanes does the road have? Please answer directly with a single word "
                                     "or number.", "answer": "3"},
    ], RWQA)
    write(tmp_path, "data/test-00001-of-00002.parquet", [
        {"image": png(), "question": f"Which sign is closest?\nA. “STOP”\nB. 50 km/h\nC. {{yield}}\nD. none\n"
                                     f"{RWQA_INSTRUCTION}\n", "answer": "A"},
    ], RWQA)
    return tmp_path


def test_realworldqa_open_questions_kept_as_open(tmp_path):
    realworldqa_files(tmp_path)
    bench = load_benchmark("realworldqa", data_dir=str(tmp_path))
    assert [q.kind for q in bench] == ["mc", "open", "mc"]
    assert bench[0].choices == ("Left", "Right", "Straight") and bench[0].answer == 1
    assert bench[1].meta["answer"] == "3" and bench[1].choices == ()
    assert bench[2].choices == ("“STOP”", "50 km/h", "{yield}", "none") and bench[2].answer == 0
    assert bench.prompt(bench[2]) == ("Which sign is closest?\nA. “STOP”\nB. 50 km/h\nC. {yield}\nD. none\n"
                                      + RWQA_INSTRUCTION)  # stripped, instruction kept (empty post prompt)


# ----------------------------------------------------------------------------------------------- MathVista

MATHVISTA_META = pa.struct([("category", pa.string()), ("context", pa.string()), ("grade", pa.string()),
                            ("img_height", pa.int64()), ("img_width", pa.int64()), ("language", pa.string()),
                            ("skills", pa.list_(pa.string())), ("source", pa.string()), ("split", pa.string()),
                            ("task", pa.string())])
MATHVISTA = pa.schema([("pid", pa.string()), ("question", pa.string()), ("image", pa.string()),
                       ("decoded_image", IMAGE), ("choices", pa.list_(pa.string())), ("unit", pa.string()),
                       ("precision", pa.float64()), ("answer", pa.string()), ("question_type", pa.string()),
                       ("answer_type", pa.string()), ("metadata", MATHVISTA_META), ("query", pa.string())])


def mathvista_row(pid, question, choices, answer, unit=None, qtype="multi_choice", task="geometry problem solving"):
    meta = {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school",
            "img_height": 6, "img_width": 8, "language": "english", "skills": ["algebraic reasoning"],
            "source": "Geometry3K", "split": "testmini", "task": task}
    return {"pid": pid, "question": question, "image": f"images/{pid}.jpg", "decoded_image": png(),
            "choices": choices, "unit": unit, "precision": None if choices else 1.0, "answer": answer,
            "question_type": qtype, "answer_type": "text" if choices else "float", "metadata": meta,
            "query": "Hint: ...\nQuestion: " + question}


def mathvista_files(tmp_path: Path) -> Path:
    write(tmp_path, "data/testmini-00000-of-00001-6fe5b8e4ee1fd34d.parquet", [
        mathvista_row("1", "Find $x$ so that $\\frac{AB}{BC}=2$.", ["3", "4", "5", "6", "7"], "5", unit="cm"),
        mathvista_row("2", "What is the value of f(0)?", None, "1.5", qtype="free_form"),
        mathvista_row("3", "  Is the {blue} bar taller than the red one?", ["Yes", "No"], "No",
                      task="figure question answering"),
    ], MATHVISTA)
    write(tmp_path, "data/test-00000-of-00002-6a611c71596db30f.parquet",
          [mathvista_row("9", "test?", ["a", "b"], "")], MATHVISTA)
    return tmp_path


def test_mathvista_multiple_choice_rows(tmp_path):
    mathvista_files(tmp_path)
    bench = load_benchmark("mathvista", data_dir=str(tmp_path))
    assert [q.id for q in bench] == ["1", "3"] and [q.answer for q in bench] == [2, 1]
    assert [q.type for q in bench] == ["geometry problem solving", "figure question answering"]
    assert bench.prompt(bench[0]) == ("Find $x$ so that $\\frac{AB}{BC}=2$. (Unit: cm)\nA. 3\nB. 4\nC. 5\nD. 6\n"
                                      "E. 7\n" + ANSWER)
    assert bench.prompt(bench[1]) == "Is the {blue} bar taller than the red one?\nA. Yes\nB. No\n" + ANSWER


# ----------------------------------------------------------------------------------------------- MMMU-Pro

MMMU_PRO = pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
                      ("explanation", pa.string()), *[(f"image_{i}", IMAGE) for i in range(1, 8)],
                      ("img_type", pa.string()), ("answer", pa.string()), ("topic_difficulty", pa.string()),
                      ("subject", pa.string())])


def mmmu_pro_row(qid, question, options, answer, subject):
    return {"id": qid, "question": question, "options": repr(options), "explanation": "", "image_1": png(),
            **{f"image_{i}": None for i in range(2, 8)}, "img_type": "['Diagrams']", "answer": answer,
            "topic_difficulty": "Medium", "subject": subject}


def mmmu_pro_files(tmp_path: Path) -> Path:
    ten = [f"${i}\\pi$" for i in range(10)]
    write(tmp_path, "standard (10 options)/test-00000-of-00001.parquet", [
        mmmu_pro_row("test_Math_1", "<image 1> What is the period of {f}?", ten, "J", "Math"),
        mmmu_pro_row("test_Music_2", "Which interval is shown in <image 1>?", ["Quinte", "Terz", "Sexte", "Oktave",
                                                                                "None", "Ä", "B", "C", "D", "E"],
                     "A", "Music"),
    ], MMMU_PRO)
    write(tmp_path, "standard (4 options)/test-00000-of-00001.parquet", [
        mmmu_pro_row("test_Math_1", "<image 1> What is the period of {f}?", ten[6:], "D", "Math"),
    ], MMMU_PRO)
    write(tmp_path, "vision/test-00000-of-00001.parquet", [mmmu_pro_row("v", "x", ["a", "b"], "A", "Art")], MMMU_PRO)
    return tmp_path


def test_mmmu_pro_options(tmp_path):
    mmmu_pro_files(tmp_path)
    ten = [f"${i}\\pi$" for i in range(10)]
    bench = load_benchmark("mmmu-pro", data_dir=str(tmp_path))
    assert (bench.name, len(bench), [q.type for q in bench]) == ("mmmu-pro", 2, ["Math", "Music"])
    assert len(bench[0].choices) == 10 and bench[0].answer == 9 and len(bench[0].images) == 1
    assert bench.prompt(bench[0]) == ("<image 1> What is the period of {f}?\n"
                                      + "\n".join(f"{'ABCDEFGHIJ'[i]}. ${i}\\pi$" for i in range(10))
                                      + "\n\nAnswer with the option letter from the given choices directly.")
    four = load_benchmark("mmmu-pro", data_dir=str(tmp_path), options=4)
    assert four.name == "mmmu-pro-4" and four[0].choices == tuple(ten[6:]) and four[0].answer == 3
    assert four.prompt(four[0]) == ("<image 1> What is the period of {f}?\nA. $6\\pi$\nB. $7\\pi$\nC. $8\\pi$\n"
                                    "D. $9\\pi$\n\nAnswer with the option letter from the given choices directly.")


def test_mmmu_pro_passes_the_images_its_tags_name(tmp_path):
    """lmms-eval's mmmu_pro_doc_to_visual: the images named by `<image N>` tags in the question and the options,
    each once, in name order; a stored image no tag names (image_3 here) is not passed."""
    colours = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}
    row = mmmu_pro_row("test_Art_1", "Compare <image 2> with <image 2>. Which one?",
                       ["<image 1>", "the other", *"CDEFGHIJ"], "A", "Art")
    row.update({f"image_{i}": png(c) for i, c in colours.items()})
    write(tmp_path, "standard (10 options)/test-00000-of-00001.parquet", [row], MMMU_PRO)
    (q,) = load_benchmark("mmmu-pro", data_dir=str(tmp_path))
    assert [q.image(i).getpixel((0, 0)) for i in range(len(q.images))] == [colours[1], colours[2]]


# ----------------------------------------------------------------------------------------------- every spec

FIXTURES = {"mmstar": mmstar_files, "ai2d": ai2d_files, "pope": pope_files, "seedbench": seedbench_files,
            "realworldqa": realworldqa_files, "mathvista": mathvista_files, "mmmu-pro": mmmu_pro_files}


@pytest.mark.parametrize("name", [*FIXTURES, "cvbench", "mmbench"])
def test_eval_runs_on_every_spec_fixture(name, tmp_path, tiny_model, request):
    """`mirage eval --benchmark NAME --data-dir DIR` through the library: every row scored under real and blank."""
    from mirage.evaluate import evaluate

    root = request.getfixturevalue(f"{name}_dir") if name in ("cvbench", "mmbench") else FIXTURES[name](tmp_path)
    bench = load_benchmark(name, data_dir=str(root))
    result = evaluate(tiny_model, bench, "real,blank")
    assert result.summary["n"] == {"real": len(bench), "blank": len(bench)}
    assert {r["question_id"] for r in result.rows} == {q.id for q in bench}
