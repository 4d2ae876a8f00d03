"""Padding an image to a square with the processor's mean colour, then resizing it: the official preprocessing of
LLaVA-1.5 (`image_aspect_ratio: pad`) and Cambrian-1, and its differentiable twin.

The official `process_images` (haotian-liu/LLaVA and cambrian-mllm/cambrian, `mm_utils.py`) does `expand2square(image,
tuple(int(x * 255) for x in image_mean))` (the image centred on a square canvas), a PIL bicubic resize to the
processor's square size (LLaVA's CLIP processor resizes the short side, which for a square is the same), then
rescaling to [0, 1] and normalising. Here that is done with PIL and numpy, not by the installed transformers'
image processor, whose resize backend changed between releases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .vlm import on_device


def pad_colour(mean: Sequence[float]) -> tuple[int, int, int]:
    """The colour `expand2square` pads with: the processor's image_mean as `int(x * 255)`."""
    return tuple(int(x * 255) for x in mean)


def expand_to_square(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """The image centred on a square canvas of `colour` (the official `expand2square`)."""
    w, h = image.size
    if w == h:
        return image
    s = max(w, h)
    canvas = Image.new(image.mode, (s, s), colour)
    canvas.paste(image, ((s - w) // 2, (s - h) // 2))
    return canvas


def process_pil(images: Sequence[Image.Image], size: int, colour: tuple[int, int, int], mean, std) -> Tensor:
    """The real processor for one tower: PIL images -> [B, 3, size, size] float32, normalised."""
    arrs = [np.asarray(expand_to_square(im.convert("RGB"), colour).resize((size, size), Image.BICUBIC))
            for im in images]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
    return normalize(x, mean, std)


def pad_square(pixels: Tensor, colour: tuple[int, int, int]) -> Tensor:
    """Differentiable `expand_to_square`: [B, 3, H, W] in [0, 1] -> [B, 3, S, S], S = max(H, W)."""
    h, w = pixels.shape[-2:]
    if h == w:
        return pixels
    s = max(h, w)
    fill = on_device(colour, pixels.device, pixels.dtype).view(1, 3, 1, 1) / 255.0
    left, top = (s - w) // 2, (s - h) // 2
    return F.pad(pixels - fill, (left, s - w - left, top, s - h - top)) + fill


def resize_like_pil(pixels: Tensor, size: int) -> Tensor:
    """Differentiable twin of PIL's bicubic resize: antialiased bicubic (a = -0.5, like PIL), in PIL's two passes,
    horizontal then vertical, each clipped to [0, 1] as PIL clips its 8-bit intermediate (without that clip, bicubic
    overshoot at sharp edges differs from PIL by up to 12/255 when upsampling; with it, about 1/255)."""
    h, w = pixels.shape[-2:]
    if (h, w) == (size, size):
        return pixels
    x = F.interpolate(pixels, size=(h, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def normalize(x: Tensor, mean, std) -> Tensor:
    mean = on_device(mean, x.device, x.dtype).view(1, 3, 1, 1)
    std = on_device(std, x.device, x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
