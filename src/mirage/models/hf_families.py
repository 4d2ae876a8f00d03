"""The per-family pieces of the generic transformers path (`hf_generic`): at a fixed square input size, each family
says how its image processor lays the image out (a differentiable twin built from the processor's own
configuration), how its vision tower gives the features the connector reads, and how the connector turns them into
the tokens spliced into the LM. Everything else (prompt, splicing, LM, native resolution) is shared.

Families: `Anyres` (LLaVA-NeXT, LLaVA-OneVision: a tile grid chosen once at the fixed size, unpadding and newline
tokens by the model's own `pack_image_features`), `Gemma3` and `PaliGemma` (one SigLIP image; Gemma 3's pooling
projector), `Idefics3` (Idefics3, SmolVLM: tiles plus the global image, pixel shuffle in the connector), `InternVL`
(crop_to_patches tiles plus the thumbnail), and `Probed` for any other model that passes its probes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# PIL resampling filter number -> torch interpolation. PIL's BICUBIC and BILINEAR with antialiasing are what
# torch's antialiased modes reproduce (a mean 0.1/255, PIL rounding to 8 bits between its two passes); LANCZOS has
# no torch mode, so the twin uses antialiased bicubic there (bench/twin_fidelity.py measures both).
RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic"}  # NEAREST, LANCZOS, BILINEAR, BICUBIC

# model types the generic path cannot run, and why: said by name, never run as if they fit
REFUSED = {
    "mllama": "Llama-3.2-Vision reads the image through cross-attention layers inside the LM, not as tokens spliced "
              "into its input embeddings, so there are no `tokens` to optimize or splice",
}


def resize(x: Tensor, size: tuple[int, int], resample: int) -> Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 3, h, w] as the processor's PIL resize does it (identity at the same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = RESAMPLE.get(int(resample), "bicubic")
    aa = dict(antialias=True, align_corners=False) if mode != "nearest" else {}
    return F.interpolate(x, size=size, mode=mode, **aa).clamp(0, 1)


def normalize(x: Tensor, ip) -> Tensor:
    """[0, 1] pixels (8-bit levels / 255) rescaled and normalised as the processor does (its rescale factor, mean
    and std, each where it applies)."""
    rescale = ip.rescale_factor * 255 if getattr(ip, "do_rescale", True) else 255.0
    if rescale != 1:
        x = x * rescale
    if not getattr(ip, "do_normalize", True):
        return x
    mean = torch.tensor(ip.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(ip.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def square_size(size: dict) -> tuple[int, int]:
    """A processor `size` dict that names one output size ({height, width} or {shortest_edge}) as (h, w)."""
    if size.get("height"):
        return size["height"], size["width"]
    return size["shortest_edge"], size["shortest_edge"]


def vision_tower_states(tower, pixels: Tensor, layer, strategy: str | None) -> Tensor:
    """A CLIP/SigLIP tower's hidden states at `layer` (an index or a list, concatenated), the CLS token dropped
    under the "default" strategy: [N, T, D]."""
    out = tower(pixels, output_hidden_states=True)
    layers = layer if isinstance(layer, (list, tuple)) else [layer]
    h = torch.cat([out.hidden_states[i] for i in layers], dim=-1)
    return h[:, 1:] if strategy == "default" else h


class Family:
    """One family's fixed-size layout. `twin`: [B, 3, S, S] in [0, 1] -> the model's `pixel_values` [B, ...];
    `tower`: pixel values -> features [B, T, D]; `project`: features -> tokens [B, N, D_lm]."""

    def __init__(self, vlm, size: int):
        self.vlm, self.size, self.ip = vlm, size, vlm.image_processor

    def twin(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def tower(self, pixel_values: Tensor) -> Tensor:
        raise NotImplementedError

    def project(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def default_size(ip) -> int:
        """The fixed size unless `image_size` says otherwise: the processor's own input size."""
        sz = dict(ip.size)
        return square_size(sz)[0] if (sz.get("height") or sz.get("shortest_edge")) else sz["longest_edge"]

    def batched(self, pixel_values: Tensor) -> Tensor:
        """One image's pixel values from the processor with a leading batch dimension of 1."""
        return pixel_values

    def lm_inputs(self, input_ids: Tensor, suffix: Tensor) -> dict:
        """Extra inputs of the model's own forward that shape the LM's attention (none by default)."""
        return {}

    def positions(self, mask: Tensor) -> Tensor:
        """Position ids of a left-padded batch: padding must not shift them."""
        return (mask.cumsum(-1) - 1).clamp(min=0)


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
        import inspect

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


class Single(Family):
    """One image at the processor's size (Gemma 3 at 896 px, PaliGemma at 224/448/896): resize, normalise, the
    tower's last hidden state; the projector (Gemma 3's average pooling to 256 tokens, RMS norm and projection)."""

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        if getattr(self.ip, "do_pan_and_scan", False):
            raise ValueError(f"{vlm.name}: pan-and-scan crops depend on each image's shape; the fixed-size path "
                             "needs do_pan_and_scan off (its default)")
        self.out = square_size(dict(self.ip.size))

    def twin(self, x: Tensor) -> Tensor:
        x = resize(resize(x, (self.size, self.size), self.ip.resample), self.out, self.ip.resample)
        if getattr(self.ip, "do_center_crop", False):  # CLIP-style processors: shortest edge, then the crop
            ch, cw = self.ip.crop_size["height"], self.ip.crop_size["width"]
            top, left = (x.shape[-2] - ch) // 2, (x.shape[-1] - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        return normalize(x, self.ip)  # [B, 3, h, w]

    def tower(self, pixel_values: Tensor) -> Tensor:
        return self.vlm.inner.vision_tower(pixel_values=pixel_values).last_hidden_state  # [B, T, D]

    def project(self, features: Tensor) -> Tensor:
        return self.vlm.inner.multi_modal_projector(features)  # [B, N, D_lm]


class NotGeneric(ValueError):
    """A model the generic path cannot map onto mirage's stages; the message names the step that does not fit."""


class Probed(Single):
    """Any other model whose image path is one image at the processor's size, a vision tower, and a
    `multi_modal_projector` (VipLLaVA, ...). Which hidden state the projector reads is found by probing: the candidate
    (last hidden state, or the config's feature layer(s), with or without the CLS token) whose projection equals the
    model's own `get_image_features` on a probe image. The twin is checked against the processor on that image; a
    model failing a check is refused (`NotGeneric`), naming it."""

    def __init__(self, vlm, size: int):
        inner = vlm.inner
        missing = [a for a in ("vision_tower", "multi_modal_projector", "get_image_features") if not hasattr(inner, a)]
        if missing:
            raise NotGeneric(f"its model has no {', '.join(missing)}")
        try:
            super().__init__(vlm, size)
        except (KeyError, TypeError, ValueError) as e:
            raise NotGeneric(f"its image processor does not name one output size ({e})") from e
        probe = probe_image(size)
        inputs = vlm._chat_inputs("x", probe)
        pv = inputs["pixel_values"].to(vlm.device)
        if pv.dim() != 4 or pv.shape[0] != 1:
            raise NotGeneric(f"its processor gives pixel values of shape {tuple(pv.shape)} for one image, not one "
                             "[1, 3, h, w] image (tiles or crops need a family piece)")
        x = torch.from_numpy(np.array(probe)).permute(2, 0, 1)[None].float().to(vlm.device) / 255
        diff = (self.twin(x) - pv).abs()
        if diff.shape != pv.shape or float(diff.mean()) > (1e-4 if size == self.out[0] else 0.02):
            raise NotGeneric("its image processor is not a resize and normalisation mirage's twin reproduces")
        cfg = vlm.model.config
        layers = getattr(cfg, "vision_feature_layer", None)
        layers = getattr(cfg, "vision_feature_layers", None) if layers is None else layers
        self.choices = [(None, False)] + ([(layers, True), (layers, False)] if layers is not None else [])
        with torch.no_grad():
            own = vlm._native_tokens(inputs)  # [N, D_lm]
            for layer, drop in self.choices:
                self.layer, self.drop = layer, drop
                try:
                    mine = self.project(self.tower(pv.to(vlm.dtype)))[0]
                except (RuntimeError, ValueError, IndexError):
                    continue
                if mine.shape == own.shape and torch.allclose(mine, own, atol=1e-5, rtol=1e-4):
                    return
        raise NotGeneric("its get_image_features is not the vision tower's last hidden state or its configured "
                         "feature layer(s) through `multi_modal_projector`")

    def tower(self, pixel_values: Tensor) -> Tensor:
        if self.layer is None:
            return super().tower(pixel_values)
        h = vision_tower_states(self.vlm.inner.vision_tower, pixel_values, self.layer, None)
        return h[:, 1:] if self.drop else h


def probe_image(size: int):
    """A fixed random RGB image (PIL) of size x size, the same on every load."""
    from PIL import Image

    g = np.random.default_rng(0)
    return Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8))


class Gemma3(Single):
    def lm_inputs(self, input_ids: Tensor, suffix: Tensor) -> dict:
        # image tokens attend to each other both ways (the model's forward does this given token_type_ids)
        return {"token_type_ids": (input_ids == self.vlm.image_token_id).long()}


class PaliGemma(Single):
    def lm_inputs(self, input_ids: Tensor, suffix: Tensor) -> dict:
        # a prefix LM: image and prompt attend both ways, the answer (suffix) causally
        return {"token_type_ids": suffix.long()}

    def positions(self, mask: Tensor) -> Tensor:
        return mask.cumsum(-1).clamp(min=1)  # PaliGemma's positions are 1-indexed


class Idefics3(Family):
    """Idefics3 and SmolVLM: the longest edge resized to `size` (L), then up to multiples of the tile size M, cut
    into M x M tiles row by row, and the whole image resized to M x M last (the global image); all LANCZOS, which
    the twin replaces by antialiased bicubic. The connector pixel-shuffles each tile's patches and projects them."""

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        import importlib

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
    (the whole image at the tile size); the projector reads each tile's features pixel-shuffled."""

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        import importlib

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


FAMILIES = {"llava_next": Anyres, "llava_onevision": Anyres, "gemma3": Gemma3, "paligemma": PaliGemma,
            "idefics3": Idefics3, "smolvlm": Idefics3, "internvl": InternVL}


__all__ = ["FAMILIES", "REFUSED", "Family", "resize"]
