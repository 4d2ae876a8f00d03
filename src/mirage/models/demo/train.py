"""`mirage train-demo`: train the demo VLM from scratch on ShapesQA scenes drawn on the fly (CPU or GPU).

Recipe (see the model card), in three phases:
1. text: the LM alone learns letter binding from drills ("pick red A . blue B . red ..." -> B) and the text-prior
   facts, with no image in the prompt;
2. vision: the encoders and aggregator learn dense attribute heads on each image token (tied to the LM's word
   embeddings of the attribute names) while the LM goes on with text;
3. joint: open-form (answer word), multiple-choice (answer letter) and drill questions with the image.
fp32 (TF32 matmuls on GPU), AdamW, warm-up then cosine over the joint phase. Resumable from `checkpoint.pt`.
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
from ...benchmarks.shapes.questions import NUMBERS, TYPE_WEIGHTS, TYPES, referring_phrase, sample_item, vocabulary
from ...benchmarks.shapes.scene import CELL, COLOURS, GRID, SHAPES, SIZES, render, scene_tensors
from ...errors import MirageError
from ..vlm import Visual
from .config import DemoConfig
from .modeling import DemoVLM, build_sequences
from .tokenizer import build_tokenizer

CHECKPOINT = "checkpoint.pt"
MODE_STREAM = 99  # rng stream choosing how each training question is asked (open, drill, multiple choice)
EXTRA_WORDS = ["pick", "column", "row"]  # training-only prompts' words, appended so earlier ids never move
ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES)}


@dataclass
class TrainConfig:
    """Training hyper-parameters; defaults are the shipped model's recipe."""

    steps: int = 5000
    text_steps: int = 800
    vision_steps: int = 600
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 200
    open_fraction: float = 0.45
    drill_fraction: float = 0.15
    aux_fraction: float = 0.0  # joint-phase questions replaced by "which column/row is the X in ?" (open form)
    type_weights: dict | None = None  # question-type mix for training (None: the benchmark's own mix)
    init: str | None = None  # start from this model directory instead of random weights
    eval_every: int = 500
    eval_questions: int = 512
    checkpoint_every: int = 500
    seed: int = 0
    workers: int = 4
    text_only: bool = False  # the demo's base LM (train_text): every step in the text phase, no joint phase

    def __post_init__(self) -> None:
        from ...errors import UsageError

        if self.joint_start >= self.steps and not self.text_only:  # the joint phase, the only one with images and questions, would never run
            raise UsageError(f"--text-steps {self.text_steps} + --vision-steps {self.vision_steps} = {self.joint_start}"
                             f" leave no joint training within --steps {self.steps}: make --steps larger than their sum")

    @property
    def joint_start(self) -> int:
        return self.text_steps + self.vision_steps


class DenseHeads(nn.Module):
    """Per image token: shape, colour, size of the object under it (or none), scored by cosine similarity with
    the LM's embeddings of the attribute words, so image tokens come to point where the words naming them do;
    plus linear heads for the token's grid row and column (position questions compare them)."""

    def __init__(self, embed: nn.Embedding, word_ids: dict[str, list[int]], grid: int):
        super().__init__()
        self.embed, self.word_ids = embed, word_ids
        dim = embed.embedding_dim
        self.none = nn.ParameterDict({a: nn.Parameter(torch.randn(dim) * 0.02) for a in word_ids})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.row, self.col = nn.Linear(dim, grid), nn.Linear(dim, grid)
        self.grid = grid

    def loss(self, tokens: Tensor, labels: dict[str, Tensor]) -> Tensor:
        # tokens: [B, Q, D]; labels: {attr: [B, Q]} with index len(words) meaning "none"
        t = F.normalize(tokens, dim=-1)
        total = 0.0
        for a, ids in self.word_ids.items():
            words = torch.cat([self.embed.weight[ids], self.none[a][None]])  # [C+1, D]
            logits = t @ F.normalize(words, dim=-1).T * self.logit_scale.exp()
            total = total + F.cross_entropy(logits.flatten(0, 1), labels[a].flatten())
        pos = torch.arange(self.grid * self.grid, device=tokens.device).expand(tokens.shape[0], -1)
        total = total + F.cross_entropy(self.row(tokens).flatten(0, 1), (pos // self.grid).flatten())
        total = total + F.cross_entropy(self.col(tokens).flatten(0, 1), (pos % self.grid).flatten())
        return total / (len(self.word_ids) + 2)


def dense_labels(t: dict[str, Tensor], masks: Tensor, grid: int) -> dict[str, Tensor]:
    """Per image token (grid x grid, row-major), the attribute class of the object covering >= 10% of its own
    area there, else the "none" class. Scatter-based, so the step never waits on the GPU."""
    b, k = masks.shape[:2]
    per = grid // GRID  # tokens per scene cell along a side
    w = CELL // per
    cover = masks.view(b, k, per, w, per, w).float().sum((3, 5))  # [B, K, per, per] object pixels under each token
    frac = cover / masks.flatten(2).float().sum(-1).clamp(min=1)[..., None, None]
    valid = (frac >= 0.1) & t["present"][..., None, None]
    i = torch.arange(per, device=masks.device)
    rows = t["cell"][..., 0, None, None] * per + i[:, None]  # [B, K, per, 1]
    cols = t["cell"][..., 1, None, None] * per + i[None, :]  # [B, K, 1, per]
    index = torch.where(valid, rows * grid + cols, grid * grid).flatten(1)  # invalid -> a spare slot
    out = {}
    for a, none in (("shape", len(SHAPES)), ("colour", len(COLOURS)), ("size", len(SIZES))):
        vals = t[a][..., None, None].expand(b, k, per, per).flatten(1)
        lab = torch.full((b, grid * grid + 1), none, dtype=torch.long, device=masks.device)
        out[a] = lab.scatter(1, index, vals)[:, :-1]  # objects sit in distinct cells: no two write one token
    return out


class TrainBatches(IterableDataset):
    """Yields (step, packed scenes, (ids, mask, labels)); worker w makes steps w, w+W, ... so order is by step.
    Before the joint phase the sequences are text-only (drills and text-prior facts)."""

    def __init__(self, tokenizer, cfg: TrainConfig, start: int, num_image_tokens: int):
        self.tokenizer, self.cfg, self.start, self.n_img = tokenizer, cfg, start, num_image_tokens

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        cfg = self.cfg
        for step in range(self.start + wid, cfg.steps, nw):
            rngs = [item_rng(cfg.seed, "train", step * cfg.batch_size + j) for j in range(cfg.batch_size)]
            u = np.random.default_rng([cfg.seed, MODE_STREAM, step]).random(cfg.batch_size)
            text_only = step < cfg.joint_start
            items, prompts, targets = [], [], []
            mode = np.random.default_rng([cfg.seed, MODE_STREAM, step, 1])
            weights = np.array([(cfg.type_weights or TYPE_WEIGHTS).get(t, 0.0) for t in TYPES])
            for rng, x in zip(rngs, u):
                # text phases: half drills, a quarter text-prior facts as multiple choice, a quarter open
                qtype = "prior" if text_only and x >= 0.5 else None
                if qtype is None and cfg.type_weights:
                    qtype = TYPES[mode.choice(len(TYPES), p=weights / weights.sum())]
                it = sample_item(rng, qtype)
                items.append(it)
                q = Question("train", it.text, it.choices, it.answer)
                drill = x < 0.5 if text_only else cfg.open_fraction <= x < cfg.open_fraction + cfg.drill_fraction
                is_open = x >= 0.75 if text_only else x < cfg.open_fraction
                if not text_only and mode.random() < cfg.aux_fraction:
                    # where one object is, as a number word: the ingredient position questions compare
                    k, axis = int(mode.integers(len(it.scene.objects))), int(mode.integers(2))
                    o = it.scene.objects[k]
                    prompts.append(f"which {('row', 'column')[axis]} is the {referring_phrase(mode, o, 'position')} in ?")
                    targets.append(f"{NUMBERS[o.cell[axis]]} <|end|>")
                elif drill:
                    prompts.append(letter_prompt(Question("drill", f"pick {it.answer_word}", it.choices, it.answer)))
                    targets.append(f"{q.answer_letter} <|end|>")
                elif is_open:
                    prompts.append(it.text)
                    targets.append(f"{it.answer_word} <|end|>")
                else:
                    prompts.append(letter_prompt(q))
                    targets.append(f"{q.answer_letter} <|end|>")
            seqs = build_sequences(self.tokenizer, prompts, targets, 0 if text_only else self.n_img)
            yield step, scene_tensors([it.scene for it in items]), seqs


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, constant through the text and vision phases, cosine decay over the joint phase."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if step < cfg.joint_start:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - cfg.joint_start) / max(1, cfg.steps - cfg.joint_start)))


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
    tokenizer = build_tokenizer(vocabulary() + EXTRA_WORDS)
    if cfg.init:
        model = DemoVLM.from_pretrained(cfg.init, device=device)
        known = model.tokenizer.get_vocab()
        if any(tokenizer.get_vocab().get(w, i) != i for w, i in known.items()):
            raise MirageError(f"--init {cfg.init}: its tokenizer's ids differ from this version's vocabulary")
        model.tokenizer = tokenizer  # a superset with the same ids
        if len(tokenizer) > model.config.vocab_size:  # new words: grow the (tied) embeddings, old rows kept
            model.lm.resize_token_embeddings(len(tokenizer))
            model.config.vocab_size = len(tokenizer)
        model.train()
    else:
        model = DemoVLM(DemoConfig(vocab_size=len(tokenizer)), tokenizer).to(device).train()
    word_ids = {a: tokenizer.convert_tokens_to_ids(list(words)) for a, words in ATTRIBUTES.items()}
    heads = DenseHeads(model.lm.get_input_embeddings(), word_ids, model.config.grid).to(device)
    params = list({id(p): p for m in (model, heads) for p in m.parameters()}.values())  # heads share the embeddings
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    start, log_path = 0, out / "log.jsonl"
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["config"] != asdict(cfg):
            raise MirageError(f"{ckpt} was written with another training config: {state['config']}")
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
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        dense, tokens = torch.zeros((), device=device), None
        if step >= cfg.text_steps:
            scenes = {k: v.to(device, non_blocking=True) for k, v in scenes.items()}
            imgs, masks = render(scenes)
            tokens = model.connect(model.encode(model.preprocess(imgs.float() / 255)))  # [B, Q, D]
            dense = heads.loss(tokens, dense_labels(scenes, masks, model.config.grid))
        logits = model.lm_logits(ids, mask, tokens if step >= cfg.joint_start else None)[:, :-1]
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
            on_step(done, record or {})  # no .item() here: a sync per step would stall the GPU queue
        out_of_time = max_seconds is not None and time.time() - t0 > max_seconds
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time:
            save(done)
        if out_of_time:
            break
    if step + 1 < cfg.steps:
        return out  # stopped early; rerun to resume
    model.eval().save_pretrained(out / "model", dtype=torch.float16)  # fp16 storage: half the size, computed in fp32
    return out / "model"
