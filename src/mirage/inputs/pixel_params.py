"""Pixel parameterizations (`--param`), one small module each: its parameters [S, ...], its random start, its map to
valid pixels [B, 3, H, W] in [0, 1] and its default learning rate (lucent's `param/`). `PixelInput` composes one."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..registry import Registry
from .base import take_slots
from .fourier import FourierImage

PIXEL_PARAMS: Registry[type[PixelParam]] = Registry("pixel parameterization")


class PixelParam(nn.Module):
    """S images of H x W under one parameterization; `forward(slots)` gives their valid pixels."""

    lr: ClassVar[float]  # the default learning rate of `optimize` (Adam) for this parameterization

    def reset_(self, slot: int, generator: torch.Generator) -> None:
        """Re-draw slot `slot` in place from `generator` (a CPU generator)."""
        raise NotImplementedError

    def forward(self, slots: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def project_(self) -> None:
        """Keep the parameters in their valid set after an optimizer step (default: nothing to do)."""


class _PixelGrid(PixelParam):
    """One free value per pixel: `pixels` [S, 3, H, W], mapped to [0, 1] by `valid`."""

    def __init__(self, slots: int, height: int, width: int):
        super().__init__()
        self.pixels = nn.Parameter(torch.zeros(slots, 3, height, width))  # [S, 3, H, W]

    def sample(self, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def valid(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def reset_(self, slot: int, generator: torch.Generator) -> None:
        self.pixels[slot] = self.sample(generator).to(self.pixels.device, self.pixels.dtype)

    def forward(self, slots: Tensor | None = None) -> Tensor:
        return self.valid(self.pixels if slots is None else take_slots(self.pixels, slots))


@PIXEL_PARAMS.register("raw")
class RawPixels(_PixelGrid):
    """Pixels themselves, clamped to [0, 1] in the forward pass and after each step."""

    lr = 0.02

    def sample(self, generator: torch.Generator) -> Tensor:
        return torch.rand(self.pixels.shape[1:], generator=generator) * 0.2 + 0.4  # mid-grey with a little noise

    def valid(self, x: Tensor) -> Tensor:
        return x.clamp(0, 1)

    @torch.no_grad()
    def project_(self) -> None:
        self.pixels.clamp_(0, 1)


@PIXEL_PARAMS.register("sigmoid")
class SigmoidPixels(_PixelGrid):
    """Logits of the pixels: always valid, no clamping."""

    lr = 0.1

    def sample(self, generator: torch.Generator) -> Tensor:
        return torch.randn(self.pixels.shape[1:], generator=generator) * 0.1  # sigmoid(0) = mid-grey

    def valid(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


@PIXEL_PARAMS.register("fourier")
class FourierPixels(FourierImage, PixelParam):
    """Lucid's scaled spectrum in decorrelated colour (`fourier.FourierImage`); its scale wants a small step."""

    lr = 0.005
