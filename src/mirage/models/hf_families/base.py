"""What every family piece shares: the processor's resize and normalisation as tensor operations, a tower's
hidden states, the `Family` interface, and `NotGeneric` for a model that does not fit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# PIL resampling filter number -> torch interpolation. PIL's BICUBIC and BILINEAR with antialiasing are what
# torch's antialiased modes reproduce (a mean 0.1/255, a max 1/255: PIL's 8-bit rounding); LANCZOS has
# no torch mode, so the twin uses antialiased bicubic there (bench/twin_fidelity.py measures both).
RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic"}  # NEAREST, LANCZOS, BILINEAR, BICUBIC


def resize(x: Tensor, size: tuple[int, int], resample: int) -> Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 3, h, w] as the processor's PIL resize does it (identity at the same size): in
    PIL's two passes, horizontal then vertical, each clipped to [0, 1] as PIL clips its 8-bit intermediate (the
    same rule as Cambrian's `resize_like_pil`, for any size and filter)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    mode = RESAMPLE.get(int(resample), "bicubic")
    aa = dict(antialias=True, align_corners=False) if mode != "nearest" else {}
    if w != size[1]:
        x = F.interpolate(x, size=(h, size[1]), mode=mode, **aa).clamp(0, 1)
    if h != size[0]:
        x = F.interpolate(x, size=tuple(size), mode=mode, **aa).clamp(0, 1)
    return x


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
    `tower`: pixel values -> features [B, T, D]; `project`: features -> tokens [B, N, D_lm]. `max_images`: the
    images a question may show it (several: built and tested where the processor and the model take them)."""

    max_images = 1

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

    def placed(self, tokens: Tensor, counts: tuple[int, ...] | None) -> Tensor:
        """The tokens the LM reads for every image of the batch, [sum(counts), N, D_lm] at the fixed layout, given
        each row's image count (`Visual.counts`): the same, unless a row of several images lays each out otherwise
        (LLaVA-OneVision). Flattened or not: they fill the placeholders in order."""
        return tokens

    def lm_inputs(self, input_ids: Tensor, suffix: Tensor) -> dict:
        """Extra inputs of the model's own forward that shape the LM's attention (none by default)."""
        return {}

    def positions(self, mask: Tensor) -> Tensor:
        """Position ids of a left-padded batch: padding must not shift them."""
        return (mask.cumsum(-1) - 1).clamp(min=0)


class NotGeneric(ValueError):
    """A model the generic path cannot map onto mirage's stages; the message names the step that does not fit."""
