import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from mirage.cli.invert import invert_cmd
from mirage.experiments.inversion import InversionConfig, invert_batch, load_targets, run_inversion
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

NAMES = ["clip", "siglip", "dino", "convnext"]
# cosine only, no augmentation: each step lowers exactly the loss whose improvement the tests check
FAST = InversionConfig(steps=8, batch_size=4, lr=0.1, mse=0.0, resolution=112)
STAGE1 = OptimizeConfig(steps=3, batch_size=4)  # stage 1 is tested with the optimizer; here it only has to exist


@pytest.fixture(scope="module")
def inverted(tiny_model, small_bench, tmp_path_factory):
    """Three questions inverted through all encoders, stage 1 optimized on the fly into the same run."""
    run = RunDir.open(tmp_path_factory.mktemp("inv") / "run", {"x": 1})
    summary = run_inversion(tiny_model, small_bench, run, n=3, cfg=FAST, stage1=STAGE1)
    return run, summary


def test_feature_match_improves_and_rows_are_written(inverted):
    run, summary = inverted
    rows = [r for r in run.rows() if r["source"] == "inversion-question"]
    assert len(rows) == 3 and all(set(r["cos_end"]) == set(NAMES) for r in rows)
    for name in NAMES:
        assert summary["cos_end"][name] > summary["cos_start"][name], name
    assert {r["source"] for r in run.rows()} == {"features-question", "inversion-question", "inversion-question-png"}
    assert summary["accuracy"]["inversion-question"]["n"] == summary["accuracy"]["inversion-question-png"]["n"] == 3


def test_png_recheck_reads_the_saved_image(inverted, small_bench):
    run, _ = inverted
    pngs = [r for r in run.rows() if r["source"] == "inversion-question-png"]
    # rows are appended in batches of one prompt length (prefetch.length_batches), not in question order
    assert sorted(r["question_id"] for r in pngs) == sorted(q.id for q in small_bench.questions[:3])
    for r in pngs:
        with Image.open(run.artifacts_dir / "inversion-question" / f"{r['question_id']}.png") as im:
            assert im.size == (112, 112) and np.asarray(im).std() > 0


def test_encoder_subset_and_resume(inverted, tiny_model, small_bench, tmp_path):
    source_run, _ = inverted
    run = RunDir.open(tmp_path / "run", {"x": 1})
    summary = run_inversion(tiny_model, small_bench, run, n=2, encoders=["clip"], targets_from=source_run, cfg=FAST)
    rows = run.rows()
    assert summary["source"] == "inversion-question-clip" and summary["encoders"] == ["clip"]
    assert summary["cos_end"]["clip"] > summary["cos_start"]["clip"]
    assert [set(r["cos_end"]) for r in rows if r["source"] == "inversion-question-clip"] == [{"clip"}] * 2
    assert (run.artifacts_dir / "inversion-question-clip" / f"{small_bench[0].id}.png").is_file()
    run_inversion(tiny_model, small_bench, run, n=3, encoders=["clip"], targets_from=source_run, cfg=FAST)
    again = run.rows()
    assert again[:4] == rows  # the first two questions' rows were kept, not redone
    assert [r["question_id"] for r in again[4:]] == [small_bench[2].id] * 2  # inversion-clip + its png re-check
    with pytest.raises(FileNotFoundError, match=small_bench[3].id):  # no stage-1 features for the 4th question
        run_inversion(tiny_model, small_bench, run, n=4, encoders=["clip"], targets_from=source_run, cfg=FAST)


def test_a_question_does_not_depend_on_its_batch_mates(inverted, tiny_model, small_bench):
    run, _ = inverted
    qs = small_bench.questions[:2]
    targets = load_targets(run.path, qs, ["clip"])
    cfg = InversionConfig(steps=3, lr=0.1, augment=True, tv=0.1, resolution=112)  # augmentations drawn per question
    together, _ = invert_batch(tiny_model, qs, targets, ["clip"], cfg)
    alone, _ = invert_batch(tiny_model, qs[1:], targets, ["clip"], cfg)
    assert torch.allclose(together[1], alone[0], atol=1e-4)


def test_blank_start_targets_begin_near_an_image(tiny_model, small_bench, tmp_path):
    run = RunDir.open(tmp_path / "run", {"x": 1})
    cfg = InversionConfig(steps=2, batch_size=2, start="blank")
    summary = run_inversion(tiny_model, small_bench, run, n=1, encoders=["clip"], cfg=cfg, stage1=STAGE1)
    assert summary["source"] == "inversion-question-clip-from-blank"
    with Image.open(run.artifacts_dir / "inversion-question-clip-from-blank" / f"{small_bench[0].id}.png") as im:
        assert im.size == (224, 224)  # by default the largest encoder input, as pixels-question
    assert {r["source"] for r in run.rows()} == {"features-question-from-blank", "inversion-question-clip-from-blank",
                                                  "inversion-question-clip-from-blank-png"}
    with pytest.raises(ValueError, match="did you mean 'blank'"):
        InversionConfig(start="blnak")


def test_cli_inverts_from_a_run_and_refuses_unknown_encoders(inverted, shapes_cli, tmp_path):
    model_dir = shapes_cli
    app = typer.Typer()
    app.command("invert")(invert_cmd)
    app.command("other")(lambda: None)  # a second command, so typer keeps the command name
    runner = CliRunner()
    source_run, _ = inverted
    out = tmp_path / "run"
    args = ["invert", "--model", f"demo:{model_dir}", "--from", str(source_run.path), "--steps", "2", "--limit", "2",
            "--out", str(out), "-q"]
    res = runner.invoke(app, [*args, "--encoders", "clip"])
    assert res.exit_code == 0, res.output
    assert "inversion-question-clip" in res.output and "cos_end" in res.output
    bad = runner.invoke(app, [*args[:-3], "--out", str(tmp_path / "bad"), "--encoders", "clipp"])
    assert bad.exit_code == 2 and "did you mean 'clip'" in bad.output
    assert not (tmp_path / "bad").exists()
