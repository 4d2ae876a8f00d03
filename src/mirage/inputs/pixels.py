"""`pixels`: an image optimized through each encoder's differentiable preprocessing and the frozen encoders."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import UsageError
from ..models.vlm import VLM, Visual
from ..registry import did_you_mean
from .base import Input
from .pixel_params import PIXEL_PARAMS

PARAMS = tuple(PIXEL_PARAMS)  # the `--param` names


def _renamed_pixels(state: dict, prefix: str, *_) -> None:
    if prefix + "pixels" in state:
        state[prefix + "image.pixels"] = state.pop(prefix + "pixels")


def quantize_ste(x: Tensor) -> Tensor:
    """Round to 8-bit levels in the forward pass, identity in the backward pass (straight-through)."""
    return x + ((x * 255).round() / 255 - x).detach()


class PixelInput(Input):
    """Images [S, 3, R, R] in [0, 1] under a parameterization of `PIXEL_PARAMS` (`image`). With `quantize`, every
    forward sees the 8-bit image a PNG will hold."""

    stage = "pixels"

    def __init__(self, model: VLM, slots: int, resolution: int | None = None, param: str = "sigmoid",
                 quantize: bool = False, seed: int = 0, encoders: list[str] | None = None,
                 held: dict[str, Tensor] | None = None, images: int = 1):
        super().__init__(model, slots, seed, images)
        # single-encoder runs: the image goes through `encoders` only; the others keep `held` (blank) features
        self.through = list(encoders) if encoders else None
        if self.through:
            self._encode = lambda px: model.encode(model.preprocess(px, self.through))  # not a submodule
            for name, value in (held or {}).items():
                if name not in self.through:
                    self.register_buffer(f"held_{name}", value.detach().float().cpu())
            self._order = [s.name for s in model.encoders]
        if param not in PIXEL_PARAMS:
            raise UsageError(did_you_mean("pixel parameterization", param, list(PARAMS)))
        self.param, self.quantize = param, quantize
        r = resolution or max(s.image_size for s in model.encoders)
        self.resolution = r
        self.image = PIXEL_PARAMS.get(param)(self.rows, r, r)
        # checkpoints written before the parameterizations were modules hold raw/sigmoid pixels as "pixels"
        self._register_load_state_dict_pre_hook(_renamed_pixels)

    @property
    def pixels(self) -> Tensor:
        """The free pixels [S, 3, R, R] of `raw` and `sigmoid`."""
        return self.image.pixels

    def reset(self, slot: int, key: str) -> None:
        self.image.reset_(slot, self.generator(key))

    def images(self, slots: Tensor) -> Tensor:
        """[B, 3, R, R] in [0, 1] for these slots."""
        x = self.image(slots)
        return quantize_ste(x) if self.quantize else x

    def forward(self, slots: Tensor) -> Visual:
        if not self.through:
            return Visual("pixels", self.images(slots))
        feats = self._encode(self.images(slots))
        for name in self._order:
            if name not in feats:
                held = getattr(self, f"held_{name}")
                feats[name] = held.to(slots.device).expand(len(slots), *held.shape[1:])
        return Visual("features", feats)

    def project_(self) -> None:
        self.image.project_()

    def export(self, slot: int) -> dict[str, Tensor]:
        with torch.no_grad():
            return {"pixels": self.images(torch.tensor([slot], device=self._device()))[0].cpu().contiguous()}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def name(self) -> str:
        return "pixels"
