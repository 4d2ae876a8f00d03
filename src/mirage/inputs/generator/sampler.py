"""Few-step DDIM sampling as a Gaussian policy (DDPO): with eta > 0 each step draws x_{t-1} ~ N(mean(x_t), std^2),
so a trajectory has a log-probability that REINFORCE can differentiate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Trajectory:
    """One batch of sampled chains: `states` [T+1, N, C, r, r] from x_T to x_0, the step `timesteps` [T], and the
    sampling policy's `log_probs` [T, N] of each x_{t-1} (mean over its dimensions, as DDPO)."""

    states: Tensor
    timesteps: Tensor
    log_probs: Tensor

    @property
    def final(self) -> Tensor:
        return self.states[-1]


def ddim_step(scheduler, x0: Tensor, t: int, x: Tensor, eta: float, noise: Tensor | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """One DDIM step of diffusers' `DDIMScheduler` from a predicted clean sample `x0` (prediction type `sample`,
    no clipping) as (x_prev, mean, std): x_prev = mean + std * noise, the x_prev that
    `scheduler.step(x0, t, x, eta, variance_noise=noise)` gives."""
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    a_t = scheduler.alphas_cumprod[t].to(x)
    a_prev = (scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod).to(x)
    eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    std = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).sqrt() * eps
    x_prev = mean if noise is None else mean + std * noise
    return x_prev, mean, std


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std^2) per row, averaged over the other dimensions: [N]."""
    std = std.clamp(min=1e-8)
    lp = -((x - mean) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).mean(1)


def draw_noise(n: int, steps: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """The randomness of `n` chains: x_T and each step's noise, [T+1, n, *shape] (CPU, from `generator`)."""
    return torch.randn(steps + 1, n, *shape, generator=generator)
