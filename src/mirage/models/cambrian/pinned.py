"""The official Cambrian-1 towers' version-dependent steps, written as mirage's own code so that the numbers do not
move with the installed transformers release.

The official code (cambrian-mllm/cambrian 539ffc3) ran under transformers 4.37 and timm 0.9.16:
- SigLIP is open_clip's timm trunk (`siglip_encoder.py`: `clip_model.visual.trunk.forward_features`), whose ViT
  blocks use exact `nn.GELU()` and LayerNorm eps 1e-6 (timm `vision_transformer.py`); transformers' SigLIP config
  (google/siglip-so400m-patch14-384) says `gelu_pytorch_tanh`, so the activation is replaced here.
- DINOv2 is transformers' `Dinov2Model` (`dino_encoder.py`), run at 378 px on position embeddings trained at 518:
  4.37's `Dinov2Embeddings.interpolate_pos_encoding` adds 0.1 to the target grid and resizes by `scale_factor`
  (bicubic, align_corners=False, in float32); transformers >= 4.45 resizes to `size`, which samples other points.
- ConvNeXt is open_clip's timm trunk of convnext_xxlarge: exact GELU, every LayerNorm eps 1e-5.
- CLIP is transformers' `CLIPVisionModel`: quick GELU, eps 1e-5.
Every tower's attention scale is head_dim ** -0.5 (timm `Attention`, transformers' CLIP, SigLIP, DINOv2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings


class QuickGELU(nn.Module):
    """CLIP's activation: x * sigmoid(1.702 x)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


# arch -> (activation module factory, LayerNorm eps) of the official tower
OFFICIAL = {"siglip": (nn.GELU, 1e-6), "clip": (QuickGELU, 1e-5), "dinov2": (nn.GELU, 1e-6),
            "convnext": (nn.GELU, 1e-5)}
HIDDEN_ACT = {"siglip": "gelu", "clip": "quick_gelu", "dinov2": "gelu", "convnext": "gelu"}  # the same, as config


def dinov2_pos_encoding(position_embeddings: Tensor, height: int, width: int, patch_size: int) -> Tensor:
    """transformers 4.37's DINOv2 position embeddings for a `height` x `width` input: [1, 1 + N, D] (CLS first, a
    square grid of N) -> [1, 1 + (height / p)(width / p), D]. The target grid + 0.1 sets `scale_factor`, so the
    bicubic samples sit at (i + 0.5) / scale - 0.5, not at the points a resize to `size` would take."""
    n = position_embeddings.shape[1] - 1
    h, w = height // patch_size, width // patch_size
    if n == h * w and height == width:
        return position_embeddings
    side = math.isqrt(n)
    d = position_embeddings.shape[-1]
    grid = position_embeddings[:, 1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), scale_factor=(float((h + 0.1) / side), float((w + 0.1) / side)),
                         mode="bicubic", align_corners=False).to(position_embeddings.dtype)
    if grid.shape[-2:] != (h, w):
        raise ValueError(f"DINOv2 position embeddings: {side}x{side} interpolated to {tuple(grid.shape[-2:])}, "
                         f"the input needs {h}x{w}")
    return torch.cat([position_embeddings[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, d)], 1)


class PinnedDinov2Embeddings(Dinov2Embeddings):
    """transformers' DINOv2 embeddings with 4.37's position interpolation (`dinov2_pos_encoding`)."""

    def interpolate_pos_encoding(self, embeddings: Tensor, height: int, width: int) -> Tensor:
        return dinov2_pos_encoding(self.position_embeddings, height, width, self.config.patch_size)


def pin_tower(model: nn.Module, arch: str) -> None:
    """Set a transformers tower's activation, LayerNorm eps, attention scale (and DINOv2's position interpolation)
    to the official tower's, whatever its config or the transformers release says."""
    act, eps = OFFICIAL[arch]
    model.config.hidden_act = HIDDEN_ACT[arch]
    if hasattr(model.config, "layer_norm_eps"):
        model.config.layer_norm_eps = eps
    for mod in model.modules():
        if isinstance(mod, nn.LayerNorm):  # transformers' ConvNextLayerNorm is one too
            mod.eps = eps
        for name in ("activation_fn", "act", "activation"):  # SigLIP/CLIP/DINOv2 MLPs, ConvNeXt blocks
            if isinstance(getattr(mod, name, None), nn.Module) and not isinstance(getattr(mod, name), nn.Linear):
                setattr(mod, name, act())
        head_dim = getattr(mod, "head_dim", None) or getattr(mod, "attention_head_size", None)
        if isinstance(head_dim, int):
            for name in ("scale", "scaling"):
                if isinstance(getattr(mod, name, None), float):
                    setattr(mod, name, head_dim**-0.5)
    if arch == "dinov2":
        model.embeddings.__class__ = PinnedDinov2Embeddings
