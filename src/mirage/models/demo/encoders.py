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


# Parameter names transformers changed between releases (older <-> newer), so weights saved under one release load
# under another: DINOv2's attention became q/k/v/o_proj in transformers 5.2x.
KEY_ALIASES = [
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
]


def align_keys(state: dict, expected: set[str]) -> dict:
    """Rename keys of `state` that are not in `expected` through KEY_ALIASES (either direction) when that fits."""
    out = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in KEY_ALIASES:
                for a, b in ((old, new), (new, old)):
                    if a in key and key.replace(a, b) in expected:
                        key = key.replace(a, b)
        out[key] = value
    return out


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
