"""ScienceQA loader on the real fixture rows: filtering, ids, types, errors and the exact lmms-eval prompt."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.scienceqa import build_prompt, load_scienceqa

FIXTURE = Path("/work/shared/fixtures/scienceqa")
if not FIXTURE.is_dir():  # the fixtures are shared, not part of the repository
    pytest.skip("ScienceQA fixture not available", allow_module_level=True)

ANSWERS = [1, 1, 1, 1, 2, 2, 3, 1, 0, 1, 0, 2]


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory) -> Path:
    """The fixture split over two shards, rows 1 and 7 without an image and subjects filled in."""
    table = pq.read_table(FIXTURE / "data" / "test-00000-of-00001.parquet")
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        row["subject"] = "social science" if i in (1, 6, 11) else "natural science"
        row["grade"] = f"grade{i % 8 + 1}"
        if i in (1, 7):
            row["image"] = None
    root = tmp_path_factory.mktemp("sqa")
    (root / "data").mkdir()
    for k, part in enumerate((rows[:5], rows[5:])):
        pq.write_table(pa.Table.from_pylist(part, schema=table.schema), root / "data" / f"test-0000{k}-of-00002.parquet")
    return root


def test_fixture_loads():
    bench = load_scienceqa("test", data_dir=FIXTURE)
    assert (bench.name, bench.split, len(bench)) == ("scienceqa", "test", 12)
    assert [q.answer for q in bench] == ANSWERS
    assert [q.id for q in bench] == [f"scienceqa-test-{i:05d}" for i in range(12)]
    assert bench[6].text == "What is the capital of Wyoming?" and bench[6].answer_letter == "D"
    assert bench[1].image().size[0] > 0  # the embedded PNG/JPEG decodes
    assert bench.prompt_style is build_prompt


def test_image_filter_ids_and_types(mixed_dir):
    img = load_scienceqa("test", data_dir=mixed_dir)
    full = load_scienceqa("test", data_dir=mixed_dir, all_questions=True)
    assert (len(img), len(full)) == (10, 12)
    # ids are row indices in the split (across shards), so the image-only set skips 1 and 7
    assert [q.id[-2:] for q in img] == ["00", "02", "03", "04", "05", "06", "08", "09", "10", "11"]
    assert [q.id for q in full] == [f"scienceqa-test-{i:05d}" for i in range(12)]
    assert full[1].images == () and full[7].images == () and all(q.images for q in img)
    assert [q.answer for q in full] == ANSWERS
    assert full[6].type == "social science" and full[0].type == "natural science"
    assert full.types() == ["natural science", "social science"]
    assert full[3].meta["grade"] == "grade4" and set(full[3].meta) == {"hint", "grade", "topic", "category", "skill"}


def test_registered():
    bench = load_benchmark("scienceqa", split="test", limit=3, data_dir=str(FIXTURE))
    assert [q.id for q in bench] == [f"scienceqa-test-{i:05d}" for i in range(3)]


def test_prompt_without_hint():
    q = load_scienceqa("test", data_dir=FIXTURE)[1]
    assert build_prompt(q) == (
        "What is the name of the colony shown?\n"
        "A. Maryland\n"
        "B. New Hampshire\n"
        "C. Rhode Island\n"
        "D. Vermont\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_prompt_with_hint():
    bench = load_scienceqa("test", data_dir=FIXTURE)
    assert bench.prompt(bench[4]) == (
        "Context: Select the best answer.\n"
        "Which property do these three objects have in common?\n"
        "A. shiny\n"
        "B. slippery\n"
        "C. opaque\n"
        "Answer with the option's letter from the given choices directly."
    )
    # a multi-line hint is kept as is
    assert build_prompt(bench[2]) == (
        "Context: Below is a food web from a tundra ecosystem in Nunavut, a territory in Northern Canada.\n"
        "A food web models how the matter eaten by organisms moves through an ecosystem. The arrows in a food web "
        "represent how matter moves between organisms in an ecosystem.\n"
        "Which of these organisms contains matter that was once part of the lichen?\n"
        "A. bilberry\n"
        "B. mushroom\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_scienceqa("test", data_dir=tmp_path / "nowhere")


def test_missing_split():
    with pytest.raises(ValueError, match=r"'validation'.*allowed: test"):
        load_scienceqa("validation", data_dir=FIXTURE)
    with pytest.raises(ValueError, match="'tset'"):
        load_benchmark("scienceqa", split="tset", data_dir=str(FIXTURE))


def test_dir_without_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/<split>-\*\.parquet"):
        load_scienceqa("test", data_dir=tmp_path)
