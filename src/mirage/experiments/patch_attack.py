"""The patch attack (`--input patch`): a universal adversarial patch pasted onto real images, trained with
expectation over transformation (EOT).

Each step the patch lands on every training image at a random place, scale and rotation; the pasted images go
through the model's differentiable preprocessing. The patch is judged on held-out questions with their real images:
at fresh random placements, at fixed unseen places (corners and centre, no rotation) and re-read from its 8-bit PNG.
Its own loop, not `optimize`'s: each step needs the questions' real images, which `Input.forward(slots)` never sees.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .. import sources
from ..benchmarks.question import LETTERS, Benchmark, Question
from ..errors import UsageError
from ..inputs.patch import EOT, FIXED, Placement, PatchInput, fixed_placement, paste, sample_placements
from ..models.vlm import VLM, Visual
from ..registry import did_you_mean
from ..seeding import seed_for
from ..stats import accuracy_ci, json_interval, paired_difference

GOALS = ("untargeted", "targeted")


def target_index(q: Question, target: str | None, seed: int = 0) -> int | None:
    """The choice a targeted attack aims at: a letter ("B"), or "wrong" (a fixed wrong choice per question)."""
    if target is None:
        return None
    if target == "wrong":
        n = len(q.choices)
        return (q.answer + 1 + seed_for("patch-wrong", seed, q.id) % (n - 1)) % n
    if target not in LETTERS[: len(q.choices)]:
        raise UsageError(f"--target: {target!r} is not a letter of question {q.id!r} ({q.letters}) nor 'wrong'")
    return LETTERS.index(target)


def goal_loss(logits: Tensor, questions: Sequence[Question], goal: str, target: str | None, seed: int = 0) -> Tensor:
    """Per question [B]: untargeted -log(1 - p(correct)) over the choices; targeted the choices' cross-entropy
    toward the target."""
    logp = logits.float().log_softmax(-1)  # [B, C], -inf past a question's choices
    if goal == "untargeted":
        correct = logp.gather(1, torch.tensor([q.answer for q in questions], device=logp.device)[:, None])[:, 0]
        return -torch.log1p(-correct.exp().clamp(max=1 - 1e-6))
    idx = torch.tensor([target_index(q, target, seed) for q in questions], device=logp.device)
    return -logp.gather(1, idx[:, None])[:, 0]


def image_tensor(q: Question, resolution: int) -> Tensor:
    """The question's first image as [3, R, R] uint8 (resized square with PIL bicubic when needed)."""
    im = q.image(0)
    if im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()


def patch_source(goal: str, target: str | None) -> str:
    """Result rows' source: `patch-untargeted`, `patch-targeted-B`, `patch-targeted-wrong`."""
    if goal not in GOALS:
        raise UsageError(f"--goal: {did_you_mean('goal', goal, list(GOALS))}")
    if (goal == "targeted") != (target is not None):
        raise UsageError("--target (a letter or 'wrong') goes with --goal targeted, and only with it")
    return sources.patch(goal, target)


@dataclass
class PatchConfig:
    """The attack's settings; `size` None is PATCH_FRACTION of the model's largest encoder input."""

    goal: str = "untargeted"
    target: str | None = None
    size: int | None = None
    steps: int = 200
    lr: float = 0.1
    batch_size: int = 8
    eot: EOT = field(default_factory=EOT)
    checkpoint_every: int = 10
    examples: int = 12  # images with the patch saved for the report's gallery
    seed: int = 0


def train_patch(model: VLM, bench: Benchmark, train: Sequence[Question], inp: PatchInput, cfg: PatchConfig,
                source: str, run=None, quiet: bool = True, stop_after: int | None = None) -> list[dict]:
    """Optimize slot 0 of `inp` on `train` with EOT; checkpoints in `run` and resumes. Returns the history."""
    from ..optimize import resume_universal, save_universal, train_stream
    from ..progress import progress_bar

    opt = torch.optim.Adam([inp.logits], lr=cfg.lr)
    ckpt = run.artifacts_dir / f"{source}.ckpt.pt" if run else None
    start, history = resume_universal(ckpt, inp, opt, model.device)

    def save(step: int) -> None:
        save_universal(ckpt, inp, opt, step, history)

    images: dict[str, Tensor] = {}  # uint8 [3, R, R] per training question, decoded once
    r, device = inp.resolution, model.device
    with progress_bar(f"training {source}", cfg.steps - start, quiet) as advance:
        for step in range(start, cfg.steps):
            if stop_after is not None and step - start >= stop_after:
                return history
            qs = train_stream(train, step, cfg.batch_size, cfg.seed)
            for q in qs:
                if q.id not in images:
                    images[q.id] = image_tensor(q, r)
            x = torch.stack([images[q.id] for q in qs]).to(device, torch.float32) / 255  # [B, 3, R, R]
            # placements depend on (seed, step) only, so a resumed run draws the same ones
            g = torch.Generator().manual_seed(seed_for("patch-eot", cfg.seed, step) % 2**63)
            where = sample_placements(len(qs), r, inp.size, cfg.eot, g)
            slots = torch.zeros(len(qs), dtype=torch.long, device=device)
            logits = model.choice_logits([bench.prompt(q) for q in qs], inp.pasted(slots, x, where),
                                         [len(q.choices) for q in qs])
            loss = goal_loss(logits, qs, cfg.goal, cfg.target, cfg.seed)
            loss.mean().backward()
            opt.step()
            opt.zero_grad()
            correct = (logits.detach().argmax(-1).cpu() == torch.tensor([q.answer for q in qs])).float().mean()
            history.append({"step": step + 1, "loss": round(float(loss.detach().mean()), 4),
                            "batch_accuracy": float(correct)})
            if ckpt and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
                save(step + 1)
            advance(1)
    return history


def eval_placement(q: Question, resolution: int, size: int, eot: EOT, seed: int) -> Placement:
    """The random placement a held-out question is judged at, fixed by (seed, question id)."""
    g = torch.Generator().manual_seed(seed_for("patch-place", seed, q.id) % 2**63)
    return sample_placements(1, resolution, size, eot, g)


def fixed_location(q: Question, seed: int) -> str:
    """Which FIXED place a held-out question sees the patch at (spread evenly, fixed by the question id)."""
    return FIXED[seed_for("patch-fixed", seed, q.id) % len(FIXED)]


def _patched(qs: Sequence[Question], patch: Tensor, resolution: int, size: int, cfg: PatchConfig, mode: str):
    """Images [B, 3, R, R] in [0, 1] with `patch` pasted, the placements, and each row's extra fields."""
    x = torch.stack([image_tensor(q, resolution) for q in qs]).float() / 255
    if mode == "fixed":
        names = [fixed_location(q, cfg.seed) for q in qs]
        where = Placement.cat([fixed_placement(n, resolution, size) for n in names])
        extra = [{"location": n} for n in names]
    else:
        where = Placement.cat([eval_placement(q, resolution, size, cfg.eot, cfg.seed) for q in qs])
        extra = [{"placement": where.describe(i)} for i in range(len(qs))]
    return paste(x, patch.cpu()[None].expand(len(qs), -1, -1, -1), where), extra


def evaluate_patch(model: VLM, bench: Benchmark, questions: Sequence[Question], patch: Tensor, source: str,
                   cfg: PatchConfig, resolution: int, run=None, batch_size: int = 32,
                   modes: Sequence[str] = ("random", "fixed", "png")) -> list[dict]:
    """Rows of `source` (random placements, float patch through the differentiable preprocessing),
    `source-fixed` (corners and centre) and `source-png` (`patch` as given, an 8-bit PNG's, pasted onto the 8-bit
    image, rounded to 8 bits and read by the model's real processor), for the `modes` asked. Skips rows `run`
    holds."""
    from ..evaluate import score_pending
    from ..optimize import result_row

    size = patch.shape[-1]
    done = run.done() if run else set()
    rows = []
    names = {"random": source, "fixed": sources.fixed(source), "png": sources.png(source)}

    def rows_for(qs: list[Question], mode: str) -> list[dict]:
        x, extra = _patched(qs, patch, resolution, size, cfg, "fixed" if mode == "fixed" else "random")
        if mode == "png":
            arr = (x * 255).round().byte().permute(0, 2, 3, 1).numpy()
            visual = model.visual_from_images([Image.fromarray(a) for a in arr])
        else:
            visual = Visual("pixels", x.to(model.device))
        logits = model.choice_logits([bench.prompt(q) for q in qs], visual, [len(q.choices) for q in qs])
        return [result_row(q, lg.cpu(), names[mode], **e) for q, lg, e in zip(qs, logits, extra)]

    with torch.inference_mode():
        for mode in modes:
            rows += score_pending(questions, names[mode], lambda qs, m=mode: rows_for(qs, m), run, batch_size, done)
    return rows


def attack_summary(clean: dict[str, dict], attacked: dict[str, dict], questions: Sequence[Question],
                   goal: str, target: str | None, seed: int = 0) -> dict:
    """Accuracy with and without the patch on the same questions, the drop (paired bootstrap interval, McNemar),
    and the attack success rate among questions answered correctly with the clean image: flipped to a wrong answer
    (untargeted), or to the target (targeted; questions whose answer is the target do not count)."""
    qs = [q for q in questions if q.id in clean and q.id in attacked]
    before = [bool(clean[q.id]["correct"]) for q in qs]
    after = [bool(attacked[q.id]["correct"]) for q in qs]
    if goal == "untargeted":
        hit = [not a for b, a in zip(before, after) if b]
    else:
        hit = [attacked[q.id]["pred"] == LETTERS[target_index(q, target, seed)]
               for q, b in zip(qs, before) if b and target_index(q, target, seed) != q.answer]
    diff = paired_difference(before, after)
    return {"n": len(qs), "accuracy": json_interval(accuracy_ci(after)), "clean_accuracy": json_interval(accuracy_ci(before)),
            "drop": json_interval([diff["difference"], *diff["ci95"]]), "mcnemar": diff["mcnemar"],
            "n_attackable": len(hit), "success_rate": json_interval(accuracy_ci(hit))}


def save_examples(run, source: str, questions: Sequence[Question], patch: Tensor, cfg: PatchConfig,
                  resolution: int, clean: dict[str, dict], attacked: dict[str, dict]) -> Path:
    """artifacts/<source>/<qid>.png: held-out images with the patch (flipped answers first), and examples.json with
    the answers before and after."""
    folder = run.artifacts_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    pool = [q for q in questions if q.id in clean and q.id in attacked and clean[q.id]["correct"]]
    pool.sort(key=lambda q: bool(attacked[q.id]["correct"]))  # stable: flipped ones first, benchmark order within
    picked = pool[: cfg.examples]
    index = []
    if picked:
        x, _ = _patched(picked, patch, resolution, patch.shape[-1], cfg, "random")
        for q, img in zip(picked, (x * 255).round().byte().permute(0, 2, 3, 1).numpy()):
            Image.fromarray(img).save(folder / f"{q.id}.png")
            index.append({"question_id": q.id, "text": q.text, "choices": list(q.choices), "answer": q.answer_letter,
                          "before": clean[q.id]["pred"], "after": attacked[q.id]["pred"],
                          "placement": attacked[q.id].get("placement")})
    (folder / "examples.json").write_text(json.dumps(index, indent=1))
    return folder


def run_patch(model: VLM, bench: Benchmark, run, goal: str = "untargeted", target: str | None = None,
              train: int = 200, steps: int = 200, size: int | None = None, seed: int = 0, lr: float = 0.1,
              batch_size: int = 8, eot: EOT | None = None, heldout: int | None = None, checkpoint_every: int = 10,
              quiet: bool = True, stop_after: int | None = None) -> dict:
    """Train a universal patch on the first `train` questions of `bench` and attack the next `heldout` (default:
    all the rest) with their real images; rows, the patch PNG, examples and `<source>.summary.json` go to `run`.

    Resumes from the run's checkpoint and rows. Returns the summary: per evaluation (random places, fixed places,
    PNG, and `patch-random`: the untrained noise patch at the same places, the occlusion control) accuracy, drop
    and success rate with 95% intervals, and the success rate per fixed place."""
    from ..conditions import get_condition
    from ..evaluate import evaluate_conditions
    from ..optimize import save_artifact
    from .common import check_train

    check_train(train, len(bench))
    source = patch_source(goal, target)
    cfg = PatchConfig(goal, target, size, steps, lr, batch_size, eot or EOT(), checkpoint_every, seed=seed)
    t0 = time.time()
    train_qs = [q for q in bench.questions[:train] if q.images]
    held = [q for q in bench.questions[train:][:heldout] if q.images]
    inp = PatchInput(model, 1, size, seed).to(model.device)
    history = train_patch(model, bench, train_qs, inp, cfg, source, run, quiet, stop_after)
    if len(history) < steps:
        return {"source": source, "stopped_at": len(history)}
    train_s = time.time() - t0
    png = save_artifact(inp, 0, run.artifacts_dir, source)
    (run.artifacts_dir / f"{source}.history.json").write_text(json.dumps(history))
    with Image.open(png) as im:  # every later evaluation reads the patch back from its PNG
        patch = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
    held_bench = replace(bench, questions=held)
    evaluate_conditions(model, held_bench, [get_condition("real")], run=run, quiet=True)
    evaluate_patch(model, bench, held, patch, source, cfg, inp.resolution, run)
    # the control: the untrained random patch at the same places tells occlusion from attack
    start = PatchInput(model, 1, size, seed)
    start.reset(0, "universal")
    control = (start.export(0)["pixels"] * 255).round() / 255
    evaluate_patch(model, bench, held, control, sources.PATCH_RANDOM, cfg, inp.resolution, run,
                   modes=("random",))
    by: dict[str, dict[str, dict]] = {}
    for r in run.rows():
        by.setdefault(r["source"], {})[r["question_id"]] = r
    clean, random = by.get("real", {}), by.get(sources.PATCH_RANDOM, {})
    out = {"source": source, "goal": goal, "target": target, "size": inp.size, "resolution": inp.resolution,
           "steps": steps, "n_train": len(train_qs), "n_heldout": len(held), "config": asdict(cfg),
           "patch": str(png.relative_to(run.path)), "train_seconds": round(train_s, 1), "evaluations": {}}
    for name in (source, sources.fixed(source), sources.png(source), sources.PATCH_RANDOM):
        attacked = by.get(name, {})
        out["evaluations"][name] = attack_summary(clean, attacked, held, goal, target, seed)
        if name != sources.PATCH_RANDOM:  # the drop beyond the random patch's occlusion, on the same questions
            shared = [q.id for q in held if q.id in random and q.id in attacked]
            out["evaluations"][name]["drop_vs_random"] = paired_difference(
                [random[q]["correct"] for q in shared], [attacked[q]["correct"] for q in shared])
    fixed = by.get(sources.fixed(source), {})
    out["by_location"] = {loc: attack_summary(clean, {k: v for k, v in fixed.items() if v["location"] == loc},
                                              held, goal, target, seed)["success_rate"] for loc in FIXED}
    save_examples(run, source, held, patch, cfg, inp.resolution, clean, by.get(source, {}))
    out["seconds"] = round(time.time() - t0, 1)
    run.write_json(f"{source}.summary.json", out)
    return out
