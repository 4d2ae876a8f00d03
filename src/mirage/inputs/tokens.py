"""`tokens`: the image tokens after the connector, as the LM receives them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.vlm import VLM, Visual
from .base import Input, gaussian_slot_, take_slots


class TokenInput(Input):
    """Optimizes the LM's image tokens [S, N, D_lm] directly, initialised at the scale of real tokens."""

    stage = "tokens"

    def __init__(self, model: VLM, slots: int, shape: tuple[int, int], scale: tuple[float, float], seed: int = 0,
                 images: int = 1):
        super().__init__(model, slots, seed, images)
        self.scale = scale
        self.tokens = nn.Parameter(torch.zeros(self.rows, *shape))  # [R, N, D_lm]

    def reset(self, slot: int, key: str) -> None:
        gaussian_slot_(self.tokens, slot, self.scale, self.generator(key))

    def forward(self, slots: Tensor) -> Visual:
        return Visual("tokens", take_slots(self.tokens, slots))

    def export(self, slot: int) -> dict[str, Tensor]:
        return {"tokens": self.tokens[slot].detach().to("cpu", copy=True).contiguous()}
