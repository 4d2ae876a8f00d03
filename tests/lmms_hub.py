"""Hub-layout copies of lmms-eval tasks' data sets for the tests: parquet files as the hub holds them (with the
`huggingface` schema metadata that `datasets` writes, so image columns decode to PIL images as they do from the
hub), a README whose `configs` section names the config folders where the task picks a `dataset_name`, and small
PNGs made here. The columns are those the task's lmms-eval code (0.7.3, `lmms_eval/tasks/<task>/utils.py` and YAML)
reads, with the types of the dataset's hub card; each builder names its repository."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(colour=(200, 30, 30), size=(8, 6)) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def hub_metadata(schema: pa.Schema) -> pa.Schema:
    """The schema with the `huggingface` features metadata `datasets` writes (image structs as Image features)."""
    from datasets import Features, Image as HFImage, List

    features = Features.from_arrow_schema(schema)
    for f in schema:
        if f.type.equals(IMAGE):
            features[f.name] = HFImage()
        elif pa.types.is_list(f.type) and f.type.value_type.equals(IMAGE):
            features[f.name] = List(HFImage())
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features.to_dict()}})})


def write(root: Path, rel: str, rows: list[dict], schema: pa.Schema) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=hub_metadata(schema)), path)


def add_hub_metadata(root: Path) -> Path:
    """Rewrite every parquet file under `root` (written without it) with the `huggingface` features metadata."""
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        pq.write_table(table.replace_schema_metadata(hub_metadata(table.schema).metadata), path)
    return root


def readme_configs(root: Path, configs: dict[str, dict[str, str]]) -> None:
    """The dataset card's `configs` section: config -> split -> file glob."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {glob}" for split, glob in splits.items()]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]


def mmvp(root: Path) -> Path:
    """lmms-lab-eval/MMVP (train split): options as one string "(a) x (b) y", answers "(a)"/"(b)"."""
    s = pa.schema([("Index", pa.int64()), ("Question", pa.string()), ("Options", pa.string()),
                   ("Correct Answer", pa.string()), ("image", IMAGE)])
    q = "Are the butterfly's wings closer to being open or closed?"
    write(root, "data/train-00000-of-00001.parquet", [
        {"Index": 1, "Question": q, "Options": "(a) Open (b) Closed", "Correct Answer": "(a)", "image": png(COLOURS[0])},
        {"Index": 2, "Question": q, "Options": "(a) Open (b) Closed", "Correct Answer": "(b)", "image": png(COLOURS[1])},
        {"Index": 3, "Question": "Is the school bus driving towards or away from the camera?",
         "Options": "(a) Towards the camera (b) Away from the camera", "Correct Answer": "(b)", "image": png(COLOURS[2])},
    ], s)
    return root


def vstar_bench(root: Path) -> Path:
    """lmms-lab-encoder/vstar-bench (test): the options written in `text` as "(A) x (B) y", gold letter `label`."""
    s = pa.schema([("image", IMAGE), ("text", pa.string()), ("label", pa.string()), ("question_id", pa.string()),
                   ("category", pa.string())])
    write(root, "data/test-00000-of-00001.parquet", [
        {"image": png(COLOURS[0], (16, 12)), "text": "What is the color of the woman's bag? (A) black (B) white "
         "(C) red (D) blue", "label": "C", "question_id": "sa_4690", "category": "direct_attributes"},
        {"image": png(COLOURS[3], (16, 12)), "text": "Is the cup on the left or right side of the laptop? (A) left "
         "(B) right", "label": "B", "question_id": "sa_12", "category": "relative_position"},
    ], s)
    return root


def mme(root: Path) -> Path:
    """lmms-lab-encoder/MME (test): yes/no questions ending "Please answer yes or no.", gold "Yes"/"No"."""
    s = pa.schema([("question_id", pa.string()), ("image", IMAGE), ("question", pa.string()),
                   ("answer", pa.string()), ("category", pa.string())])
    rows = [("code_reasoning/0020.png", "Is a c++ code shown in the picture? Please answer yes or no.", "Yes",
             "code_reasoning"),
            ("code_reasoning/0020.png", "Is a python code shown in the picture? Please answer yes or no.", "No",
             "code_reasoning"),
            ("count/000000006040.jpg", "Are there two trains in the image? Please answer yes or no.", "No", "count"),
            ("count/000000006040.jpg", "Is there a train in the image? Please answer yes or no.", "Yes", "count")]
    write(root, "data/test-00000-of-00001.parquet",  # every image asked twice (MME's pairs: yes, no)
          [{"question_id": i, "image": png(COLOURS[n // 2]), "question": q, "answer": a, "category": c}
           for n, (i, q, a, c) in enumerate(rows)], s)
    return root


def blink(root: Path, configs=("Counting",)) -> Path:
    """BLINK-Benchmark/BLINK (val), one folder per config; image_1..image_4 (the unused ones null), `choices`, the
    gold "(A)", and `prompt` (question, "Select from the following choices.", "(A) x" lines)."""
    s = pa.schema([("idx", pa.string()), ("question", pa.string()), ("sub_task", pa.string()),
                   ("image_1", IMAGE), ("image_2", IMAGE), ("image_3", IMAGE), ("image_4", IMAGE),
                   ("choices", pa.list_(pa.string())), ("answer", pa.string()), ("prompt", pa.string()),
                   ("explanation", pa.string())])

    def row(config, n, question, choices, answer, images):
        lines = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))
        cells = {f"image_{k + 1}": (png(COLOURS[(n + k) % 6]) if k < images else None) for k in range(4)}
        return {"idx": f"val_{config}_{n + 1}", "question": question, "sub_task": config, **cells,
                "choices": choices, "answer": answer, "explanation": "",
                "prompt": f"{question}\nSelect from the following choices.\n{lines}"}

    cards = {}
    for config in configs:
        if config == "Counting":
            rows = [row(config, 0, "How many blue floats are there?", ["0", "3", "2", "1"], "(D)", 1),
                    row(config, 1, "How many cars are in the image?", ["4", "1", "2", "3"], "(A)", 1)]
        else:  # a several-image config (Visual_Similarity, Jigsaw, Multi-view_Reasoning...)
            rows = [row(config, 0, "Given the first image, which of the other images is more similar to it?",
                        ["the second image", "the third image"], "(B)", 3),
                    row(config, 1, "Which image completes the first one?", ["the second image", "the third image"],
                        "(A)", 3)]
        write(root, f"{config}/val-00000-of-00001.parquet", rows, s)
        cards[config] = {"val": f"{config}/val-*"}
    readme_configs(root, cards)
    return root


def embspatial(root: Path) -> Path:
    """FlagEval/EmbSpatial-Bench (test): options in the list `answer_options`, gold an index."""
    s = pa.schema([("question_id", pa.string()), ("image", IMAGE), ("question", pa.string()),
                   ("answer_options", pa.list_(pa.string())), ("answer", pa.int64()), ("relation", pa.string()),
                   ("data_source", pa.string())])
    write(root, "data/test-00000-of-00001.parquet", [
        {"question_id": "mp3d_0", "image": png(COLOURS[0]), "question": "Which object is above the sofa?",
         "answer_options": ["picture", "lamp", "rug", "table"], "answer": 0, "relation": "above",
         "data_source": "mp3d"},
        {"question_id": "ai2thor_1", "image": png(COLOURS[1]), "question": "How is the mug positioned relative to "
         "the sink?", "answer_options": ["left", "right", "above", "below"], "answer": 3, "relation": "below",
         "data_source": "ai2thor"},
    ], s)
    return root


def threedsr(root: Path) -> Path:
    """oscarqjh/3DSRBench_lmmseval, config 3dsr (test): option columns A-D ("nan" where absent), gold letter."""
    s = pa.schema([("index", pa.int64()), ("qid", pa.string()), ("question", pa.string()), ("A", pa.string()),
                   ("B", pa.string()), ("C", pa.string()), ("D", pa.string()), ("answer", pa.string()),
                   ("category", pa.string()), ("image", IMAGE)])
    write(root, "3dsr/test-00000-of-00001.parquet", [
        {"index": 0, "qid": "q0", "question": "Which is closer to the camera, the chair or the table?",
         "A": "the chair", "B": "the table", "C": "nan", "D": "nan", "answer": "B", "category": "location_closer_to_camera",
         "image": png(COLOURS[2])},
        {"index": 1, "qid": "q1", "question": "Is the dog higher than the cat?", "A": "yes", "B": "no", "C": "nan",
         "D": "nan", "answer": "A", "category": "height_higher", "image": png(COLOURS[4])},
    ], s)
    readme_configs(root, {"3dsr": {"test": "3dsr/test-*"}})
    return root


def seedbench_2_plus(root: Path) -> Path:
    """doolayer/SEED-Bench-2-Plus (test): columns choice_A..choice_D, gold letter, `question_image_type`."""
    s = pa.schema([("question_id", pa.string()), ("question", pa.string()), ("choice_A", pa.string()),
                   ("choice_B", pa.string()), ("choice_C", pa.string()), ("choice_D", pa.string()),
                   ("answer", pa.string()), ("question_image_type", pa.string()), ("image", IMAGE)])
    write(root, "data/test-00000-of-00001.parquet", [
        {"question_id": "1", "question": "What is the highest value in the chart?", "choice_A": "10",
         "choice_B": "20", "choice_C": "30", "choice_D": "40", "answer": "D", "question_image_type": "chart",
         "image": png(COLOURS[0])},
        {"question_id": "2", "question": "Which city is north of the river?", "choice_A": "Avon",
         "choice_B": "Brent", "choice_C": "Cray", "choice_D": "Dee", "answer": "B", "question_image_type": "map",
         "image": png(COLOURS[5])},
    ], s)
    return root


def erqa(root: Path) -> Path:
    """FlagEval/ERQA (test): the options written in `question`, an `images` list, gold letter."""
    s = pa.schema([("question_id", pa.string()), ("question", pa.string()), ("images", pa.list_(IMAGE)),
                   ("answer", pa.string()), ("question_type", pa.string())])
    write(root, "data/test-00000-of-00001.parquet", [
        {"question_id": "0", "question": "Which way should the gripper move to grasp the cup?\nA. Left\nB. Right\n"
         "C. Up\nD. Down", "images": [png(COLOURS[1])], "answer": "B", "question_type": "Trajectory Reasoning"},
        {"question_id": "1", "question": "How many apples are on the plate? Choices: A. 1 B. 2 C. 3 D. 4",
         "images": [png(COLOURS[3])], "answer": "C", "question_type": "Other"},
    ], s)
    return root


def mmt(root: Path) -> Path:
    """lmms-lab-encoder/MMT-Benchmark (val): option columns A-I (null where absent), gold letter; lmms-eval's
    doc_to_text writes "Question: <image>" (one image, placed there) and its doc_to_choice gives the letters."""
    letters = "ABCDEFGHI"
    s = pa.schema([("index", pa.int64()), ("question", pa.string()), *[(c, pa.string()) for c in letters],
                   ("answer", pa.string()), ("category", pa.string()), ("l2-category", pa.string()),
                   ("split", pa.string()), ("image", IMAGE)])

    def row(i, q, options, answer, l2):
        cells = {c: (options[k] if k < len(options) else None) for k, c in enumerate(letters)}
        return {"index": i, "question": q, **cells, "answer": answer, "category": "visual_recognition",
                "l2-category": l2, "split": "VAL", "image": png(COLOURS[i % 6])}

    write(root, "data/val-00000-of-00001.parquet", [
        row(0, "What is the main object in the image?", ["a dog", "a cat", "a car"], "B", "object_recognition"),
        row(1, "Which emotion does the face show?", ["happy", "sad", "angry", "surprised"], "D", "emotion"),
    ], s)
    return root


def hallusion_bench(root: Path) -> Path:
    """lmms-lab-encoder/HallusionBench (image split): yes/no questions whose `doc_to_target` is the free-text
    `gt_answer_details` (mirage finds no options: refused)."""
    s = pa.schema([("category", pa.string()), ("subcategory", pa.string()), ("visual_input", pa.string()),
                   ("set_id", pa.string()), ("figure_id", pa.string()), ("question_id", pa.string()),
                   ("question", pa.string()), ("gt_answer_details", pa.string()), ("gt_answer", pa.string()),
                   ("filename", pa.string()), ("image", IMAGE)])
    write(root, "data/image-00000-of-00001.parquet", [
        {"category": "VD", "subcategory": "illusion", "visual_input": "1", "set_id": "0", "figure_id": "0",
         "question_id": "0", "question": "Is the right orange circle the same size as the left one?",
         "gt_answer_details": "The right orange circle is the same size as the left one.", "gt_answer": "1",
         "filename": "./VD/illusion/0_0.png", "image": png()},
    ], s)
    return root


def muirbench(root: Path) -> Path:
    """MUIRBENCH/MUIRBENCH (test): several images per question in `image_list`, `<image>` markers in `question`
    where the images stand, options in the list `options`, gold letter."""
    s = pa.schema([("idx", pa.string()), ("task", pa.string()), ("image_relation", pa.string()),
                   ("image_type", pa.string()), ("question", pa.string()), ("options", pa.list_(pa.string())),
                   ("answer", pa.string()), ("image_list", pa.list_(IMAGE)), ("counterpart_idx", pa.string())])
    write(root, "data/test-00000-of-00001.parquet", [
        {"idx": "0", "task": "Image-Text Matching", "image_relation": "Independent", "image_type": "Photo",
         "question": "Which picture shows a red square? <image> <image> <image>",
         "options": ["The first image", "The second image", "The third image"], "answer": "A",
         "image_list": [png(COLOURS[0], (16, 12)), png(COLOURS[1], (12, 16)), png(COLOURS[2])],
         "counterpart_idx": "-1"},
        {"idx": "1", "task": "Visual Retrieval", "image_relation": "Similar", "image_type": "Photo",
         "question": "<image>\nWhich of these shows the same building?\n<image>\n<image>",
         "options": ["the first candidate", "the second candidate"], "answer": "B",
         "image_list": [png(COLOURS[3]), png(COLOURS[4]), png(COLOURS[5])], "counterpart_idx": "-1"},
    ], s)
    return root


def scienceqa_img(root: Path) -> Path:
    """lmms-lab/ScienceQA, config ScienceQA-IMG (test; the repository holds ScienceQA-FULL/ and ScienceQA-IMG/, one
    parquet file per split; only the IMG config is written): derek-thomas/ScienceQA's columns, options in the list `choices`, gold an int8 index,
    the context in `hint` (lmms-eval's doc_to_text writes "Context: <hint>" when it is not empty)."""
    s = pa.schema([("image", IMAGE), ("question", pa.string()), ("choices", pa.list_(pa.string())),
                   ("answer", pa.int8()), ("hint", pa.string()), ("task", pa.string()), ("grade", pa.string()),
                   ("subject", pa.string()), ("topic", pa.string()), ("category", pa.string()),
                   ("skill", pa.string()), ("lecture", pa.string()), ("solution", pa.string())])

    def row(question, choices, answer, hint, topic, image):
        return {"image": image, "question": question, "choices": choices, "answer": answer, "hint": hint,
                "task": "closed choice", "grade": "grade4", "subject": "social science", "topic": topic,
                "category": "", "skill": "", "lecture": "", "solution": ""}

    write(root, "ScienceQA-IMG/test-00000-of-00001.parquet", [
        row("What is the capital of Wyoming?", ["Phoenix", "Baton Rouge", "Honolulu", "Cheyenne"], 3, "",
            "geography", png(COLOURS[0], (16, 12))),
        row("Which property do these three objects have in common?", ["shiny", "slippery", "opaque"], 2,
            "Select the best answer.", "physics", png(COLOURS[1], (12, 16))),
        row("Think about the magnetic force between the magnets in each pair. Which of the following statements "
            "is true?", ["The magnitude of the magnetic force is the same in both pairs.",
                         "The magnitude of the magnetic force is smaller in Pair 1.",
                         "The magnitude of the magnetic force is smaller in Pair 2."], 2,
            "The images below show two pairs of magnets. The magnets in different pairs do not affect each other. "
            "All the magnets shown are made of the same material.", "magnets", png(COLOURS[2])),
    ], s)
    readme_configs(root, {"ScienceQA-IMG": {"test": "ScienceQA-IMG/test-*"}})  # (datasets needs every config's files)
    return root


# task -> (builder, what the test loads it as)
SINGLE_IMAGE = {"mmvp": mmvp, "vstar_bench": vstar_bench, "mme": mme, "blink_counting": blink,
                "embspatial": embspatial, "3dsrbench": threedsr, "seedbench_2_plus": seedbench_2_plus, "erqa": erqa,
                "mmt_val": mmt}
