"""Adam over parameters with a leading slot dimension, each slot with its own step count.

Per-question optimization refills a slot when its question stops early; the new question must start Adam from
step 0 while the others go on. torch.optim keeps one step count per tensor, hence this small optimizer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.adam import adam


class SlotAdam:
    """Adam (Kingma & Ba) on [S * rows, ...] parameters, `rows` consecutive rows per slot (one per image of a
    several-image question); `step(active)` updates only the slots where `active` [S] is True.

    Each slot's rows are a contiguous view of its parameter, so a step hands the active slots' views, with their own
    step counts, to torch's fused Adam (`torch.optim.adam.adam(fused=True)`: one kernel over every tensor, in place).
    Per-question features of Cambrian-1's ConvNeXt are 53M values a question; an unfused update made ~40 passes over
    them and held several temporaries as large as the parameter."""

    def __init__(self, params: list[nn.Parameter], slots: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 rows: int = 1):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.rows = lr, betas, eps, rows
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(slots, dtype=torch.long)  # on the host: the loop reads it every step
        # fused Adam's step counts: float32 on the parameter's device, one per (parameter, slot)
        self.steps = [torch.zeros(slots, dtype=torch.float32, device=p.device) for p in self.params]

    def _rows(self, slot: int) -> slice:
        return slice(slot * self.rows, (slot + 1) * self.rows)

    def reset(self, slot: int) -> None:
        """Forget the slot's moments and step count (a new question takes it)."""
        rows = self._rows(slot)
        for m, v, steps in zip(self.m, self.v, self.steps):
            m[rows] = 0
            v[rows] = 0
            steps[slot] = 0
        self.t[slot] = 0

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        self.t += active.long()
        slots = active.nonzero()[:, 0].tolist()  # a host tensor: no device sync
        lists: tuple[list[Tensor], ...] = ([], [], [], [], [])
        for p, m, v, steps in zip(self.params, self.m, self.v, self.steps):
            if p.grad is None:
                continue
            for s in slots:
                rows = self._rows(s)
                for out, t in zip(lists, (p[rows], p.grad[rows], m[rows], v[rows], steps[s])):
                    out.append(t)
        if not lists[0]:
            return
        params, grads, ms, vs, steps = lists
        adam(params, grads, ms, vs, [], steps, fused=True, amsgrad=False, beta1=self.betas[0], beta2=self.betas[1],
             lr=self.lr, weight_decay=0.0, eps=self.eps, maximize=False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
