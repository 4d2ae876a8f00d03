"""The `Input` base: an optimizable visual input with one parameter slot per question (or one shared slot), one
row per image the question is asked with."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor, nn

from ..benchmarks.question import image_key
from ..models.vlm import VLM, Visual, on_device
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
    """Parameters with a leading dimension of rows [R, ...], `n_images` rows per slot (R = slots x n_images): a slot
    holds one question's input (or the one shared input), one row per image the question is asked with. `forward(rows)`
    gives the Visual of those rows; `visual(slots, device, counts)` the Visual of a batch of questions.

    An Input never knows the loss: `optimize` joins it with an objective. Slots are re-initialised per question
    (`start`, each row by `reset`) from a generator seeded by (key, seed), so any order, batch size or resume gives
    the same start.
    """

    stage: str = ""

    def __init__(self, model: VLM, slots: int, seed: int = 0, images: int = 1):
        super().__init__()
        self.slots, self.seed, self.n_images = slots, seed, images
        self.rows = slots * images  # parameter rows

    def row(self, slot: int, image: int = 0) -> int:
        """The parameter row of image `image` of slot `slot`."""
        return slot * self.n_images + image

    def start(self, slot: int, key: str) -> None:
        """Fresh start of slot `slot` for `key` (a question id, or "universal"): its image k's row seeded by
        `image_key(key, k)`, so the first image starts as a one-image input of the same question does."""
        for k in range(self.n_images):
            self.reset(self.row(slot, k), image_key(key, k))

    def visual(self, slots: Sequence[int], device: torch.device, counts: Sequence[int] | None = None) -> Visual:
        """The Visual of a batch whose row b is slot `slots[b]` asked with `counts[b]` images (None: one image per
        row). An input with several images per slot gives image k its own row; one with a single image per slot
        shows it as every image of the question (a universal input on a several-image benchmark)."""
        if counts is None:
            return self(on_device([self.row(s) for s in slots], device))
        if self.n_images > 1 and max(counts) > self.n_images:
            raise ValueError(f"a question asked with {max(counts)} images; this input holds {self.n_images} per slot")
        rows = [self.row(s, k if self.n_images > 1 else 0) for s, n in zip(slots, counts) for k in range(n)]
        return replace(self(on_device(rows, device)), counts=tuple(counts))

    def generator(self, key: str) -> torch.Generator:
        return torch.Generator().manual_seed(seed_for(type(self).__name__, self.seed, key) % 2**63)

    def reset(self, slot: int, key: str) -> None:
        """Fresh random initialisation of row `slot`, seeded by `key`."""
        raise NotImplementedError

    def forward(self, slots: Tensor) -> Visual:
        """The visual input for a batch whose rows use parameter rows `slots` [B] (repeats allowed)."""
        raise NotImplementedError

    def project_(self) -> None:
        """Keep parameters in their valid set after an optimizer step (default: nothing to do)."""

    def export(self, slot: int) -> dict[str, Tensor]:
        """Row `slot`'s optimized input as named CPU tensors, for safetensors artifacts: copies, never views of the
        parameters (the optimization loop writes them behind, while the slot already holds another question)."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.stage
