"""Two-stage embedding inversion (the seed's idea): stage 1 finds per-question encoder features that make the model
answer (`features-question`, cheap and nearly always successful); stage 2 optimizes pixels so that the encoders'
outputs on them match those features (cosine + scale-normalised MSE per encoder, through all encoders or a subset),
with image priors as options: a Fourier parameterization with decorrelated colour (the default), a random jitter /
scale / rotation each step (kornia, differentiable) and a total-variation penalty.

Rows: `inversion` (the model on the inverted float image, all encoders, plus per-encoder feature cosines at the
start and the end) and `inversion-png` (the saved 8-bit PNG through the model's real processor, as
`pixels-question-png` is for pixels optimized directly). Inverting through a subset of encoders adds it to the name:
`inversion-clip`, `inversion-clip+dino`.

Stage 1 as the study runs it (`features-question`) starts each question from random features at the scale of real
ones and stops as soon as the answer is secured (a few Adam steps), so its features are mostly that random start:
no image has features near them (the real image's cosine to them is ~0). `start="blank"` runs stage 1 from the blank
image's features instead (source `features-question-from-blank`, same loop and settings), so the target is an
image's features plus what the answer needs; its inversions are named `inversion-question[-<encoders>]-from-blank`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from .. import sources
from ..benchmarks.question import Benchmark, Question
from ..errors import MirageError, UsageError
from ..evaluate import evaluate_conditions
from ..inputs import PARAMS, FeatureInput, PixelInput, Reference, check_encoders, default_lr
from ..models.vlm import VLM, Visual
from ..objectives import OBJECTIVES
from ..optimize import OptimizeConfig, optimize_questions, result_row
from ..progress import progress_bar
from ..registry import did_you_mean
from ..runs import RunDir
from ..seeding import seed_for
from .optimization import OptimizeSpec, png_condition, run_optimization

# stage 1's source (rows, and artifacts/<source>/<qid>.safetensors) by where its features start
TARGET_SOURCES = {"random": sources.optimized("features", "question"),
                  "blank": sources.optimized("features", "question", start="blank")}
# inversion's own steps (feature matching, not answer CE); a parameterization not named here takes its `optimize` lr
DEFAULT_LR = {"fourier": 0.05, "sigmoid": 0.1, "raw": 0.02}
COMPARE = ("real", "blank", *TARGET_SOURCES.values(), sources.optimized("pixels", "question"),
           sources.png(sources.optimized("pixels", "question")))


@dataclass
class InversionConfig:
    """Stage 2's settings; `lr` None means the parameterization's default (DEFAULT_LR)."""

    steps: int = 100
    lr: float | None = None
    param: str = "fourier"  # fourier (decorrelated colour, 1/f spectrum), sigmoid or raw
    resolution: int | None = None  # image side (default: the largest encoder input, as pixels-question)
    batch_size: int = 16
    cosine: float = 1.0  # weight of (1 - cosine), per token over the feature dimension
    mse: float = 1.0  # weight of the MSE divided by the target's mean square
    tv: float = 0.0  # weight of the total-variation penalty
    # random jitter / scale / rotation of the image each step (lucid's transforms); off by default: on the demo
    # model (16 questions, blank start, 300 steps) it cut the final cosines from 0.60-0.78 to 0.18-0.58 and the
    # accuracy on the inverted images from 0.56 to 0.31
    augment: bool = False
    jitter: float = 0.05  # random translation, up to this fraction of the side
    scale: float = 0.1  # random scale in [1 - scale, 1 + scale]
    rotate: float = 5.0  # random rotation in [-rotate, rotate] degrees
    weights: dict[str, float] | None = None  # per-encoder loss weights (default 1 each)
    start: str = "random"  # stage 1 starts from: random features (features-question) or the blank image's
    seed: int = 0

    def __post_init__(self) -> None:
        if self.param not in PARAMS:
            raise UsageError(f"--param: {did_you_mean('pixel parameterization', self.param, list(PARAMS))}")
        if self.start not in TARGET_SOURCES:
            raise UsageError(f"--start: {did_you_mean('stage-1 start', self.start, list(TARGET_SOURCES))}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR[self.param] if self.param in DEFAULT_LR else default_lr("pixels", self.param)

    def to_config(self) -> dict:
        d = asdict(self)
        d.pop("batch_size")
        return json.loads(json.dumps(d))


def source_name(encoders: Sequence[str] | None, start: str = "random") -> str:
    """`inversion-question[-<e1>+<e2>]`, plus `-from-blank` from blank-start features (`sources.inversion`)."""
    return sources.inversion(encoders, start)


class BlankStartFeatures(FeatureInput):
    """`features` whose every slot starts at the blank image's features (stage 1 for `start="blank"`)."""

    def __init__(self, model: VLM, slots: int, ref: Reference, seed: int = 0):
        super().__init__(model, slots, ref.feature_scale, ref.blank_features, seed=seed)
        for name, value in ref.blank_features.items():
            self.register_buffer(f"start_{name}", value[0].detach().float().cpu())

    def reset(self, slot: int, key: str) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                p[slot] = getattr(self, f"start_{name}").to(p.device, p.dtype)


# --- stage 1: the target features ----------------------------------------------------------------------------------
def load_targets(directory: str | Path, questions: Sequence[Question], encoders: Sequence[str],
                 source: str = TARGET_SOURCES["random"]) -> dict[str, dict]:
    """Per question id, the stage-1 tensors {encoder: [T, D]} of `source` saved in run directory `directory`."""
    out = {}
    for q in questions:
        path = Path(directory) / "artifacts" / source / f"{q.id}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"no optimized features for question {q.id!r}: {path} does not exist "
                                    f"(run `mirage optimize --input features` into {directory} first)")
        tensors = load_file(str(path))
        missing = [e for e in encoders if e not in tensors]
        if missing:
            raise MirageError(f"{path} holds features of {', '.join(sorted(tensors))}, not {', '.join(missing)}")
        out[q.id] = {e: tensors[e].float() for e in encoders}
    return out


def feature_targets(model: VLM, bench: Benchmark, questions: Sequence[Question], run: RunDir, encoders: Sequence[str],
                    targets_from: str | Path | RunDir | None = None, start: str = "random",
                    stage1: OptimizeConfig | None = None, quiet: bool = True) -> dict:
    """Stage 1: the target features of `questions`, read from `targets_from` (a run directory), or else from `run`,
    optimizing there the questions that have none yet (`stage1`, default: the study's settings)."""
    source = TARGET_SOURCES[start]
    if targets_from is not None:
        return load_targets(getattr(targets_from, "path", targets_from), questions, encoders, source)
    folder = run.artifacts_dir / source
    missing = [q for q in questions if not (folder / f"{q.id}.safetensors").is_file()]
    if missing:
        # the reference (init scale, held features) from the whole benchmark, as the study computes it
        ref = Reference.from_benchmark(model, bench)
        sub = replace(bench, questions=missing)
        cfg = stage1 or OptimizeConfig()
        if start == "random":
            run_optimization(model, sub, OptimizeSpec("features"), cfg, run, ref, quiet)
        else:
            inp = BlankStartFeatures(model, cfg.batch_size, ref, cfg.seed).to(model.device)
            optimize_questions(model, sub, inp, OBJECTIVES.get("ce"), cfg, source, run, default_lr("features"), quiet)
    return load_targets(run.path, questions, encoders, source)


# --- stage 2: pixels whose features match ---------------------------------------------------------------------------
def token_cosine(feats: Tensor, target: Tensor) -> Tensor:
    """Cosine over the feature dimension, mean over tokens: [B, T, D] x [B, T, D] -> [B]."""
    return F.cosine_similarity(feats.float(), target.float(), dim=-1).mean(-1)


def feature_match(feats: dict[str, Tensor], targets: dict[str, Tensor], cfg: InversionConfig
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """Per question: sum over encoders of weight * (cosine weight * (1 - cos) + mse weight * MSE / target scale).
    Returns (loss [B], {encoder: cosine [B]})."""
    loss, cos = 0.0, {}
    for name, target in targets.items():
        f = feats[name].float()  # [B, T, D]
        c = token_cosine(f, target)
        mse = (f - target).square().mean((1, 2)) / target.square().mean((1, 2)).clamp_min(1e-8)
        w = (cfg.weights or {}).get(name, 1.0)
        loss = loss + w * (cfg.cosine * (1 - c) + cfg.mse * mse)
        cos[name] = c.detach()
    return loss, cos


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring pixels, per image: [B, 3, H, W] -> [B]."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))
    return dx + dy


def random_affine(x: Tensor, generators: Sequence[torch.Generator], cfg: InversionConfig) -> Tensor:
    """Jitter, scale and rotate each image [B, 3, H, W] by parameters drawn from its own question's generator
    (so a question's run does not depend on its batch mates); reflection padding, differentiable (kornia)."""
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine

    b, _, h, w = x.shape
    u = torch.stack([torch.rand(4, generator=g) for g in generators]) * 2 - 1  # [B, 4] in [-1, 1)
    u = u.to(x.device, x.dtype)
    shift = u[:, :2] * cfg.jitter * torch.tensor([w, h], device=x.device, dtype=x.dtype)
    scale = (1 + u[:, 2:3] * cfg.scale).expand(b, 2)
    angle = u[:, 3] * cfg.rotate
    center = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=x.device, dtype=x.dtype).expand(b, 2)
    m = get_affine_matrix2d(shift, center, scale.contiguous(), angle)  # [B, 3, 3]
    return warp_affine(x, m[:, :2], dsize=(h, w), padding_mode="reflection", align_corners=True)


def _features(model: VLM, pixels: Tensor, encoders: Sequence[str]) -> dict[str, Tensor]:
    return model.encode(model.preprocess(pixels, list(encoders)))


def invert_batch(model: VLM, questions: Sequence[Question], targets: dict[str, dict], encoders: Sequence[str],
                 cfg: InversionConfig) -> tuple[Tensor, list[dict]]:
    """Stage 2 for a batch: images [B, 3, R, R] in [0, 1] and per question {cos_start, cos_end, loss}."""
    device = model.device
    inp = PixelInput(model, len(questions), cfg.resolution, cfg.param, seed=cfg.seed).to(device)
    for s, q in enumerate(questions):
        inp.reset(s, q.id)  # seeded by question id: any batch, order or resume starts alike
    slots = torch.arange(len(questions), device=device)
    tgt = {e: torch.stack([targets[q.id][e] for q in questions]).to(device) for e in encoders}  # [B, T_e, D_e]
    gens = [torch.Generator().manual_seed(seed_for("inversion-augment", cfg.seed, q.id) % 2**63) for q in questions]
    opt = torch.optim.Adam(list(inp.parameters()), lr=cfg.learning_rate)
    with torch.no_grad():
        _, cos_start = feature_match(_features(model, inp.images(slots), encoders), tgt, cfg)
    for _ in range(cfg.steps):
        x = inp.images(slots)
        seen = random_affine(x, gens, cfg) if cfg.augment else x
        loss, _ = feature_match(_features(model, seen, encoders), tgt, cfg)
        if cfg.tv:
            loss = loss + cfg.tv * total_variation(x)
        opt.zero_grad()
        loss.sum().backward()  # a sum: each question's gradient is its own
        opt.step()
        inp.project_()
    with torch.no_grad():
        x = inp.images(slots).detach()
        final, cos_end = feature_match(_features(model, x, encoders), tgt, cfg)
    records = [{"cos_start": {e: round(float(cos_start[e][i]), 4) for e in encoders},
                "cos_end": {e: round(float(cos_end[e][i]), 4) for e in encoders},
                "loss": round(float(final[i]), 4)} for i in range(len(questions))]
    return x, records


@torch.no_grad()
def _real_cosines(model: VLM, questions: Sequence[Question], tgt: dict[str, dict],
                  encoders: Sequence[str]) -> list[dict]:
    """How close the question's own real image comes to the target features: the scale of a 'good' cosine."""
    with_image = [q for q in questions if q.images]
    out = {q.id: {} for q in questions}
    if with_image:
        feats = model.encode({k: v for k, v in model.process_images([q.image(0) for q in with_image]).items()
                              if k in encoders})
        for e in encoders:
            target = torch.stack([tgt[q.id][e] for q in with_image]).to(model.device)
            for q, c in zip(with_image, token_cosine(feats[e], target)):
                out[q.id][e] = round(float(c), 4)
    return [out[q.id] for q in questions]


def _save_png(x: Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()).save(path)


def run_inversion(model: VLM, bench: Benchmark, run: RunDir, n: int = 16, steps: int | None = None,
                  encoders: Sequence[str] | None = None, targets_from: str | Path | RunDir | None = None,
                  cfg: InversionConfig | None = None, stage1: OptimizeConfig | None = None,
                  quiet: bool = True) -> dict:
    """Invert the stage-1 features of the first `n` questions of `bench` into images, through `encoders` (default
    all); rows `inversion[-<encoders>]` and `...-png`, PNGs in artifacts/<source>/<qid>.png; resumable. Stage 1 is
    read from `targets_from`, else optimized into `run` with `stage1` (default: OptimizeConfig(), as the study).
    Returns a summary: mean cosines per encoder (start, end, real image) and accuracies beside comparable sources."""
    cfg = cfg or InversionConfig()
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    check_encoders(model, list(encoders) if encoders else None, "--encoders")
    names = list(encoders) if encoders else [s.name for s in model.encoders]
    source = source_name(encoders, cfg.start)
    questions = bench.questions[:n]
    done = {qid for qid, src in run.done() if src == source}
    todo = [q for q in questions if q.id not in done]
    targets = feature_targets(model, bench, todo, run, names, targets_from, cfg.start, stage1, quiet) if todo else {}
    folder = run.artifacts_dir / source
    with progress_bar(f"inverting {source}", len(todo), quiet) as advance:
        for i in range(0, len(todo), cfg.batch_size):
            batch = todo[i : i + cfg.batch_size]
            images, records = invert_batch(model, batch, targets, names, cfg)
            with torch.no_grad():
                logits = model.choice_logits([bench.prompt(q) for q in batch], Visual("pixels", images),
                                             [len(q.choices) for q in batch])
            reals = _real_cosines(model, batch, targets, names)
            rows = []
            for q, x, lg, rec, real in zip(batch, images, logits, records, reals):
                _save_png(x, folder / f"{q.id}.png")
                rows.append(result_row(q, lg.cpu(), source, steps=cfg.steps, encoders=names, cos_real=real,
                                       artifact=str((folder / f"{q.id}.png").relative_to(run.path)), **rec))
            run.append(rows)
            advance(len(batch))
    sub = replace(bench, questions=list(questions))
    evaluate_conditions(model, sub, [png_condition(run, source, False)], run=run, quiet=quiet)
    return inversion_summary(run.rows(), source, [q.id for q in questions])


def inversion_summary(rows: Sequence[dict], source: str, question_ids: Sequence[str]) -> dict:
    """Mean cosines per encoder (start, end, real image) of `source`'s rows, and the accuracy of `source`, its PNG
    re-check and comparable sources (real, blank, features-question, pixels-question[-png]) on the same questions."""
    ids = set(question_ids)
    own = [r for r in rows if r["source"] == source and r["question_id"] in ids]
    out: dict = {"source": source, "n": len(own), "encoders": own[0]["encoders"] if own else []}
    for key in ("cos_start", "cos_end", "cos_real"):
        out[key] = {e: round(float(np.mean([r[key][e] for r in own if e in r[key]])), 4)
                    for e in out["encoders"] if any(e in r[key] for r in own)}
    accuracy = {}
    for name in (source, sources.png(source), *COMPARE):
        picked = [bool(r["correct"]) for r in rows if r["source"] == name and r["question_id"] in ids]
        if picked:
            accuracy[name] = {"n": len(picked), "accuracy": round(float(np.mean(picked)), 4)}
    out["accuracy"] = accuracy
    return out
