"""The spec-driven hub loader: bad input named by benchmark/file/row/field, a user's own spec file, hub downloads
of only the asked config and split, the registry's options, and circular evaluation end to end."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mirage.benchmarks import ImageLoadError, benchmark_options, list_benchmarks, load_benchmark
from mirage.benchmarks.circular import circular_rows
from mirage.benchmarks.spec import bundled_specs

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
AI2D = pa.schema([("question", pa.string()), ("options", pa.list_(pa.string())), ("answer", pa.string()),
                  ("image", IMAGE)])


def png() -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 90, 200)).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def ai2d_dir(root: Path, rows: list[dict], schema: pa.Schema = AI2D) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "data" / "test-00000-of-00001.parquet")
    return root


def good(**kw) -> dict:
    return {"question": "Which?", "options": ["a", "b", "c"], "answer": "1", "image": png(), **kw}


def test_every_bundled_spec_is_valid_and_listed():
    specs = bundled_specs()
    assert set(specs) == {"ai2d", "cvbench", "mathvista", "mmbench", "mmmu", "mmmu-pro", "mmstar", "pope",
                          "realworldqa", "scienceqa", "seedbench"}
    assert all("lmms_eval/tasks/" in s.follows for n, s in specs.items() if n != "mmmu")  # MMMU: its own runner
    listed = {b["name"]: b for b in list_benchmarks()}
    assert listed["mmstar"]["splits"] == {"val": 1500} and listed["mmmu-pro"]["splits"]["4/test"] == 1730
    assert {"mmmu", "scienceqa", "shapes"} <= set(listed) and listed["mmmu"]["splits"]["validation"] == 900


def test_options_come_from_the_registry():
    assert benchmark_options("mmmu-pro") == ("data_dir", "options", "circular")
    assert benchmark_options("mmstar") == ("data_dir", "circular")
    assert benchmark_options("mmmu") == ("data_dir", "subjects") and benchmark_options("shapes") == ()
    with pytest.raises(ValueError, match="did you mean 'mmstar'"):
        benchmark_options("mmstra")


def test_missing_column_names_benchmark_file_and_column(tmp_path):
    schema = pa.schema([f for f in AI2D if f.name != "options"])
    root = ai2d_dir(tmp_path, [{"question": "q", "answer": "0", "image": png()}], schema)
    with pytest.raises(ValueError, match=r"ai2d: .*test-00000-of-00001\.parquet: column\(s\) \['options'\] missing"):
        load_benchmark("ai2d", data_dir=str(root))


def test_answer_outside_choices_names_row_and_field(tmp_path):
    root = ai2d_dir(tmp_path, [good(), good(answer="7")])
    with pytest.raises(ValueError, match=r"ai2d: .*\.parquet, row 1: field 'answer': answer '7' is not one of the 3"):
        load_benchmark("ai2d", data_dir=str(root))


def test_a_question_whose_image_cannot_be_read_is_skipped_and_recorded(tmp_path, capsys):
    root = ai2d_dir(tmp_path, [good(), good(), good(image={"bytes": b"not an image", "path": None})])
    bench = load_benchmark("ai2d", data_dir=str(root))
    assert [q.id for q in bench] == ["ai2d-test-00000", "ai2d-test-00001"] and len(bench.split_questions) == 3
    assert bench.identity()["skipped_unreadable"] == {"ai2d-test-00002": bench.skipped["ai2d-test-00002"]}
    assert "cannot read image" in bench.skipped["ai2d-test-00002"]
    assert "ai2d: question 'ai2d-test-00002' skipped" in " ".join(capsys.readouterr().err.split())
    assert len(load_benchmark("ai2d", data_dir=str(root), limit=2)) == 2 and not capsys.readouterr().err  # not asked
    with pytest.raises(ImageLoadError, match="none of the 1 questions asked"):
        load_benchmark("ai2d", data_dir=str(ai2d_dir(tmp_path / "b", [good(image={"bytes": b"x", "path": None})])))


def test_missing_data_dir_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_benchmark("ai2d", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"no 'test' files .* data/test-\*\.parquet"):
        load_benchmark("ai2d", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="did you mean 'test'"):
        load_benchmark("ai2d", split="tset", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown cvbench config '2d'; did you mean '2D'"):
        load_benchmark("cvbench", data_dir=str(tmp_path), config="2d")


def test_user_spec_file(tmp_path):
    root = ai2d_dir(tmp_path / "data_root", [good(answer="c"), good(answer="a")])
    spec = tmp_path / "mine.toml"
    spec.write_text('name = "mine"\nhub = "me/mine"\nfollows = "my own"\ndefault_split = "test"\n'
                    'question = "question"\nchoices = "options"\nanswer = "answer"\nanswer_format = "text"\n'
                    'images = ["image"]\nprompt_style = "options"\n'
                    '[configs.default]\ntest = ["data/test-*.parquet"]\n'
                    '[prompt]\npost_prompt = "\\nPick one."\n')
    bench = load_benchmark(f"spec:{spec}", data_dir=str(root), limit=1)
    assert (bench.name, len(bench), bench[0].answer) == ("mine", 1, 2)
    assert bench.prompt(bench[0]) == "Which?\nA. a\nB. b\nC. c\nPick one."
    assert benchmark_options(f"spec:{spec}") == ("data_dir", "circular")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n')
    with pytest.raises(ValueError, match=r"bad\.toml: field 'configs' is missing"):
        load_benchmark(f"spec:{bad}")


def test_hub_download_asks_only_for_the_config_and_split(tmp_path, monkeypatch):
    import huggingface_hub

    root = tmp_path / "snapshot"
    (root / "standard (4 options)").mkdir(parents=True)
    calls = []

    def fake_snapshot_download(repo_id, repo_type, allow_patterns):
        calls.append((repo_id, repo_type, allow_patterns))
        return str(root)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(FileNotFoundError):  # the fake snapshot is empty: what matters is what was asked for
        load_benchmark("mmmu-pro", options=4)
    assert calls == [("MMMU/MMMU_Pro", "dataset", ["standard (4 options)/test-*.parquet"])]
    with pytest.raises(FileNotFoundError):
        load_benchmark("pope", repo="lmms-lab-encoder/POPE")
    assert calls[-1] == ("lmms-lab-encoder/POPE", "dataset", ["data/test-*.parquet"])
    with pytest.raises(ValueError, match="neither 'lmms-lab/POPE'"):
        load_benchmark("pope", repo="someone/POPE")


def test_circular_rows_need_every_rotation():
    rows = [{"question_id": f"q@r{k}", "source": "real", "correct": ok, "type": "t",
             "circular": {"group": "q", "rotation": k}} for k, ok in enumerate([True, False, True])]
    rows += [{"question_id": f"p@r{k}", "source": "real", "correct": True, "type": "t",
              "circular": {"group": "p", "rotation": k}} for k in range(2)]
    out = {r["question_id"]: r for r in circular_rows(rows)}
    assert out["q"]["correct"] is False and out["q"]["correct_rotations"] == 2 and out["q"]["rotations"] == 3
    assert out["p"]["correct"] is True


def test_circular_evaluation_end_to_end(tiny_model, tmp_path):
    from mirage.evaluate import evaluate

    root = ai2d_dir(tmp_path, [good(), good(options=["x", "y"], answer="0")])
    bench = load_benchmark("ai2d", data_dir=str(root), circular=True)
    assert [q.id for q in bench] == ["ai2d-test-00000@r0", "ai2d-test-00000@r1", "ai2d-test-00000@r2",
                                     "ai2d-test-00001@r0", "ai2d-test-00001@r1"]
    result = evaluate(tiny_model, bench, "real")
    assert [r["circular"]["rotation"] for r in result.rows] == [0, 1, 2, 0, 1]
    circ = result.summary["circular"]
    assert circ["n"]["real"] == 2
    by_group: dict[str, list[bool]] = {}
    for r in result.rows:
        by_group.setdefault(r["circular"]["group"], []).append(r["correct"])
    assert circ["accuracy"]["real"] == pytest.approx(sum(all(v) for v in by_group.values()) / 2)


def test_cli_lists_and_evaluates_a_spec_benchmark(tmp_path, tiny_model):
    import json

    from typer.testing import CliRunner

    from mirage.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["benchmarks"])
    assert listed.exit_code == 0 and "Lin-Chen/MMStar" in listed.output and "val (1,500)" in listed.output
    tiny_model.save_pretrained(tmp_path / "tiny")
    root = ai2d_dir(tmp_path / "ai2d", [good(), good(options=["x", "y"], answer="0")])
    args = ["eval", "--model", f"demo:{tmp_path / 'tiny'}", "--benchmark", "ai2d", "--data-dir", str(root),
            "--conditions", "real,blank", "--circular", "-q", "--out", str(tmp_path / "run")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n"]["real"] == 5 and summary["circular"]["n"] == {"real": 2, "blank": 2}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["circular"] is True
    bad = runner.invoke(app, ["eval", "--benchmark", "ai2d", "--data-dir", str(root), "--config", "2D",
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--config applies to cvbench, not 'ai2d'" in bad.output


SCIENCEQA = Path("/work/shared/fixtures/scienceqa")


@pytest.mark.skipif(not SCIENCEQA.is_dir(), reason="ScienceQA fixture not available")
def test_scienceqa_spec_prompt_is_the_official_one():
    from mirage.benchmarks.hub import spec_prompt
    from mirage.benchmarks.scienceqa import build_prompt
    from mirage.benchmarks.spec import SPEC_DIR, load_spec

    bench = load_benchmark("scienceqa", data_dir=str(SCIENCEQA))
    assert any(q.meta["hint"] for q in bench) and not all(q.meta["hint"] for q in bench)
    styled = spec_prompt(load_spec(SPEC_DIR / "scienceqa.toml"))
    assert [styled(q) for q in bench] == [build_prompt(q) for q in bench]
    # the same spec through the generic path gives the same questions
    mine = load_benchmark(f"spec:{SPEC_DIR / 'scienceqa.toml'}", data_dir=str(SCIENCEQA))
    assert [(q.id, q.choices, q.answer) for q in mine] == [(q.id, q.choices, q.answer) for q in bench]


def test_mmmu_from_the_hub_asks_only_for_its_subjects_split(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, repo_type, allow_patterns: calls.append((repo_id, allow_patterns)) or str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'Music'"):  # nothing was downloaded into the fake snapshot
        load_benchmark("mmmu", split="dev", subjects=["Music", "Art"])
    assert calls == [("MMMU/MMMU", ["Music/dev-*.parquet", "Art/dev-*.parquet"])]


def test_cli_flags_map_to_each_benchmarks_loader_options(tmp_path):
    from mirage.cli.common import benchmark_options as cli_options
    from mirage.errors import UsageError

    assert cli_options("mmmu-pro", None, None, False, config="4") == {"options": "4"}
    assert cli_options("cvbench", tmp_path, None, False, config="3D") == {"data_dir": str(tmp_path), "config": "3D"}
    assert cli_options("mmbench", None, None, False, circular=True) == {"circular": True}
    assert cli_options("scienceqa", tmp_path, None, True) == {"data_dir": str(tmp_path), "all_questions": True}
    with pytest.raises(UsageError, match="--data-dir applies to .*mmstar.* not 'shapes'"):
        cli_options("shapes", tmp_path, None, False)
    with pytest.raises(UsageError, match="--circular applies to .* not 'mmmu'"):
        cli_options("mmmu", None, None, False, circular=True)
