"""Adam over parameters with a leading slot dimension, each slot with its own step count.

Per-question optimization refills a slot when its question stops early; the new question must start Adam from
step 0 while the others go on. torch.optim keeps one step count per tensor, hence this small optimizer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SlotAdam:
    """Adam (Kingma & Ba) on [S * rows, ...] parameters, `rows` consecutive rows per slot (one per image of a
    several-image question); `step(active)` updates only the slots where `active` [S] is True."""

    def __init__(self, params: list[nn.Parameter], slots: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 rows: int = 1):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.rows = lr, betas, eps, rows
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(slots, dtype=torch.long)

    def reset(self, slot: int) -> None:
        """Forget the slot's moments and step count (a new question takes it)."""
        rows = slice(slot * self.rows, (slot + 1) * self.rows)
        for m, v in zip(self.m, self.v):
            m[rows] = 0
            v[rows] = 0
        self.t[slot] = 0

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        b1, b2 = self.betas
        self.t += active.long()
        t = self.t.clamp(min=1).double()
        bc1, bc2 = (1 - b1**t).float(), (1 - b2**t).float()
        if self.rows > 1:  # each slot's rows step together
            active, bc1, bc2 = (x.repeat_interleave(self.rows) for x in (active, bc1, bc2))
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.to(p.device, non_blocking=True).view(shape)  # no stream sync (see vlm.on_device)
            g = p.grad
            m.copy_(torch.where(on, b1 * m + (1 - b1) * g, m))
            v.copy_(torch.where(on, b2 * v + (1 - b2) * g * g, v))
            mhat = m / bc1.to(p.device, non_blocking=True).view(shape)
            vhat = v / bc2.to(p.device, non_blocking=True).view(shape)
            p.sub_(torch.where(on, self.lr * mhat / (vhat.sqrt() + self.eps), torch.zeros_like(p)))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
