"""Tiles plus a whole-image view: Idefics3/SmolVLM (global image, LANCZOS) and InternVL (thumbnail)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import torch
from torch import Tensor

from .base import Family, normalize, resize, square_size


class Idefics3(Family):
    """Idefics3 and SmolVLM: the longest edge resized to `size` (L), then up to multiples of the tile size M, cut
    into M x M tiles row by row, and the whole image resized to M x M last (the global image); all LANCZOS, which
    the twin replaces by antialiased bicubic. The connector pixel-shuffles each tile's patches and projects them.
    Several images per question: the processor expands each image's block where its chat template places it."""

    max_images = 64

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        ip = self.ip
        self.tile = ip.max_image_size["longest_edge"]
        # the processor's own size rule (its module's helper), on the square
        rule = importlib.import_module(type(ip).__module__).get_resize_output_image_size
        self.long = tuple(rule(np.zeros((3, size, size), np.uint8), resolution_max_side=ip.size["longest_edge"]))
        m = self.tile
        self.split = bool(ip.do_image_splitting) and max(self.long) > m
        # resize_for_vision_encoder, on a square: both sides up to a multiple of the tile
        self.grown = tuple(math.ceil(v / m) * m for v in self.long) if ip.do_image_splitting else self.long
        self.grid = (self.grown[0] // m, self.grown[1] // m) if self.split else (0, 0)
        self.n_images = self.grid[0] * self.grid[1] + 1

    def twin(self, x: Tensor) -> Tensor:
        ip, m = self.ip, self.tile
        x = resize(x, (self.size, self.size), ip.resample)
        if ip.do_resize:
            x = resize(x, self.long, ip.resample)
        frames = []
        if self.split:
            x = resize(x, self.grown, ip.resample)
            frames = [x[..., i : i + m, j : j + m] for i in range(0, self.grown[0], m) for j in range(0, self.grown[1], m)]
        frames.append(resize(x, (m, m), ip.resample))  # the global image
        return torch.stack([normalize(f, ip) for f in frames], dim=1)  # [B, tiles + 1, 3, M, M]

    def tower(self, pixel_values: Tensor) -> Tensor:
        b, n = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        side = flat.shape[-1] // self.vlm.model.config.vision_config.patch_size
        every = torch.ones(flat.shape[0], side, side, dtype=torch.bool, device=flat.device)  # no padded patches
        h = self.vlm.inner.vision_model(pixel_values=flat, patch_attention_mask=every).last_hidden_state
        return h.reshape(b, -1, h.shape[-1])  # [B, images * T, D]

    def project(self, features: Tensor) -> Tensor:
        b = features.shape[0]
        tokens = self.vlm.inner.connector(features.reshape(b * self.n_images, -1, features.shape[-1]))
        return tokens.reshape(b, -1, tokens.shape[-1])  # [B, images * T / scale^2, D_lm]


class InternVL(Family):
    """InternVL: `crop_to_patches` (the processor's default) resizes the image to the tile grid whose aspect is the
    image's (for a square: 2 x 2 from twice the tile size on), cuts the tiles row by row and appends the thumbnail
    (the whole image at the tile size); the projector reads each tile's features pixel-shuffled. Several images
    per question: the chat template writes `<IMG_CONTEXT>` where each stands, the processor expands each into its
    own `<img>...</img>` block of its tiles' tokens."""

    max_images = 64

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        ip, proc = self.ip, vlm.processor
        self.out = square_size(dict(ip.size))
        kw = {**ip.to_dict(), **getattr(proc, "images_kwargs", {})}  # the processor's defaults win, as in its call
        canvas = importlib.import_module(type(ip).__module__).get_optimal_tiled_canvas
        cols, rows = canvas((size, size), self.out, kw["min_patches"], kw["max_patches"]) \
            if kw.get("crop_to_patches") and kw["max_patches"] > 1 else (1, 1)
        self.grid = (rows, cols)
        self.n_images = rows * cols + (1 if rows * cols > 1 else 0)
        cfg = vlm.model.config
        self.layer, self.strategy, self.ratio = cfg.vision_feature_layer, cfg.vision_feature_select_strategy, \
            cfg.downsample_ratio

    @staticmethod
    def default_size(ip) -> int:
        return 2 * square_size(dict(ip.size))[0]

    def batched(self, pixel_values: Tensor) -> Tensor:
        return pixel_values[None]  # the processor gives one image's tiles flat: [tiles, 3, h, w]

    def twin(self, x: Tensor) -> Tensor:
        ip, (th, tw), (rows, cols) = self.ip, self.out, self.grid
        x = resize(x, (self.size, self.size), ip.resample)
        if rows * cols == 1:
            return normalize(resize(x, self.out, ip.resample), ip)[:, None]
        big = resize(x, (rows * th, cols * tw), ip.resample)
        frames = [big[..., r * th : (r + 1) * th, c * tw : (c + 1) * tw] for r in range(rows) for c in range(cols)]
        frames.append(resize(x, self.out, ip.resample))  # the thumbnail
        return torch.stack([normalize(f, ip) for f in frames], dim=1)  # [B, tiles + 1, 3, h, w]

    def tower(self, pixel_values: Tensor) -> Tensor:
        b = pixel_values.shape[0]
        out = self.vlm.inner.vision_tower(pixel_values=pixel_values.flatten(0, 1), output_hidden_states=True)
        h = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        h = h[:, 1:] if self.strategy == "default" else h
        return h.reshape(b, -1, h.shape[-1])  # [B, images * T, D]

    def project(self, features: Tensor) -> Tensor:
        inner, b = self.vlm.inner, features.shape[0]
        per = features.reshape(b * self.n_images, -1, features.shape[-1])
        side = int(per.shape[1] ** 0.5)
        shuffled = inner.pixel_shuffle(per.reshape(per.shape[0], side, side, -1), scale_factor=self.ratio)
        tokens = inner.multi_modal_projector(shuffled.reshape(per.shape[0], -1, shuffled.shape[-1]))
        return tokens.reshape(b, -1, tokens.shape[-1])  # [B, images * T * ratio^2, D_lm]
