"""`mirage train-demo`: train the demo VLM from scratch on ShapesQA scenes drawn on the fly (CPU or GPU).

Recipe (see the model card): vision pretraining with dense attribute heads on the aggregator tokens while the LM
learns letter binding from text drills ("pick red A . blue B . red ..." -> B); then joint training with open-form
questions (answer word), multiple-choice questions (answer letter) and some drills; fp32 (TF32 matmuls on GPU),
AdamW, warm-up + cosine. Resumable from `checkpoint.pt`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ...benchmarks.question import Question, letter_prompt
from ...benchmarks.shapes.dataset import item_rng
from ...benchmarks.shapes.questions import TYPES, sample_item, vocabulary
from ...benchmarks.shapes.scene import CELL, COLOURS, GRID, SHAPES, SIZES, render, scene_tensors
from ..vlm import Visual
from .config import DemoConfig
from .modeling import DemoVLM, build_sequences
from .tokenizer import build_tokenizer

CHECKPOINT = "checkpoint.pt"
MODE_STREAM = 99  # rng stream choosing how each training question is asked (open, drill, multiple choice)
DRILL_WORDS = ["pick"]  # the drill prompt's extra vocabulary


@dataclass
class TrainConfig:
    """Training hyper-parameters; defaults are the shipped model's recipe."""

    steps: int = 7000
    vision_steps: int = 600
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 200
    open_fraction: float = 0.45
    drill_fraction: float = 0.15
    eval_every: int = 500
    eval_questions: int = 512
    checkpoint_every: int = 500
    seed: int = 0
    workers: int = 4


class DenseHeads(nn.Module):
    """Linear heads on each image token: shape, colour and size of the object under it (or none)."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads = nn.ModuleDict({"shape": nn.Linear(dim, len(SHAPES) + 1), "colour": nn.Linear(dim, len(COLOURS) + 1),
                                    "size": nn.Linear(dim, len(SIZES) + 1)})

    def loss(self, tokens: Tensor, labels: dict[str, Tensor]) -> Tensor:
        # tokens: [B, Q, D]; labels: {attr: [B, Q]}
        return sum(F.cross_entropy(h(tokens).flatten(0, 1), labels[a].flatten()) for a, h in self.heads.items()) / 3


def dense_labels(t: dict[str, Tensor], masks: Tensor, grid: int) -> dict[str, Tensor]:
    """Per image token (grid x grid), the attributes of the object covering >= 10% of its area there."""
    b, k = masks.shape[:2]
    per = grid // GRID  # tokens per scene cell along a side
    w = CELL // per
    cover = masks.view(b, k, per, w, per, w).float().sum((3, 5))  # [B, K, per, per] pixels under each token
    frac = cover / masks.flatten(2).float().sum(-1).clamp(min=1)[..., None, None]
    attrs = {"shape": t["shape"], "colour": t["colour"], "size": t["size"]}
    none = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES)}
    out = {a: torch.full((b, grid, grid), none[a], dtype=torch.long, device=masks.device) for a in attrs}
    rows = torch.arange(b, device=masks.device)
    for slot in range(k):
        for i in range(per):
            for j in range(per):
                sel = t["present"][:, slot] & (frac[:, slot, i, j] >= 0.1)
                r = t["cell"][sel, slot, 0] * per + i
                c = t["cell"][sel, slot, 1] * per + j
                for a in attrs:
                    out[a][rows[sel], r, c] = attrs[a][sel, slot]
    return {a: v.flatten(1) for a, v in out.items()}


class TrainBatches(IterableDataset):
    """Yields (step, packed scenes, (ids, mask, labels)); worker w makes steps w, w+W, ... so order is by step."""

    def __init__(self, tokenizer, cfg: TrainConfig, start: int, num_image_tokens: int):
        self.tokenizer, self.cfg, self.start, self.n_img = tokenizer, cfg, start, num_image_tokens

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        cfg = self.cfg
        for step in range(self.start + wid, cfg.steps, nw):
            items = [sample_item(item_rng(cfg.seed, "train", step * cfg.batch_size + j)) for j in range(cfg.batch_size)]
            u = np.random.default_rng([cfg.seed, MODE_STREAM, step]).random(cfg.batch_size)
            prompts, targets = [], []
            for it, x in zip(items, u):
                q = Question("train", it.text, it.choices, it.answer)
                if step < cfg.vision_steps or cfg.open_fraction <= x < cfg.open_fraction + cfg.drill_fraction:
                    # letter binding without vision: the answer word is given, only its letter is asked
                    prompts.append(letter_prompt(Question("drill", f"pick {it.answer_word}", it.choices, it.answer)))
                    targets.append(f"{q.answer_letter} <|end|>")
                elif x < cfg.open_fraction:
                    prompts.append(it.text)
                    targets.append(f"{it.answer_word} <|end|>")
                else:
                    prompts.append(letter_prompt(q))
                    targets.append(f"{q.answer_letter} <|end|>")
            yield step, scene_tensors([it.scene for it in items]), build_sequences(self.tokenizer, prompts, targets, self.n_img)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Warm-up then cosine, restarted when joint training begins (the LM joins at `vision_steps`)."""
    start, end = (0, cfg.vision_steps) if step < cfg.vision_steps else (cfg.vision_steps, cfg.steps)
    s = step - start
    if s < cfg.warmup:
        return (s + 1) / cfg.warmup
    return 0.5 * (1 + math.cos(math.pi * (s - cfg.warmup) / max(1, end - start - cfg.warmup)))


@torch.no_grad()
def quick_eval(model: DemoVLM, cfg: TrainConfig, n: int, batch: int = 256) -> dict:
    """MC accuracy on the first `n` val questions with the real image and a blank one, through `preprocess`."""
    model.eval()
    items = [sample_item(item_rng(cfg.seed, "val", i)) for i in range(n)]
    correct = {"real": [], "blank": []}
    for i in range(0, n, batch):
        chunk = items[i : i + batch]
        qs = [Question(f"val-{i + j}", it.text, it.choices, it.answer) for j, it in enumerate(chunk)]
        imgs, _ = render(scene_tensors([it.scene for it in chunk], model.device))
        pixels = imgs.float() / 255
        for name, px in (("real", pixels), ("blank", torch.full_like(pixels, 0.5))):
            logits = model.choice_logits([letter_prompt(q) for q in qs], Visual("pixels", px), [4] * len(qs))
            correct[name] += (logits.argmax(-1).cpu() == torch.tensor([q.answer for q in qs])).tolist()
    model.train()
    out = {f"acc_{k}": float(np.mean(v)) for k, v in correct.items()}
    for t in TYPES:
        idx = [j for j, it in enumerate(items) if it.type == t]
        out[f"acc_real_{t}"] = float(np.mean([correct["real"][j] for j in idx])) if idx else float("nan")
    return out


def train_demo(out: str | Path, cfg: TrainConfig = TrainConfig(), device: str | None = None,
               on_step: Callable[[int, dict], None] | None = None, max_seconds: float | None = None) -> Path:
    """Train (or resume) into `out`; returns the directory of the saved model (`out/model`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 weights; bf16 autocast diverged (DEMO-TRAINING.md)
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer(vocabulary() + DRILL_WORDS)
    model = DemoVLM(DemoConfig(vocab_size=len(tokenizer)), tokenizer).to(device).train()
    heads = DenseHeads(model.config.lm["hidden_size"]).to(device)
    params = [p for m in (model, heads) for p in m.parameters()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    start, log_path = 0, out / "log.jsonl"
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ValueError(f"{ckpt} was written with another training config: {state['config']}")
        model.load_state_dict(state["model"]), heads.load_state_dict(state["heads"]), opt.load_state_dict(state["opt"])
        start = state["step"]
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def save(step: int) -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(), "step": step,
                    "config": asdict(cfg)}, tmp)
        tmp.replace(ckpt)

    loader = DataLoader(TrainBatches(tokenizer, cfg, start, model.num_image_tokens), batch_size=None,
                        num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None)
    t0, step, t_warm = time.time(), start, None
    for step, scenes, (ids, mask, labels) in loader:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, cfg)
        scenes = {k: v.to(device, non_blocking=True) for k, v in scenes.items()}
        imgs, masks = render(scenes)
        tokens = model.connect(model.encode(model.preprocess(imgs.float() / 255)))  # [B, Q, D]
        dense = heads.loss(tokens, dense_labels(scenes, masks, model.config.grid))
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        # While vision pretrains, the LM sees its tokens but sends no gradient into them.
        lm_tokens = tokens.detach() if step < cfg.vision_steps else tokens
        logits = model.lm_logits(ids, mask, lm_tokens)[:, :-1]
        lm = F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        loss = dense + lm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        done = step + 1
        if done == start + 10:  # steady-state step time, past worker start-up and first-call overheads
            t_warm = time.time()
        record = None
        if done % cfg.eval_every == 0 or done == cfg.steps:
            rate = (time.time() - t_warm) / (done - start - 10) if t_warm and done > start + 10 else None
            record = {"step": done, "seconds": round(time.time() - t0, 1), "sec_per_step": rate,
                      "dense_loss": round(dense.item(), 4),
                      "lm_loss": round(lm.item(), 4), **quick_eval(model, cfg, cfg.eval_questions)}
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if on_step:
            on_step(done, record or {"dense_loss": dense.item(), "lm_loss": lm.item()})
        out_of_time = max_seconds is not None and time.time() - t0 > max_seconds
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time:
            save(done)
        if out_of_time:
            break
    if step + 1 < cfg.steps:
        return out  # stopped early; rerun to resume
    model.eval().save_pretrained(out / "model", dtype=torch.float16)  # fp16 storage: half the size, computed in fp32
    return out / "model"
