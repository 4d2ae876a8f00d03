"""Training the generator on the benchmark's reward: DDPO-style REINFORCE over the denoising steps, or (the
control) the answer loss backpropagated through the sampler. Checkpointed and resumable."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from ..benchmarks.question import Benchmark, Question
from ..errors import UsageError
from ..inputs.generator import GeneratorInput, Trajectory, draw_noise, to_pixels
from ..models.vlm import VLM, Visual
from ..seeding import seed_for

METHODS = ("reinforce", "backprop")
REWARDS = ("prob", "correct")


@dataclass
class TrainConfig:
    """The training loop's settings. A step: `questions` training questions, `samples` images each."""

    method: str = "reinforce"
    steps: int = 100
    lr: float = 3e-4
    questions: int = 8
    samples: int = 2  # reinforce: images per question; the question's mean reward is their baseline
    reward: str = "prob"  # prob: p(correct answer) over the choices; correct: 1 if the model answers correctly
    inner_epochs: int = 1  # policy updates per batch of samples (PPO-style reuse, kept close by the clip)
    clip: float = 1e-4  # DDPO's ratio clip (log-probabilities are per-dimension means, so ratios stay near 1)
    adv_clip: float = 5.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        from ..registry import did_you_mean

        if self.method not in METHODS:
            raise UsageError(f"--method: {did_you_mean('method', self.method, list(METHODS))}")
        if self.reward not in REWARDS:
            raise UsageError(f"--reward: {did_you_mean('reward', self.reward, list(REWARDS))}")


def advantages(rewards: Tensor, groups: Tensor | None = None, clip: float = 5.0) -> Tensor:
    """Rewards [N] minus a baseline (the mean of the row's group, e.g. its question; else the batch mean), scaled
    by their standard deviation and clipped to +-`clip`."""
    if groups is None:
        centred = rewards - rewards.mean()
    else:
        _, inv = groups.unique(return_inverse=True)
        sums = torch.zeros(int(inv.max()) + 1, dtype=rewards.dtype).index_add_(0, inv, rewards)
        counts = torch.zeros_like(sums).index_add_(0, inv, torch.ones_like(rewards))
        centred = rewards - (sums / counts)[inv]
    scale = centred.std() if len(centred) > 1 else centred.new_tensor(1.0)
    return (centred / (scale + 1e-8)).clamp(-clip, clip)


def policy_loss(new_log_probs: Tensor, old_log_probs: Tensor, adv: Tensor, clip: float) -> Tensor:
    """DDPO's clipped surrogate over all steps: mean of max(-A r, -A clip(r)), r = p_new / p_old per step [T, N].
    At r = 1 (the first update on fresh samples) its gradient is REINFORCE's: -A grad log p."""
    ratio = (new_log_probs - old_log_probs.detach()).exp()
    a = adv.detach().to(ratio)[None]
    return torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)).mean()


def reinforce_update(net, traj: Trajectory, cond_fn: Callable[[], tuple[Tensor, Tensor]], adv: Tensor,
                     opt: torch.optim.Optimizer, cfg: TrainConfig) -> float:
    """`inner_epochs` clipped policy-gradient steps on one batch of chains; returns the last surrogate loss."""
    params = [p for p in net.parameters() if p.requires_grad]
    for _ in range(cfg.inner_epochs):
        cond, mask = cond_fn()
        loss = policy_loss(net.log_probs(traj, cond, mask), traj.log_probs, adv, cfg.clip)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad()
    return float(loss.detach())


def step_noise(gen: GeneratorInput, n: int, seed: int, step: int) -> Tensor:
    """The chains' randomness of training step `step`: fixed by (seed, step), so a resumed run draws the same."""
    g = torch.Generator().manual_seed(seed_for("generator-step", seed, step) % 2**63)
    return draw_noise(n, gen.config.steps, gen.noise_shape, g)


def question_noise(gen: GeneratorInput, questions: Sequence[Question], seed: int) -> Tensor:
    """One chain's randomness per question, fixed by (seed, question id): evaluation and examples agree."""
    return torch.cat([draw_noise(1, gen.config.steps, gen.noise_shape, torch.Generator().manual_seed(
        seed_for("generator-sample", seed, q.id) % 2**63)) for q in questions], 1)


def choice_rewards(logits: Tensor, questions: Sequence[Question], kind: str) -> Tensor:
    """Reward per row [N]: p(correct) over the choices, or 1.0 when the model's answer is correct."""
    answers = torch.tensor([q.answer for q in questions], device=logits.device)
    if kind == "correct":
        return (logits.argmax(-1) == answers).float().cpu()
    return logits.float().softmax(-1).gather(1, answers[:, None])[:, 0].cpu()


def train_step(model: VLM, bench: Benchmark, gen: GeneratorInput, qs: Sequence[Question], noise: Tensor,
               opt: torch.optim.Optimizer, cfg: TrainConfig) -> dict:
    """One training step on questions `qs` (one row per chain); returns loss, mean reward and batch accuracy."""
    prompts = [bench.prompt(q) for q in qs]
    n_choices = [len(q.choices) for q in qs]
    if cfg.method == "backprop":
        from ..objectives import answer_ce

        cond, mask = gen.condition(prompts)
        images = to_pixels(gen.net.sample(cond, mask, noise).final, gen.resolution)
        loss, logits = answer_ce(model, prompts, Visual("pixels", images), qs)
        loss.mean().backward()
        torch.nn.utils.clip_grad_norm_(list(gen.parameters()), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad()
        logits, loss_value = logits.detach(), float(loss.detach().mean())
    else:
        with torch.no_grad():
            cond, mask = gen.condition(prompts)
            traj = gen.net.sample(cond, mask, noise)
            logits = model.choice_logits(prompts, Visual("pixels", to_pixels(traj.final, gen.resolution)), n_choices)
        index: dict[str, int] = {}
        groups = torch.tensor([index.setdefault(q.id, len(index)) for q in qs])  # a question's rows share a baseline
        adv = advantages(choice_rewards(logits, qs, cfg.reward), groups, cfg.adv_clip)
        loss_value = reinforce_update(gen.net, traj, lambda: gen.condition(prompts), adv, opt, cfg)
    answers = torch.tensor([q.answer for q in qs])
    return {"loss": round(loss_value, 6), "reward": round(float(choice_rewards(logits, qs, cfg.reward).mean()), 4),
            "batch_accuracy": round(float((logits.argmax(-1).cpu() == answers).float().mean()), 4)}


@contextmanager
def reward_bar(description: str, total: int, quiet: bool) -> Iterator[Callable[[float], None]]:
    """A progress bar (as mirage.progress's) that also shows the running reward; yields `advance(reward)`."""
    if quiet or total <= 0:
        yield lambda reward: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("reward {task.fields[reward]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total, reward="-")
        running: list[float] = []

        def advance(reward: float) -> None:
            running.append(reward)
            window = running[-10:]
            bar.update(task, advance=1, reward=f"{sum(window) / len(window):.3f}")

        yield advance


def train_generator(model: VLM, bench: Benchmark, train: Sequence[Question], gen: GeneratorInput, cfg: TrainConfig,
                    ckpt: Path | None = None, quiet: bool = True, stop_after: int | None = None) -> list[dict]:
    """Train `gen` on `train` for `cfg.steps` steps; checkpoints (weights, optimizer, step, history, RNG) to `ckpt`
    every `checkpoint_every` steps with atomic writes, and resumes from it. `stop_after` ends the call early."""
    from ..optimize import train_stream

    opt = torch.optim.Adam([p for p in gen.parameters() if p.requires_grad], lr=cfg.lr)
    start, history = 0, []
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=model.device, weights_only=False)
        gen.load_state_dict(state["generator"])
        opt.load_state_dict(state["opt"])
        start, history = state["step"], state["history"]
        torch.set_rng_state(state["rng"])
    else:
        gen.reset(0, "universal")

    def save(step: int) -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"generator": gen.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
                    "rng": torch.get_rng_state(), "config": asdict(cfg)}, tmp)
        tmp.replace(ckpt)

    samples = cfg.samples if cfg.method == "reinforce" else 1
    with reward_bar(f"training generator ({cfg.method})", cfg.steps - start, quiet) as advance:
        for step in range(start, cfg.steps):
            if stop_after is not None and step - start >= stop_after:
                return history
            qs = [q for q in train_stream(train, step, cfg.questions, cfg.seed) for _ in range(samples)]
            record = train_step(model, bench, gen, qs, step_noise(gen, len(qs), cfg.seed, step), opt, cfg)
            history.append({"step": step + 1, **record})
            if ckpt is not None and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
                save(step + 1)
            advance(record["reward"])
    return history
