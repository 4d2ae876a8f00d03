"""The demo's vision encoders: real transformers models built from small configs, each returning [B, T, D]."""

from __future__ import annotations

from torch import Tensor, nn
from transformers import (CLIPVisionConfig, CLIPVisionModel, ConvNextConfig, ConvNextModel, Dinov2Config, Dinov2Model,
                          SiglipVisionConfig, SiglipVisionModel)

ARCHS = {
    "clip": (CLIPVisionConfig, CLIPVisionModel, 1),  # (config class, model class, leading CLS tokens to drop)
    "siglip": (SiglipVisionConfig, SiglipVisionModel, 0),
    "dinov2": (Dinov2Config, Dinov2Model, 1),
    "convnext": (ConvNextConfig, ConvNextModel, 0),
}


class VisionEncoder(nn.Module):
    """One transformers vision model; `forward` gives its patch features as [B, T, D]."""

    def __init__(self, arch: str, config: dict):
        super().__init__()
        config_cls, model_cls, self.drop = ARCHS[arch]
        self.arch = arch
        self.model = model_cls(config_cls(**config))

    def forward(self, pixel_values: Tensor) -> Tensor:
        h = self.model(pixel_values=pixel_values).last_hidden_state
        if h.dim() == 4:  # convolutional: [B, D, H, W] -> [B, H*W, D]
            return h.flatten(2).transpose(1, 2)
        return h[:, self.drop :]
