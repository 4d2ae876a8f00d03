"""Cambrian-1's image processing: per tower, pad to a square with the processor's mean colour, resize, normalise
(the pieces live in models/square.py, shared with LLaVA-1.5's official preprocessing).

The official `process_images` (cambrian/mm_utils.py, commit 539ffc3) does, for every tower: `expand2square(image,
int(255 * image_mean))` (the image centred on a square canvas), `.resize((s, s))` (PIL's default filter: bicubic),
then the tower's processor, which at that size only rescales to [0, 1] and normalises. The original size goes with
the image (`image_sizes`): the model masks the keys under the padding and drops the token rows/columns that show
only padding (`unpad_image`, `unmask_attention_mask` in cambrian_arch.py); `image_cells` computes those cells.
"""

from __future__ import annotations

import torch
from torch import Tensor

# A `processed` or `features` dict may hold the original (width, height) of each image under this key: [B, 2] float.
# Absent, the images are square (nothing to mask or drop), as for optimized features and square pixel inputs.
IMAGE_SIZE = "image_size"


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
