"""The optimization loop: an Input joined with an objective, per question (batched) or universal (one shared input).

Per question: B questions occupy B parameter slots and are optimized together; a question stops once its margin
has held for `early_stop` forwards (or after `steps` updates), and its slot is refilled from the queue. Losses are
summed and Adam runs per slot, so a question's result does not depend on its batch mates.
Universal: one slot shared by every question, trained on a train set in mini-batches, checkpointed.

A benchmark whose questions are asked with several images (`Benchmark.all_images`): per question, a slot holds one
input per image (`Input.n_images` rows, optimized jointly) and each is saved under its image's key (`image_key`);
universal, the one shared input stands for every image of every question (`Input.visual`).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from .benchmarks.question import LETTERS, Benchmark, Question, image_key
from .distributed import SINGLE, World
from .evaluate import score_pending
from .inputs.base import Input
from .models.vlm import VLM, on_device
from .objectives import Objective, choice_margin
from .prefetch import prompt_lengths
from .progress import progress_bar
from .runs import BehindAppends, RunDir
from .seeding import seed_for
from .slot_adam import SlotAdam


@dataclass
class OptimizeConfig:
    """The loop's settings; `lr` None means the input's default."""

    steps: int = 50
    lr: float | None = None
    batch_size: int = 16
    early_stop: int = 3  # stop a question once its margin held this many forwards in a row (0: never)
    stop_margin: float = 2.0  # logits the correct letter must lead by, so an 8-bit re-check keeps the answer
    accum: int = 1  # universal: mini-batches per optimizer step
    checkpoint_every: int = 10  # universal: steps between checkpoints
    seed: int = 0


def result_row(q: Question, logits: torch.Tensor, source: str, **extra) -> dict:
    """A results row from a question's choice logits [C] (same fields as evaluation rows, plus `extra`)."""
    probs = logits[: len(q.choices)].float().softmax(-1).tolist()
    pred = int(np.argmax(probs))
    return {"question_id": q.id, "source": source, "pred": LETTERS[pred], "answer": q.answer_letter,
            "correct": pred == q.answer, "probs": [round(p, 4) for p in probs], "type": q.type, **extra}


def image_counts(bench: Benchmark, questions: Sequence[Question]) -> list[int] | None:
    """How many images each question is asked with where `bench` asks several (`all_images`; a text-only question
    counts one: the input stands where its image would), else None (one each)."""
    counts = [max(1, len(q.images)) for q in questions] if bench.all_images else None
    return None if counts is None or all(k == 1 for k in counts) else counts


def save_artifact(inp: Input, slot: int, directory: Path, key: str) -> Path:
    """Write the input's row `slot`: an 8-bit PNG for pixels, safetensors otherwise. Returns the path."""
    path, write = exported(inp, slot, directory, key)
    write()
    return path


def exported(inp: Input, slot: int, directory: Path, key: str) -> tuple[Path, Callable[[], None]]:
    """Row `slot` of the input copied to the host now (its slot may take another question next), and the path and
    the write of its artifact (an 8-bit PNG for pixels, safetensors otherwise), to run later or elsewhere."""
    tensors = inp.export(slot)
    pixels = "pixels" in tensors
    path = directory / f"{key}.{'png' if pixels else 'safetensors'}"

    def write() -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if pixels:
            arr = (tensors["pixels"].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(arr).save(path)
        else:
            save_file(tensors, str(path))

    return path, write


def optimize_questions(model: VLM, bench: Benchmark, inp: Input, objective: Objective, cfg: OptimizeConfig,
                       source: str, run: RunDir | None = None, lr: float = 0.1, quiet: bool = True,
                       world: World = SINGLE) -> list[dict]:
    """Optimize one input per question of `bench` (this rank's shard under torchrun); rows are appended to `run` as
    questions finish (resumable)."""
    done = {qid for qid, src in run.done() if src == source} if run else set()
    queue = [q for q in world.shard(bench.questions) if q.id not in done]
    slots = inp.slots
    opt = SlotAdam(list(inp.parameters()), slots, lr, rows=inp.n_images)
    held = torch.zeros(slots, dtype=torch.long)
    owner: list[Question | None] = [None] * slots
    device = model.device
    rows: list[dict] = []
    # the longest prompts first, equal ones in benchmark order (pop() takes from the end): a batch holds prompts of
    # like length, so little of it is padding, and a batch too large for the card fails at once, not hours in
    lengths = prompt_lengths(model, [bench.prompt(q) for q in queue]) or [len(bench.prompt(q)) for q in queue]
    queue = [queue[i] for i in sorted(range(len(queue)), key=lambda i: (max(1, len(queue[i].images)), lengths[i], -i))]

    def refill() -> None:
        for s in range(slots):
            if owner[s] is None and queue:
                q = queue.pop()
                owner[s] = q
                inp.start(s, q.id)
                opt.reset(s)
                held[s] = 0

    refill()
    # rows and their artifacts are written behind the loop (the files first, then the rows that name them)
    with progress_bar(f"optimizing {source}", len(queue) + sum(o is not None for o in owner), quiet) as advance, \
            (BehindAppends(run) if run else nullcontext()) as behind:
        while any(o is not None for o in owner):
            act = [s for s in range(slots) if owner[s] is not None]
            qs = [owner[s] for s in act]
            # a forward that only reads the final inputs (every row has taken its last step) needs no graph
            with torch.set_grad_enabled(any(opt.t[s] < cfg.steps for s in act)):
                loss, logits = objective(model, [bench.prompt(q) for q in qs],
                                         inp.visual(act, device, image_counts(bench, qs)), qs)
            margin = choice_margin(logits.detach(), qs)
            if cfg.early_stop:  # read back each step only when it decides; else when a row finishes
                margin = margin.cpu()
                held[act] = torch.where(margin > cfg.stop_margin, held[act] + 1, torch.zeros_like(held[act]))
            finished = [(cfg.early_stop and held[s] >= cfg.early_stop) or opt.t[s] >= cfg.steps for s in act]
            going = torch.zeros(slots, dtype=torch.bool)
            going[[s for s, f in zip(act, finished) if not f]] = True
            if going.any():
                if loss.requires_grad:  # False when every tensor is detached: steps still count
                    keep = on_device([not f for f in finished], loss.device)
                    (loss * keep).sum().backward()  # a sum: each question's gradient is its own
                opt.step(going)
                opt.zero_grad()
                inp.project_()
            new, writes = [], []
            for i, (s, f) in enumerate(zip(act, finished)):
                if f:
                    q = owner[s]
                    extra = {"steps": int(opt.t[s]), "loss": round(float(loss[i].detach()), 4), "margin": round(float(margin[i]), 3)}
                    if run:  # one file per image the question is asked with, the first under its id
                        files = [exported(inp, inp.row(s, k), run.artifacts_dir / source, image_key(q.id, k))
                                 for k in range(len(q.images) if inp.n_images > 1 else 1)]
                        writes += [w for _, w in files]
                        extra["artifact"] = str(files[0][0].relative_to(run.path))
                        if len(files) > 1:
                            extra["artifacts"] = [str(p.relative_to(run.path)) for p, _ in files]
                    new.append(result_row(q, logits[i].detach().cpu(), source, **extra))
                    owner[s] = None
            if new:
                if run:
                    behind.submit(lambda ws=writes: [w() for w in ws], new)
                rows += new
                advance(len(new))
            refill()
    return rows


def train_stream(questions: Sequence[Question], step: int, size: int, seed: int) -> list[Question]:
    """The questions of universal step `step`: an endless stream of per-epoch shuffles, so any resume agrees."""
    n = len(questions)
    out = []
    for k in range(step * size, (step + 1) * size):
        epoch, i = divmod(k, n)
        perm = np.random.default_rng(seed_for("universal-order", seed, epoch) % 2**63).permutation(n)
        out.append(questions[perm[i]])
    return out


def optimize_universal(model: VLM, bench: Benchmark, train: Sequence[Question], inp: Input, objective: Objective,
                       cfg: OptimizeConfig, source: str, run: RunDir | None = None, lr: float = 0.1,
                       quiet: bool = True, stop_after: int | None = None, world: World = SINGLE) -> list[dict]:
    """Train one shared input (slot 0) on `train`; returns the loss history. Checkpoints in `run` and resumes.

    Under torchrun each rank computes the gradient on its share of every step's questions; the summed gradient
    equals the single-process one up to summation order, and every rank takes the same step (rank 0 writes).
    `stop_after` ends the call after that many steps (a test's stand-in for a crash).
    """
    opt = torch.optim.Adam([p for p in inp.parameters() if p.requires_grad], lr=lr)
    ckpt = run.artifacts_dir / f"{source}.ckpt.pt" if run else None
    start, history = resume_universal(ckpt, inp, opt, model.device)

    def save(step: int) -> None:
        save_universal(ckpt, inp, opt, step, history)

    with progress_bar(f"optimizing {source}", cfg.steps - start, quiet) as advance:
        for step in range(start, cfg.steps):
            if stop_after is not None and step - start >= stop_after:
                return history
            batch = train_stream(train, step, cfg.batch_size * cfg.accum, cfg.seed)
            total, correct = 0.0, 0
            for a in range(cfg.accum):
                qs = world.shard(batch[a * cfg.batch_size : (a + 1) * cfg.batch_size])
                if not qs:
                    continue
                visual = inp.visual([0] * len(qs), model.device, image_counts(bench, qs))
                loss, logits = objective(model, [bench.prompt(q) for q in qs], visual, qs)
                (loss.sum() / len(batch)).backward()
                total += float(loss.detach().sum())
                correct += int((choice_margin(logits.detach(), qs) > 0).sum())
            if world.distributed:
                params = [p for p in inp.parameters() if p.requires_grad]
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                stats = torch.tensor([total, correct], dtype=torch.float64, device=params[0].device)
                world.all_reduce_([p.grad for p in params] + [stats])
                total, correct = float(stats[0]), int(stats[1])
            opt.step()
            opt.zero_grad()
            inp.project_()
            history.append({"step": step + 1, "loss": round(total / len(batch), 4), "batch_accuracy": correct / len(batch)})
            if ckpt and world.main and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
                save(step + 1)
            advance(1)
    if run and world.main:
        save_artifact(inp, 0, run.artifacts_dir, source)
        (run.artifacts_dir / f"{source}.history.json").write_text(json.dumps(history))
    world.barrier()  # the artifact exists before any rank re-reads it
    return history


def resume_universal(ckpt: Path | None, inp: Input, opt: torch.optim.Optimizer,
                     device: torch.device) -> tuple[int, list[dict]]:
    """Restore a universal input and its optimizer from `ckpt` if it exists: (step, history). Otherwise the input's
    slot 0 gets its seeded start: (0, [])."""
    if ckpt and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        inp.load_state_dict(state["input"])
        opt.load_state_dict(state["opt"])
        return state["step"], state["history"]
    inp.start(0, "universal")
    return 0, []


def save_universal(ckpt: Path, inp: Input, opt: torch.optim.Optimizer, step: int,
                   history: list[dict]) -> None:
    """Write the checkpoint atomically (a kill mid-write leaves the previous one)."""
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"input": inp.state_dict(), "opt": opt.state_dict(), "step": step, "history": history}, tmp)
    tmp.replace(ckpt)


def universal_rows(model: VLM, bench: Benchmark, questions: Sequence[Question], inp: Input, objective: Objective,
                   source: str, run: RunDir | None, batch_size: int, world: World = SINGLE) -> list[dict]:
    """Evaluate the trained universal input on `questions` (this rank's shard; skipping rows `run` holds)."""
    def rows_for(qs: list[Question]) -> list[dict]:
        visual = inp.visual([0] * len(qs), model.device, image_counts(bench, qs))
        _, logits = objective(model, [bench.prompt(q) for q in qs], visual, qs)
        return [result_row(q, lg.cpu(), source) for q, lg in zip(qs, logits)]

    with torch.no_grad():
        return score_pending(world.shard(questions), source, rows_for, run, batch_size)
