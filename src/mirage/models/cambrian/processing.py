"""Cambrian-1's image processing: per tower, pad to a square with the processor's mean colour, resize, normalise.

The official `process_images` (cambrian/mm_utils.py, commit 539ffc3) does, for every tower: `expand2square(image,
int(255 * image_mean))` (the image centred on a square canvas), `.resize((s, s))` (PIL's default filter: bicubic),
then the tower's processor, which at that size only rescales to [0, 1] and normalises. The original size goes with
the image (`image_sizes`): the model masks the keys under the padding and drops the token rows/columns that show
only padding (`unpad_image`, `unmask_attention_mask` in cambrian_arch.py); `image_cells` computes those cells.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..vlm import on_device

# A `processed` or `features` dict may hold the original (width, height) of each image under this key: [B, 2] float.
# Absent, the images are square (nothing to mask or drop), as for optimized features and square pixel inputs.
IMAGE_SIZE = "image_size"


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


def image_cells(side: int, width: float, height: float) -> Tensor:
    """Which cells of a side x side grid over the padded square show the image: [side, side] bool. Follows the
    official offsets exactly (unpad_image / unmask_attention_mask / get_padding_offset): the padding is
    (side - int(short * side / long)) // 2 cells on each side of the short axis."""
    valid = torch.ones(side, side, dtype=torch.bool)
    if width / height > 1.0:
        pad = (side - int(height * (side / width))) // 2
        if pad > 0:
            valid[:pad] = False
            valid[-pad:] = False
    else:
        pad = (side - int(width * (side / height))) // 2
        if pad > 0:
            valid[:, :pad] = False
            valid[:, -pad:] = False
    return valid
