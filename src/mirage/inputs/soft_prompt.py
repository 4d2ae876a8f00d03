"""`soft-prompt`: free vectors in the LM's input embeddings of the text-only prompt, no image at all (the control
for every crafted input: what an optimized input can do as a prompt, whatever it is an image of)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.vlm import SOFT, VLM, Visual
from .base import Input, gaussian_slot_, take_slots


class SoftPromptInput(Input):
    """Optimizes `n` vectors [S, n, D_lm] that the model reads where the image would stand in its text-only turn
    (`Visual("soft")`); they start as Gaussian draws at the mean and std of the LM's token embeddings."""

    stage = SOFT

    def __init__(self, model: VLM, slots: int, n: int, seed: int = 0):
        super().__init__(model, slots, seed)
        weight = model.input_embeddings().weight.detach().float()  # [V, D_lm]
        self.scale = (float(weight.mean()), float(weight.std()))
        self.vectors = nn.Parameter(torch.zeros(slots, n, weight.shape[1]))  # [S, n, D_lm]

    def reset(self, slot: int, key: str) -> None:
        gaussian_slot_(self.vectors, slot, self.scale, self.generator(key))

    def forward(self, slots: Tensor) -> Visual:
        return Visual(SOFT, take_slots(self.vectors, slots))

    def export(self, slot: int) -> dict[str, Tensor]:
        return {"soft_prompt": self.vectors[slot].detach().to("cpu", copy=True).contiguous()}

    @property
    def name(self) -> str:
        return "soft-prompt"
