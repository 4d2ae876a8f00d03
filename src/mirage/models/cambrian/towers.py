"""Cambrian-1's vision towers as transformers models, each giving features in the checkpoint's shapes [B, T, D].

What the official towers return (cambrian/model/multimodal_encoder/, commit 539ffc3), reproduced here:
- SigLIP SO400M/14@384: timm `forward_features` (final norm, 27 x 27 = 729 tokens) bilinearly resized to 24 x 24.
  Here: transformers `SiglipVisionModel` (`last_hidden_state` is after `post_layernorm`) with timm's exact GELU
  (pinned.py); real weights from google/siglip-so400m-patch14-384, the same big_vision checkpoint open_clip's
  timm/ViT-SO400M-14-SigLIP-384 holds.
- CLIP ViT-L/14@336: transformers `CLIPVisionModel`, `hidden_states[-2]` without CLS (24 x 24, no resize).
- DINOv2-g/14 at 378 px: transformers `Dinov2Model` with 4.37's position interpolation (pinned.py),
  `last_hidden_state` without CLS (27 x 27) resized to 24 x 24.
- ConvNeXt-XXL@1024 (open_clip CLIP-convnext_xxlarge trunk, a timm ConvNeXt): the stem and each of the 4 stages'
  maps (256, 128, 64, 32 px) bilinearly resized to 96 x 96 and concatenated: 9216 tokens of 384+768+1536+3072 = 5760.
  Here: transformers `ConvNextModel` holds the same architecture (no open_clip/timm dependency); its internal
  LayerNorms get timm's eps for convnext_xxlarge (1e-5, transformers hard-codes 1e-6; pinned.py). Real weights
  need the key mapping in `convnext_from_open_clip`.
Resizes run in float32 and cast back, as the official towers do.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import (CLIPVisionConfig, CLIPVisionModel, ConvNextConfig, ConvNextModel, Dinov2Config, Dinov2Model,
                          SiglipVisionConfig, SiglipVisionModel)

from .config import TowerConfig
from .pinned import pin_tower


class ConvNextTrunk(ConvNextModel):
    """transformers' ConvNeXt with gradient checkpointing per block (transformers does not offer it for ConvNeXt),
    so mirage's `--grad-checkpointing` switch reaches the largest tower too."""

    supports_gradient_checkpointing = True
    gradient_checkpointing = False


ARCHS = {
    "clip": (CLIPVisionConfig, CLIPVisionModel),
    "siglip": (SiglipVisionConfig, SiglipVisionModel),
    "dinov2": (Dinov2Config, Dinov2Model),
    "convnext": (ConvNextConfig, ConvNextTrunk),
}


def resize_tokens(x: Tensor, n: int) -> Tensor:
    """A square token map [B, T, D] bilinearly resized to n tokens [B, n, D] (unchanged when T == n)."""
    b, t, d = x.shape
    if t == n:
        return x
    g, s = math.isqrt(t), math.isqrt(n)
    grid = x.view(b, g, g, d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(s, s), mode="bilinear", align_corners=False).to(x.dtype)
    return grid.permute(0, 2, 3, 1).reshape(b, n, d)


class VisionTower(nn.Module):
    """One tower: pixels [B, 3, s, s] (normalised) -> features [B, token_len, dim]."""

    def __init__(self, cfg: TowerConfig, model: nn.Module | None = None):
        super().__init__()
        config_cls, model_cls = ARCHS[cfg.arch]
        self.arch, self.token_len, self.select_layer = cfg.arch, cfg.token_len, cfg.select_layer
        self.model = model if model is not None else model_cls(config_cls(**cfg.config))
        pin_tower(self.model, cfg.arch)  # the official activation, eps, attention scale, DINOv2 interpolation

    @property
    def dim(self) -> int:
        c = self.model.config
        return sum(c.hidden_sizes) if self.arch == "convnext" else c.hidden_size

    def forward(self, pixel_values: Tensor) -> Tensor:
        if self.arch == "convnext":
            return self._convnext(pixel_values)
        if self.select_layer is not None:
            h = self.model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[self.select_layer]
        else:
            h = self.model(pixel_values=pixel_values).last_hidden_state
        if self.arch in ("clip", "dinov2"):
            h = h[:, 1:]  # mm_vision_select_feature "patch": drop CLS
        return resize_tokens(h, self.token_len)

    def _convnext(self, pixel_values: Tensor) -> Tensor:
        m, side = self.model, math.isqrt(self.token_len)
        ckpt = m.gradient_checkpointing and self.training and torch.is_grad_enabled()
        x = m.embeddings(pixel_values)
        maps = []
        for stage in m.encoder.stages:
            for layer in stage.downsampling_layer:
                x = layer(x)
            for layer in stage.layers:
                x = checkpoint(layer, x, use_reentrant=False) if ckpt else layer(x)
            y = F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False).to(x.dtype)
            maps.append(y.flatten(2).transpose(1, 2))  # [B, side*side, C_stage]
        return torch.cat(maps, -1)


# open_clip's CLIP-convnext_xxlarge holds the tower as a timm ConvNeXt under `visual.trunk.`; transformers' names:
OPEN_CLIP_CONVNEXT = [
    (r"stem\.0\.(weight|bias)", r"embeddings.patch_embeddings.\1"),
    (r"stem\.1\.(weight|bias)", r"embeddings.layernorm.\1"),
    (r"stages\.(\d+)\.downsample\.([01])\.(weight|bias)", r"encoder.stages.\1.downsampling_layer.\2.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.(weight|bias)", r"encoder.stages.\1.layers.\2.dwconv.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.norm\.(weight|bias)", r"encoder.stages.\1.layers.\2.layernorm.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.stages.\1.layers.\2.pwconv1.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.stages.\1.layers.\2.pwconv2.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.gamma", r"encoder.stages.\1.layers.\2.layer_scale_parameter"),
    (r"head\.norm\.(weight|bias)", r"layernorm.\1"),  # the pooled-feature norm: unused by Cambrian
]


def convnext_from_open_clip(state: dict[str, Tensor], prefix: str = "visual.trunk.") -> dict[str, Tensor]:
    """open_clip CLIP-ConvNeXt weights -> transformers ConvNextModel keys. Keys outside the trunk (text tower,
    projection head) are dropped; a trunk key no rule maps raises, naming it."""
    out, unmapped = {}, []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        for pattern, target in OPEN_CLIP_CONVNEXT:
            if re.fullmatch(pattern, name):
                out[re.sub(pattern, target, name)] = value
                break
        else:
            if not name.startswith("head."):  # timm's classifier head (fc, drop) has no counterpart
                unmapped.append(key)
    if unmapped:
        raise ValueError(f"open_clip ConvNeXt keys with no transformers counterpart: {unmapped}")
    return out


def load_open_clip_convnext(cfg: TowerConfig, device: torch.device, dtype: torch.dtype) -> VisionTower:
    """The ConvNeXt tower from its open_clip checkpoint on the hub (downloads; never used by tests)."""
    from huggingface_hub import hf_hub_download

    try:
        from safetensors.torch import load_file

        state = load_file(hf_hub_download(cfg.source, "open_clip_model.safetensors"))
    except Exception:  # older repos only hold the pickle
        state = torch.load(hf_hub_download(cfg.source, "open_clip_pytorch_model.bin"), map_location="cpu",
                           weights_only=True)
    with torch.device(device):
        tower = VisionTower(cfg)
    mapped = convnext_from_open_clip(state)
    missing, unexpected = tower.model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.startswith("layernorm.")]  # the unused pooled norm may be absent
    if missing or unexpected:
        raise ValueError(f"{cfg.source}: ConvNeXt weights missing {missing}, unexpected {unexpected}")
    return tower.to(dtype)
