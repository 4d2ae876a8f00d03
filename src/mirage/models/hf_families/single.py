"""One image at the processor's size: Gemma 3, PaliGemma, and `Probed` for other models that fit."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .base import Family, NotGeneric, normalize, resize, square_size, vision_tower_states


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
                tol = 1e-4 if vlm.dtype == torch.float32 else 2e-2  # bf16 rounds the two graphs differently
                if mine.shape == own.shape and float((mine - own).abs().max()) <= tol * max(1.0, float(own.abs().max())):
                    return
        raise NotGeneric("its get_image_features is not the vision tower's last hidden state or its configured "
                         "feature layer(s) through `multi_modal_projector`")

    def tower(self, pixel_values: Tensor) -> Tensor:
        if self.layer is None:
            return super().tower(pixel_values)
        h = vision_tower_states(self.vlm.inner.vision_tower, pixel_values, self.layer, None)
        return h[:, 1:] if self.drop else h


def probe_image(size: int):
    """A fixed smooth RGB image (PIL) of size x size, the same on every load: colour ramps and waves, so a resize
    in the processor is probed on an image like a photograph rather than on noise."""
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * np.pi * x * y)], -1)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


class Gemma3(Single):
    """Gemma 3: one SigLIP image per block. Several images per question: the chat template writes
    `<start_of_image>` where each stands, the processor expands each into its own block, and the image tokens attend
    both ways within their own block only (the model's forward, given `token_type_ids`)."""

    max_images = 64

    def lm_inputs(self, input_ids: Tensor, suffix: Tensor) -> dict:
        # image tokens attend to each other both ways (the model's forward does this given token_type_ids)
        return {"token_type_ids": (input_ids == self.vlm.image_token_id).long()}


class PaliGemma(Single):
    def lm_inputs(self, input_ids: Tensor, suffix: Tensor) -> dict:
        # a prefix LM: image and prompt attend both ways, the answer (suffix) causally
        return {"token_type_ids": suffix.long()}

    def positions(self, mask: Tensor) -> Tensor:
        return mask.cumsum(-1).clamp(min=1)  # PaliGemma's positions are 1-indexed


class Pixtral(Family):
    """Mistral 3 (Pixtral's tower): the image resized so its longest edge fits the processor's `longest_edge`, each
    side up to a multiple of the patch x spatial merge (the processor's own size helper); one image, no tiles. The
    tower reads a batch as one sequence of every image's patches (block attention per image), the projector merges
    each image's patches by `image_sizes`."""

    def __init__(self, vlm, size: int):
        super().__init__(vlm, size)
        import importlib

        proc = vlm.processor
        patch = proc.patch_size * proc.spatial_merge_size
        rule = importlib.import_module(type(self.ip).__module__).get_resize_output_image_size
        longest = self.ip.size["longest_edge"]
        self.out = tuple(rule(np.zeros((3, size, size), np.uint8), size=(longest, longest), patch_size=(patch, patch)))
        self.layer = vlm.model.config.vision_feature_layer

    def twin(self, x: Tensor) -> Tensor:
        x = resize(x, (self.size, self.size), self.ip.resample)
        return normalize(resize(x, self.out, self.ip.resample), self.ip)

    def _sizes(self, b: int, device) -> Tensor:
        return torch.tensor([list(self.out)] * b, device=device)

    def tower(self, pixel_values: Tensor) -> Tensor:
        b = pixel_values.shape[0]
        out = self.vlm.inner.vision_tower(pixel_values, image_sizes=self._sizes(b, pixel_values.device),
                                          output_hidden_states=True)
        layers = self.layer if isinstance(self.layer, (list, tuple)) else [self.layer]
        h = torch.cat([out.hidden_states[i] for i in layers], dim=-1)  # [1, B * T, D]
        return h.reshape(b, -1, h.shape[-1])

    def project(self, features: Tensor) -> Tensor:
        b = features.shape[0]
        tokens = self.vlm.inner.multi_modal_projector(features.reshape(-1, features.shape[-1]),
                                                      self._sizes(b, features.device))
        return tokens.reshape(b, -1, tokens.shape[-1])  # [B, T / merge^2, D_lm]
