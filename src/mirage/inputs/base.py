"""The `Input` base: an optimizable visual input with one parameter slot per question (or one shared slot)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.vlm import VLM, Visual
from ..seeding import seed_for


def take_slots(param: Tensor, slots: Tensor) -> Tensor:
    """`param[slots]` along the slot dimension. Its backward adds the gradients of repeated slots (a universal
    input: every row is slot 0) one after another; plain indexing's backward adds them with parallel atomics on a
    multi-threaded CPU, so two identical runs differed in their last bits."""
    return param.index_select(0, slots.to(param.device))



@torch.no_grad()
def gaussian_slot_(param: Tensor, slot: int, scale: tuple[float, float], generator: torch.Generator) -> None:
    """Fill `param[slot]` with a Gaussian draw at `scale` (mean, std), drawn on the CPU from `generator`, so a
    question's start is the same on any device."""
    mean, std = scale
    param[slot] = (torch.randn(param.shape[1:], generator=generator) * std + mean).to(param.device, param.dtype)

class Input(nn.Module):
    """Parameters with a leading slot dimension [S, ...]; `forward(slots)` gives the Visual for a batch.

    An Input never knows the loss: `optimize` joins it with an objective. Slots are re-initialised per question
    (`reset`) from a generator seeded by (key, seed), so any order, batch size or resume gives the same start.
    """

    stage: str = ""

    def __init__(self, model: VLM, slots: int, seed: int = 0):
        super().__init__()
        self.slots, self.seed = slots, seed

    def generator(self, key: str) -> torch.Generator:
        return torch.Generator().manual_seed(seed_for(type(self).__name__, self.seed, key) % 2**63)

    def reset(self, slot: int, key: str) -> None:
        """Fresh random initialisation of `slot`, seeded by `key` (a question id, or "universal")."""
        raise NotImplementedError

    def forward(self, slots: Tensor) -> Visual:
        """The visual input for a batch whose rows use parameter slots `slots` [B] (repeats allowed)."""
        raise NotImplementedError

    def project_(self) -> None:
        """Keep parameters in their valid set after an optimizer step (default: nothing to do)."""

    def export(self, slot: int) -> dict[str, Tensor]:
        """The slot's optimized input as named CPU tensors, for safetensors artifacts."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.stage
