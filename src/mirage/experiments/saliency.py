"""Gradient saliency on the pixel input (captum): which pixels move the answer letter's log-probability among the
choices, for the real image and for the `wrong` image, and how much of that lies on the question's target object.

Methods: `gradient` (|d log p / d pixels|), `smoothgrad` (NoiseTunnel over it), `ig` (Integrated Gradients from a
black image) and `gxi` (gradient x input). A map is |attribution| summed over colour channels, [S, S], with S the
largest encoder input; with `encoder`, the gradient flows through that encoder only (the others' inputs detached).

The number beside the pictures (ShapesQA, or any benchmark whose question meta has `boxes`): the pointing game
(is the map's argmax inside the target region?) and energy-in-box (the map's share of mass inside it), against a
random map's baseline, the region's area fraction. The target region is the union of the question's target boxes:
colour/shape/size the one object asked about, position the two objects related, count every object (each must be
counted); prior questions have no target, so their maps are saved but left out of the numbers.

Rows go to `saliency.jsonl` of the run, not results.jsonl: they have no `correct`, which `stats.summarize` needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from torch import Tensor

from .. import sources
from ..benchmarks.question import Benchmark, Question
from ..conditions import ConditionContext, get_condition
from ..errors import UsageError
from ..evaluate import score_pending
from ..models.vlm import VLM, Visual
from ..progress import progress_bar
from ..registry import Registry, did_you_mean
from ..runs import SALIENCY_ROWS, SALIENCY_SUMMARY, RunDir
from ..seeding import seed_for

COLORMAP = "inferno"


@dataclass
class SaliencyConfig:
    """Settings of the captum methods; `batch_size` questions per attribution call (real and wrong together)."""

    batch_size: int = 8
    smooth_samples: int = 8  # smoothgrad: noisy copies per image
    smooth_noise: float = 0.15  # smoothgrad: noise std, in units of the [0, 1] pixel range
    ig_steps: int = 16  # integrated gradients: points on the path from the baseline
    ig_baseline: float = 0.0  # integrated gradients: the baseline image's value (0 = black)
    seed: int = 0


class AnswerLogProb:
    """captum's forward function: pixels [N, 3, S, S] and prompt rows [N] -> log-probabilities of the choices [N, C].

    `rows` travels as captum's additional forward argument, so the batches it expands (IG's path points, the noise
    tunnel's samples) still find their prompts. With `encoder`, the other encoders' inputs are detached."""

    def __init__(self, model: VLM, prompts: Sequence[str], n_choices: Sequence[int], encoder: str | None = None):
        self.model, self.prompts, self.n_choices, self.encoder = model, list(prompts), list(n_choices), encoder

    def __call__(self, pixels: Tensor, rows: Tensor) -> Tensor:
        idx = rows.tolist()
        if self.encoder is None:
            visual = Visual("pixels", pixels)
        else:
            processed = self.model.preprocess(pixels)
            visual = Visual("processed", {k: v if k == self.encoder else v.detach() for k, v in processed.items()})
        logits = self.model.choice_logits([self.prompts[i] for i in idx], visual, [self.n_choices[i] for i in idx])
        return logits.float().log_softmax(-1)


# method(forward, pixels [N, 3, S, S], rows [N], target [N], cfg) -> attributions [N, 3, S, S]
Method = Callable[[AnswerLogProb, Tensor, Tensor, Tensor, SaliencyConfig], Tensor]
SALIENCY_METHODS: Registry[Method] = Registry("saliency method")


@SALIENCY_METHODS.register("gradient")
def _gradient(f: AnswerLogProb, x: Tensor, rows: Tensor, target: Tensor, cfg: SaliencyConfig) -> Tensor:
    from captum.attr import Saliency

    return Saliency(f).attribute(x, target=target, abs=True, additional_forward_args=(rows,))


@SALIENCY_METHODS.register("smoothgrad")
def _smoothgrad(f: AnswerLogProb, x: Tensor, rows: Tensor, target: Tensor, cfg: SaliencyConfig) -> Tensor:
    from captum.attr import NoiseTunnel, Saliency

    return NoiseTunnel(Saliency(f)).attribute(x, nt_type="smoothgrad", nt_samples=cfg.smooth_samples,
                                              nt_samples_batch_size=max(1, cfg.smooth_samples // 2),
                                              stdevs=cfg.smooth_noise, target=target, abs=True,
                                              additional_forward_args=(rows,))


@SALIENCY_METHODS.register("ig")
def _integrated_gradients(f: AnswerLogProb, x: Tensor, rows: Tensor, target: Tensor, cfg: SaliencyConfig) -> Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(f).attribute(x, baselines=cfg.ig_baseline, target=target, n_steps=cfg.ig_steps,
                                            internal_batch_size=2 * len(x), additional_forward_args=(rows,))


@SALIENCY_METHODS.register("gxi")
def _grad_x_input(f: AnswerLogProb, x: Tensor, rows: Tensor, target: Tensor, cfg: SaliencyConfig) -> Tensor:
    from captum.attr import InputXGradient

    return InputXGradient(f).attribute(x, target=target, additional_forward_args=(rows,))


def image_side(model: VLM) -> int:
    """The common square side saliency maps are computed at: the largest encoder input."""
    return max(s.image_size for s in model.encoders)


def to_pixels(images: Sequence[Image.Image], side: int) -> Tensor:
    """RGB images resized to side x side (bicubic, as the real processors do) -> [B, 3, side, side] in [0, 1]."""
    arrs = [np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC) if im.size != (side, side)
                       else im.convert("RGB")) for im in images]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0


def saliency_maps(model: VLM, prompts: Sequence[str], pixels: Tensor, answers: Sequence[int],
                  n_choices: Sequence[int], method: str = "gradient", encoder: str | None = None,
                  rows: Sequence[int] | None = None, cfg: SaliencyConfig | None = None) -> Tensor:
    """Maps [N, S, S] of the answer's log-probability w.r.t. `pixels` [N, 3, S, S] (one backward pass for
    `gradient`). `rows` maps each image to its prompt (default: image i to prompt i)."""
    cfg = cfg or SaliencyConfig()
    fn = SALIENCY_METHODS.get(method)
    if encoder is not None and encoder not in [s.name for s in model.encoders]:
        raise UsageError(did_you_mean("encoder", encoder, [s.name for s in model.encoders]))
    rows_t = torch.tensor(list(range(len(pixels))) if rows is None else list(rows), device=model.device)
    target = torch.tensor(list(answers), device=model.device)
    f = AnswerLogProb(model, prompts, n_choices, encoder)
    x = pixels.to(model.device, torch.float32).requires_grad_(True)
    # smoothgrad draws its noise from torch's generator of the input's device: seed it here, without touching the
    # caller's generators
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed_for("saliency", cfg.seed, *prompts) % 2**63)
        attr = fn(f, x, rows_t, target, cfg)
    return attr.detach().abs().sum(1).float().cpu()  # [N, S, S]


# --- the numbers ---------------------------------------------------------------------------------------------------
def target_mask(question: Question, side: int) -> Tensor | None:
    """The union of the question's target boxes (meta `boxes`, image pixels [x0, y0, x1, y1]) on a side x side grid,
    or None when the question has no target object (text-prior questions, benchmarks without boxes)."""
    boxes = question.meta.get("boxes") if question.meta else None
    if not boxes or not question.images:
        return None
    w, h = question.image(0).size
    mask = torch.zeros(side, side, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = int(np.floor(x0 * side / w)), int(np.ceil(x1 * side / w))
        r0, r1 = int(np.floor(y0 * side / h)), int(np.ceil(y1 * side / h))
        mask[max(0, r0) : min(side, r1), max(0, c0) : min(side, c1)] = True
    return mask


def pointing_hit(smap: Tensor, mask: Tensor) -> bool:
    """The pointing game: is the map's maximum inside the mask? (A flat zero map points at pixel 0.)"""
    return bool(mask.flatten()[int(smap.flatten().argmax())])


def energy_in_box(smap: Tensor, mask: Tensor) -> float:
    """Share of the map's mass inside the mask (0 for an all-zero map)."""
    total = float(smap.sum())
    return float(smap[mask].sum()) / total if total > 0 else 0.0


def saliency_summary(rows: Sequence[dict]) -> dict:
    """Per source (method[-encoder]) and question type: n, pointing game and energy-in-box for the real and the wrong
    image, and the random-map baseline (mean target area fraction); `all` pools the types with a target."""
    out: dict[str, dict] = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        scored = [r for r in rows if r["source"] == source and r.get("box_fraction") is not None]
        groups: dict[str, list[dict]] = {}
        for r in scored:
            groups.setdefault(r["type"], []).append(r)
        per = {t: _figures(rs) for t, rs in sorted(groups.items())}
        if scored:
            per["all"] = _figures(scored)
        out[source] = per
    return out


def _figures(rows: list[dict]) -> dict:
    mean = lambda k: round(float(np.mean([float(r[k]) for r in rows])), 4)  # noqa: E731
    return {"n": len(rows), "pointing_real": mean("hit_real"), "pointing_wrong": mean("hit_wrong"),
            "energy_real": mean("energy_real"), "energy_wrong": mean("energy_wrong"), "baseline": mean("box_fraction")}


# --- pictures ------------------------------------------------------------------------------------------------------
def overlay(pixels: Tensor, smap: Tensor, mask: Tensor | None = None, colormap: str = COLORMAP) -> Image.Image:
    """The image [3, S, S] under its heat map [S, S] (scaled to its 99th percentile), the target box outlined."""
    from matplotlib import colormaps

    m = smap.float()
    top = float(torch.quantile(m.flatten(), 0.99)) or float(m.max()) or 1.0
    heat = colormaps[colormap]((m / top).clamp(0, 1).numpy())[..., :3]  # [S, S, 3]
    alpha = (0.3 + 0.6 * (m / top).clamp(0, 1).numpy())[..., None]  # the image shows through where the map is low
    img = pixels.permute(1, 2, 0).numpy()
    out = Image.fromarray(np.rint(255 * ((1 - alpha) * img + alpha * heat)).clip(0, 255).astype(np.uint8), "RGB")
    if mask is not None and mask.any():
        draw = ImageDraw.Draw(out)
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        draw.rectangle([int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])], outline=(0, 255, 255))
    return out


# --- the run -------------------------------------------------------------------------------------------------------
class _RowsFile(RunDir):
    """The run directory with its rows in another JSON-lines file (same fsync, torn-line repair and resume)."""

    def __init__(self, run: RunDir, name: str):
        super().__init__(run.path)
        self.config, self.name = run.config, name

    @property
    def results_path(self) -> Path:
        return self.path / self.name


def saliency_rows(run: RunDir) -> RunDir:
    """The run's saliency rows (saliency.jsonl) as a RunDir view: `.rows()`, `.append()`, `.done()`."""
    return _RowsFile(run, SALIENCY_ROWS)


def source_name(method: str, encoder: str | None = None) -> str:
    """`saliency-<method>`, or `saliency-<method>-<encoder>` for a gradient through one encoder."""
    return sources.saliency(method, encoder)


def run_saliency(model: VLM, bench: Benchmark, run: RunDir, method: str = "gradient", n: int = 32,
                 per_encoder: bool = False, batch_size: int | None = None, cfg: SaliencyConfig | None = None,
                 quiet: bool = True) -> dict:
    """Maps for the real and the `wrong` image of the first `n` questions with an image (the wrong image drawn
    over all of `bench`, as the `wrong` condition does); with `per_encoder`, also one map per encoder. Writes
    artifacts/saliency-<method>[-<encoder>]/<qid>.safetensors + <qid>-real.png / <qid>-wrong.png and rows in
    saliency.jsonl; resumable. Returns `saliency_summary` of this call's sources."""
    cfg = cfg or SaliencyConfig()
    SALIENCY_METHODS.get(method)  # an unknown method fails before any work
    bs = batch_size or cfg.batch_size
    side = image_side(model)
    store = saliency_rows(run)
    done = store.done()
    questions = [q for q in bench if q.images][:n]
    ctx = ConditionContext(bench, cfg.seed)
    wrong = get_condition("wrong")
    maps_of = [(source_name(method), None)]
    if per_encoder:
        maps_of += [(source_name(method, s.name), s.name) for s in model.encoders]
    total = sum((q.id, src) not in done for src, _ in maps_of for q in questions)

    def rows_for(batch: list[Question], source: str, encoder: str | None) -> list[dict]:
        folder = run.artifacts_dir / source
        real = to_pixels([q.image(0) for q in batch], side)
        other = to_pixels([wrong.image(q, ctx) for q in batch], side)
        k = len(batch)
        maps = saliency_maps(model, [bench.prompt(q) for q in batch], torch.cat([real, other]),
                             [q.answer for q in batch] * 2, [len(q.choices) for q in batch],
                             method, encoder, list(range(k)) * 2, cfg)
        return [_save_question(q, real[j], other[j], maps[j], maps[k + j], folder, run, source, method, encoder,
                               side) for j, q in enumerate(batch)]

    with progress_bar(f"saliency {method}", total, quiet) as advance:
        for source, encoder in maps_of:
            (run.artifacts_dir / source).mkdir(parents=True, exist_ok=True)
            score_pending(questions, source, lambda b, s=source, e=encoder: rows_for(b, s, e), store, bs, done,
                          advance)
    all_rows = store.rows()
    run.write_json(SALIENCY_SUMMARY, saliency_summary(all_rows))
    names = {s for s, _ in maps_of}
    return saliency_summary([r for r in all_rows if r["source"] in names])


def _save_question(q: Question, real: Tensor, other: Tensor, map_real: Tensor, map_wrong: Tensor, folder: Path,
                   run: RunDir, source: str, method: str, encoder: str | None, side: int) -> dict:
    mask = target_mask(q, side)
    path = folder / f"{q.id}.safetensors"
    save_file({"real": map_real.half().contiguous(), "wrong": map_wrong.half().contiguous()}, str(path),
              metadata={"side": str(side), "method": method})
    overlay(real, map_real, mask).save(folder / f"{q.id}-real.png")
    overlay(other, map_wrong, mask).save(folder / f"{q.id}-wrong.png")
    row = {"question_id": q.id, "source": source, "type": q.type, "method": method, "encoder": encoder,
           "box_fraction": None, "hit_real": None, "energy_real": None, "hit_wrong": None, "energy_wrong": None,
           "artifact": str(path.relative_to(run.path))}
    if mask is not None:
        row.update(box_fraction=round(float(mask.float().mean()), 5),
                   hit_real=pointing_hit(map_real, mask), energy_real=round(energy_in_box(map_real, mask), 5),
                   hit_wrong=pointing_hit(map_wrong, mask), energy_wrong=round(energy_in_box(map_wrong, mask), 5))
    return row


def saliency_config(cfg: SaliencyConfig | None = None) -> dict:
    """What identifies saliency numbers in a run's config (per-method settings; not batch size)."""
    d = asdict(cfg or SaliencyConfig())
    d.pop("batch_size")
    return json.loads(json.dumps(d))
