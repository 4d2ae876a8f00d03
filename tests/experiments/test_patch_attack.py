import json

import pytest
import torch
from PIL import Image

from mirage.benchmarks.question import Benchmark
from mirage.experiments import own_loop
from mirage.experiments import patch_attack
from mirage.experiments.patch_attack import goal_loss, patch_source, run_patch, target_index
from mirage.inputs import INPUTS, build_input
from mirage.inputs import patch as patch_mod
from mirage.inputs.patch import FIXED, PatchInput
from mirage.runs import RunDir


pytestmark = pytest.mark.usefixtures("one_thread")


def test_eot_transforms_are_drawn_per_step_and_reproducible(tiny_model, small_bench, monkeypatch):
    seen = []
    real_paste = patch_mod.paste

    def spy(images, patch, placement):
        seen.append(torch.cat([placement.center, placement.scale[:, None], placement.angle[:, None]], 1))
        return real_paste(images, patch, placement)

    monkeypatch.setattr(patch_mod, "paste", spy)
    train = small_bench.questions[:4]
    runs = {}
    for seed in (0, 0, 1):
        seen.clear()
        inp = PatchInput(tiny_model, 1, 16, seed)
        cfg = patch_attack.PatchConfig(steps=3, batch_size=2, seed=seed)
        patch_attack.train_patch(tiny_model, small_bench, train, inp, cfg, "p")
        runs.setdefault(seed, []).append(torch.stack(seen))  # [steps, B, 5]
    first = runs[0][0]
    assert not torch.allclose(first[0], first[1]) and not torch.allclose(first[1], first[2])  # new draws each step
    assert torch.equal(runs[0][0], runs[0][1])  # same seed, same transforms
    assert not torch.allclose(runs[0][0], runs[1][0])  # another seed, other transforms


def test_goals_and_targets(small_bench):
    qs = small_bench.questions[:4]
    logits = torch.zeros(4, 4)
    answers = torch.tensor([q.answer for q in qs])
    sure_right = logits.scatter(1, answers[:, None], 5.0)
    sure_wrong = logits.scatter(1, answers[:, None], -5.0)
    assert (goal_loss(sure_right, qs, "untargeted", None) > goal_loss(sure_wrong, qs, "untargeted", None)).all()
    assert all(target_index(q, "wrong") != q.answer for q in small_bench)
    towards_a = logits.clone()
    towards_a[:, 0] = 5.0
    assert (goal_loss(towards_a, qs, "targeted", "A") < goal_loss(logits, qs, "targeted", "A")).all()
    assert patch_source("targeted", "wrong") == "patch-targeted-wrong"
    with pytest.raises(ValueError, match="did you mean 'untargeted'"):
        patch_source("untargetted", None)
    with pytest.raises(ValueError, match="--target"):
        patch_source("untargeted", "B")


def test_patch_is_a_registered_input_with_its_own_loop(tiny_model):
    inp = build_input("patch", tiny_model, 1, None)
    r = max(s.image_size for s in tiny_model.encoders)
    assert "patch" in INPUTS and isinstance(inp, PatchInput) and inp.size == round(64 / 336 * r)
    assert own_loop("patch") is run_patch and own_loop("features") is None
    with pytest.raises(ValueError, match="real images"):
        inp(torch.zeros(1, dtype=torch.long))


def test_run_patch_writes_rows_png_examples_and_resumes(tiny_model, small_bench, tmp_path):
    bench = Benchmark("shapes", "test", small_bench.questions[:12])
    kw = dict(train=6, steps=3, size=24, batch_size=3, checkpoint_every=1)
    whole = RunDir.open(tmp_path / "whole", {"x": 1})
    out = run_patch(tiny_model, bench, whole, **kw)
    killed = RunDir.open(tmp_path / "killed", {"x": 1})
    assert run_patch(tiny_model, bench, killed, stop_after=2, **kw) == {"source": "patch-untargeted", "stopped_at": 2}
    again = run_patch(tiny_model, bench, killed, **kw)
    for run in (whole, killed):
        assert (run.artifacts_dir / "patch-untargeted.png").read_bytes() == \
            (whole.artifacts_dir / "patch-untargeted.png").read_bytes()
    assert again["evaluations"] == out["evaluations"]
    rows = whole.rows()
    held = {q.id for q in bench.questions[6:]}
    for src in ("real", "patch-untargeted", "patch-untargeted-fixed", "patch-untargeted-png", "patch-random"):
        assert {r["question_id"] for r in rows if r["source"] == src} == held
    assert {r["location"] for r in rows if r["source"] == "patch-untargeted-fixed"} <= set(FIXED)
    with Image.open(whole.artifacts_dir / "patch-untargeted.png") as im:
        assert im.size == (24, 24)
    ev = out["evaluations"]["patch-untargeted"]
    assert set(ev) >= {"accuracy", "clean_accuracy", "drop", "success_rate", "mcnemar", "n_attackable"}
    assert ev["n"] == 6 and len(ev["success_rate"]) == 3
    examples = json.loads((whole.artifacts_dir / "patch-untargeted" / "examples.json").read_text())
    saved = {p.stem for p in (whole.artifacts_dir / "patch-untargeted").glob("*.png")}
    assert {e["question_id"] for e in examples} == saved
    assert json.loads((whole.path / "patch-untargeted.summary.json").read_text())["source"] == "patch-untargeted"

