"""`features`: one tensor per vision encoder at that encoder's output shape (the seed's "4 encoder-output tensors")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.vlm import VLM, Visual
from .base import Input, take_slots


class FeatureInput(Input):
    """Optimizes encoder features directly, bypassing the encoders.

    `encoders` (default: all) are optimized; the others are held at `held` features (the blank image's), detached.
    `detach` encoders keep their random initialisation, frozen (the seed's ConvNeXt memory workaround).
    `scale`: {encoder: (mean, std)} of real features, so random starts sit at the scale the connector expects.
    """

    stage = "features"

    def __init__(self, model: VLM, slots: int, scale: dict[str, tuple[float, float]], held: dict[str, Tensor],
                 encoders: list[str] | None = None, detach: list[str] | None = None, seed: int = 0, images: int = 1):
        super().__init__(model, slots, seed, images)
        names = [s.name for s in model.encoders]
        self.optimized = list(encoders or names)
        self.detached = list(detach or [])
        self.scale = scale
        self.params = nn.ParameterDict()
        for spec in model.encoders:
            if spec.name in self.optimized:
                p = torch.zeros(self.rows, spec.num_tokens, spec.dim)  # [R, T_e, D_e]
                self.params[spec.name] = nn.Parameter(p, requires_grad=spec.name not in self.detached)
        # held encoders: their blank-image features [1, T_e, D_e], never trained
        for name, value in held.items():
            if name not in self.optimized:
                self.register_buffer(f"held_{name}", value.detach().float().cpu())
        self.names = names

    def reset(self, slot: int, key: str) -> None:
        g = self.generator(key)
        with torch.no_grad():
            for name, p in self.params.items():
                mean, std = self.scale[name]
                p[slot] = (torch.randn(p.shape[1:], generator=g) * std + mean).to(p.device, p.dtype)

    def forward(self, slots: Tensor) -> Visual:
        out = {}
        for name in self.names:
            if name in self.params:
                out[name] = take_slots(self.params[name], slots)
            else:
                held = getattr(self, f"held_{name}")
                out[name] = held.to(slots.device).expand(len(slots), *held.shape[1:])
        return Visual("features", out)

    def export(self, slot: int) -> dict[str, Tensor]:
        return {name: p[slot].detach().to("cpu", copy=True).contiguous() for name, p in self.params.items()}

    @property
    def name(self) -> str:
        return "features"
