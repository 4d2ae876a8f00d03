import copy
import json

import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from mirage.cli.saliency import saliency_cmd
from mirage.benchmarks.question import Benchmark, Question
from mirage.runs import RunDir
from mirage.experiments.saliency import (SALIENCY_METHODS, SaliencyConfig, energy_in_box, pointing_hit, run_saliency,
                             saliency_maps, saliency_rows, target_mask, to_pixels)


def _maps(model, bench, qs, method="gradient", encoder=None, cfg=None):
    px = to_pixels([q.image() for q in qs], 224)
    return saliency_maps(model, [bench.prompt(q) for q in qs], px, [q.answer for q in qs],
                         [len(q.choices) for q in qs], method, encoder, cfg=cfg)


@pytest.fixture(scope="module")
def top_left_model(tiny_model):
    """The tiny model, but its preprocessing keeps only the image's top-left quadrant."""
    model = copy.copy(tiny_model)
    base = tiny_model.preprocess

    def preprocess(pixels, names=None):
        half = pixels.shape[-1] // 2
        mask = torch.zeros_like(pixels)
        mask[..., :half, :half] = 1
        return base(pixels * mask, names)

    model.preprocess = preprocess
    return model


def test_gradient_map_has_the_image_shape_and_is_nonzero(tiny_model, small_bench):
    maps = _maps(tiny_model, small_bench, small_bench.questions[:2])
    assert maps.shape == (2, 224, 224)
    assert (maps >= 0).all() and (maps.flatten(1).sum(1) > 0).all()


@pytest.mark.parametrize("method", SALIENCY_METHODS.names())
def test_every_method_finds_the_only_quadrant_the_model_sees(top_left_model, small_bench, method):
    cfg = SaliencyConfig(smooth_samples=2, ig_steps=3)
    maps = _maps(top_left_model, small_bench, small_bench.questions[:2], method, cfg=cfg)
    assert maps.shape == (2, 224, 224)
    inside = maps[:, :112, :112].flatten(1).sum(1)
    assert (inside > 0).all() and (inside / maps.flatten(1).sum(1) > 0.999).all()


def test_expanded_batches_find_their_prompts(tiny_model, small_bench):
    # IG runs path points of several questions in one forward: each must be asked its own question
    qs = small_bench.questions[:3]
    cfg = SaliencyConfig(ig_steps=3)
    together = _maps(tiny_model, small_bench, qs, "ig", cfg=cfg)
    alone = torch.cat([_maps(tiny_model, small_bench, [q], "ig", cfg=cfg) for q in qs])
    assert torch.allclose(together, alone, rtol=1e-3, atol=1e-6 * float(alone.max()))


def test_pointing_game_and_energy_in_box_on_a_hand_made_case():
    q = Question("q", "what colour is the circle ?", ("red", "blue"), 0, images=(_png(200, 100),),
                 meta={"boxes": [[0, 0, 100, 50]]})  # the left half of the top half
    mask = target_mask(q, 20)  # boxes scale from 200x100 image pixels to a 20x20 grid
    assert mask.shape == (20, 20) and mask[:10, :10].all() and mask.sum() == 100
    smap = torch.zeros(20, 20)
    smap[2, 3] = 3.0  # inside
    smap[15, 15] = 1.0  # outside
    assert pointing_hit(smap, mask) and energy_in_box(smap, mask) == pytest.approx(0.75)
    smap[15, 15] = 5.0
    assert not pointing_hit(smap, mask) and energy_in_box(smap, mask) == pytest.approx(3 / 8)
    assert energy_in_box(torch.zeros(20, 20), mask) == 0.0
    assert target_mask(Question("p", "t", ("a", "b"), 0, images=(_png(4, 4),), meta={"boxes": []}), 8) is None


def test_per_encoder_maps_differ_and_are_nonzero(tiny_model, small_bench):
    qs = small_bench.questions[:1]
    maps = {s.name: _maps(tiny_model, small_bench, qs, encoder=s.name)[0] for s in tiny_model.encoders}
    assert all(m.sum() > 0 for m in maps.values())
    names = list(maps)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(maps[a], maps[b]), (a, b)


def test_run_saliency_writes_maps_rows_and_resumes(tiny_model, small_bench, tmp_path):
    run = RunDir.open(tmp_path / "run", {"x": 1})
    summary = run_saliency(tiny_model, small_bench, run, "gradient", n=3)
    rows = saliency_rows(run).rows()
    assert [r["source"] for r in rows] == ["saliency-gradient"] * 3 and not run.rows()  # results.jsonl untouched
    folder = run.artifacts_dir / "saliency-gradient"
    for q in small_bench.questions[:3]:
        assert (folder / f"{q.id}-real.png").is_file() and (folder / f"{q.id}-wrong.png").is_file()
        maps = load_file(str(folder / f"{q.id}.safetensors"))
        assert maps["real"].shape == maps["wrong"].shape == (224, 224)
    scored = [r for r in rows if r["box_fraction"] is not None]
    assert scored and all(0 < r["box_fraction"] < 1 and 0 <= r["energy_real"] <= 1 for r in scored)
    assert sum(f["n"] for t, f in summary["saliency-gradient"].items() if t != "all") == len(scored)
    assert json.loads((run.path / "saliency-summary.json").read_text()) == summary
    run_saliency(tiny_model, small_bench, run, "gradient", n=5)  # resumes: only the two new questions
    again = saliency_rows(run).rows()
    assert again[:3] == rows and [r["question_id"] for r in again[3:]] == [q.id for q in small_bench.questions[3:5]]


def test_prior_questions_get_maps_but_no_numbers(tiny_model, small_bench, tmp_path):
    prior = [q for q in small_bench if q.type == "prior"][0]
    run = RunDir.open(tmp_path / "run", {"x": 1})
    bench = Benchmark("shapes", "test", [prior, *(q for q in small_bench if q is not prior)])
    run_saliency(tiny_model, bench, run, "gradient", n=1)
    (row,) = saliency_rows(run).rows()
    assert row["type"] == "prior" and row["box_fraction"] is None and row["hit_real"] is None


def test_cli_writes_a_run_and_refuses_unknown_methods(shapes_cli, tmp_path):
    model_dir = shapes_cli
    app = typer.Typer()
    app.command("saliency")(saliency_cmd)
    app.command("other")(lambda: None)  # a second command, so typer keeps the command name
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["saliency", "--model", f"demo:{model_dir}", "--limit", "2", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "saliency-gradient" in res.output and len((out / "saliency.jsonl").read_text().splitlines()) == 2
    bad = runner.invoke(app, ["saliency", "--method", "gradiant", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "did you mean 'gradient'" in bad.output
    assert not (tmp_path / "bad").exists()


def _png(w, h):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()
