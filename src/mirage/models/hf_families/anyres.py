"""LLaVA-NeXT and LLaVA-OneVision: anyres tiles at a grid chosen once for the fixed size."""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Family, normalize, resize, square_size, vision_tower_states


class Anyres(Family):
    """LLaVA-NeXT and LLaVA-OneVision: the base image at the tower's size, then the tiles of the best grid resolution
    for an S x S image (aspect-preserving resize, zero padding centred, tiles row by row), every patch resized and
    cropped as the processor does; the model's own `pack_image_features` unpads and appends the newline tokens."""

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
        from transformers.image_utils import ChannelDimension

        ip, cfg = self.ip, vlm.model.config
        sz = dict(ip.size)
        self.base = square_size(sz)
        crop = getattr(ip, "crop_size", None) or {}
        self.patch = crop.get("height") or sz.get("height") or sz["shortest_edge"]
        self.best = tuple(select_best_resolution((size, size), cfg.image_grid_pinpoints))  # chosen once
        dummy = np.zeros((3, size, size), np.uint8)
        self.inner_size = tuple(get_patch_output_size(dummy, self.best, input_data_format=ChannelDimension.FIRST))
        self.grid = (self.best[0] // self.patch, self.best[1] // self.patch)
        self.n_patches = 1 + self.grid[0] * self.grid[1]
        self.layer, self.strategy = cfg.vision_feature_layer, cfg.vision_feature_select_strategy

    @staticmethod
    def default_size(ip) -> int:
        """Twice the tile when that square is a grid resolution (the base image plus 2 x 2 tiles), else the tile."""
        s = square_size(dict(ip.size))[0]
        return 2 * s if [2 * s, 2 * s] in [list(p) for p in ip.image_grid_pinpoints] else s

    def _finish(self, p: Tensor) -> Tensor:
        """The processor's per-patch steps: resize to `size`, centre crop, normalise."""
        ip = self.ip
        if ip.do_resize:
            sz = dict(ip.size)
            if sz.get("height"):
                target = (sz["height"], sz["width"])
            else:  # shortest edge, aspect kept (as transformers' get_resize_output_image_size)
                s, (h, w) = sz["shortest_edge"], p.shape[-2:]
                target = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
            p = resize(p, target, ip.resample)
        if getattr(ip, "do_center_crop", False):
            ch, cw = ip.crop_size["height"], ip.crop_size["width"]
            top, left = (p.shape[-2] - ch) // 2, (p.shape[-1] - cw) // 2
            p = p[..., top : top + ch, left : left + cw]
        return normalize(p, ip)

    def twin(self, x: Tensor) -> Tensor:
        x = resize(x, (self.size, self.size), self.ip.resample)
        base = resize(x, self.base, self.ip.resample)
        r = resize(x, self.inner_size, self.ip.resample)
        (th, tw), (h, w) = self.best, self.inner_size
        top, left = (th - h) // 2, (tw - w) // 2
        r = F.pad(r, (left, tw - w - left, top, th - h - top))  # zeros: black, as the processor pads
        tiles = [r[..., i : i + self.patch, j : j + self.patch]
                 for i in range(0, th, self.patch) for j in range(0, tw, self.patch)]
        return torch.stack([self._finish(p) for p in [base, *tiles]], dim=1)  # [B, 1 + tiles, 3, s, s]

    def tower(self, pixel_values: Tensor) -> Tensor:
        b = pixel_values.shape[0]
        h = vision_tower_states(self.vlm.inner.vision_tower, pixel_values.flatten(0, 1), self.layer, self.strategy)
        return h.reshape(b, -1, h.shape[-1])  # [B, patches * T, D]

    def project(self, features: Tensor) -> Tensor:
        inner, b = self.vlm.inner, features.shape[0]
        per = features.reshape(b * self.n_patches, -1, features.shape[-1])
        proj = inner.multi_modal_projector(per).view(b, self.n_patches, -1, inner.config.text_config.hidden_size)
        sizes = torch.tensor([[self.size, self.size]] * b, device=features.device)
        kwargs = dict(image_newline=inner.image_newline)
        params = inspect.signature(inner.pack_image_features).parameters
        if "vision_feature_select_strategy" in params:
            kwargs["vision_feature_select_strategy"] = self.strategy
        if "vision_aspect_ratio" in params:
            kwargs["vision_aspect_ratio"] = inner.config.vision_aspect_ratio
        packed, _ = inner.pack_image_features(list(proj), sizes, **kwargs)
        return torch.stack(packed)  # [B, N, D_lm]


class LlavaNext(Anyres):
    """LLaVA-NeXT: several images per question, each tiled by anyres on its own (the processor expands each image's
    placeholder by its own size, the model's `get_image_features` tiles and packs each alike), placed where its chat
    template renders an image. LLaVA-OneVision differs (several images: the base image alone, padded square, plus one
    newline token), so it stays at one image per question."""

    max_images = 64
