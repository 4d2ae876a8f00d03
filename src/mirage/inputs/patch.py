"""`patch`: the parameterization of an adversarial patch and its placement on real images.

`PatchInput.pasted(slots, images, placement)` puts the slots' patches onto images at a `Placement` (kornia's affine
warp, differentiable in the patch); `forward(slots)` alone has no image to paste on and refuses. The attack that
trains a patch with expectation over transformation (EOT) is `mirage.experiments.patch_attack`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..models.vlm import VLM, Visual
from .base import Input, take_slots

PATCH_FRACTION = 64 / 336  # the classic 64 px patch on a 336 px image, ~19% of the side
FIXED = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")


@dataclass
class EOT:
    """The transformations sampled each step: scale of the patch side and rotation in degrees (uniform)."""

    scale: tuple[float, float] = (0.8, 1.2)
    max_angle: float = 30.0


@dataclass
class Placement:
    """Where a patch lands on an R x R image: centre (x, y) in pixels [B, 2], scale [B], angle in degrees [B]."""

    center: Tensor
    scale: Tensor
    angle: Tensor

    def __len__(self) -> int:
        return len(self.scale)

    def select(self, rows: Sequence[int]) -> "Placement":
        rows = list(rows)
        return Placement(self.center[rows], self.scale[rows], self.angle[rows])

    def describe(self, i: int) -> dict:
        """Row `i` as plain numbers, for result rows."""
        x, y = self.center[i].tolist()
        return {"x": round(x, 2), "y": round(y, 2), "scale": round(float(self.scale[i]), 3),
                "angle": round(float(self.angle[i]), 2)}

    @staticmethod
    def cat(items: Sequence["Placement"]) -> "Placement":
        return Placement(torch.cat([p.center for p in items]), torch.cat([p.scale for p in items]),
                         torch.cat([p.angle for p in items]))


def sample_placements(n: int, resolution: int, size: int, eot: EOT, generator: torch.Generator) -> Placement:
    """`n` random placements; the scaled patch's centre keeps its unrotated square inside the image."""
    lo, hi = eot.scale
    scale = lo + (hi - lo) * torch.rand(n, generator=generator)
    half = size * scale / 2
    center = half[:, None] + (resolution - 2 * half[:, None]) * torch.rand(n, 2, generator=generator)  # [n, 2]
    angle = (2 * torch.rand(n, generator=generator) - 1) * eot.max_angle
    return Placement(center, scale, angle)


def fixed_placement(name: str, resolution: int, size: int) -> Placement:
    """One of FIXED, unrotated at scale 1 with the patch's corner on a whole pixel (so pasting copies it exactly)."""
    c, far = (size - 1) / 2, resolution - size + (size - 1) / 2
    x, y = {"top-left": (c, c), "top-right": (far, c), "bottom-left": (c, far), "bottom-right": (far, far),
            "centre": ((resolution - size) // 2 + c,) * 2}[name]
    return Placement(torch.tensor([[x, y]]), torch.ones(1), torch.zeros(1))


def paste(images: Tensor, patch: Tensor, placement: Placement) -> Tensor:
    """Paste `patch` [B or 1, 3, s, s] onto `images` [B, 3, R, R] (all in [0, 1]) at `placement`.

    Bilinear warping of the patch and of its mask (kornia); outside the warped mask the images are unchanged."""
    from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

    b, _, r, _ = images.shape
    s = patch.shape[-1]
    patch = patch.expand(b, -1, -1, -1).to(images.dtype)
    c0 = torch.full((b, 2), (s - 1) / 2, dtype=images.dtype, device=images.device)
    scale = placement.scale.to(images)[:, None].expand(b, 2)
    m = get_rotation_matrix2d(c0, placement.angle.to(images), scale)  # [B, 2, 3]: about the patch's centre
    m = torch.cat([m[..., :2], m[..., 2:] + (placement.center.to(images) - c0)[..., None]], -1)
    warped = warp_affine(patch, m, dsize=(r, r), align_corners=True)  # [B, 3, R, R], zero outside
    mask = warp_affine(torch.ones_like(patch[:, :1]), m, dsize=(r, r), align_corners=True)  # [B, 1, R, R]
    # `warped` already carries the mask's coverage at the edges (bilinear against zero padding)
    return images * (1 - mask) + warped


class PatchInput(Input):
    """Patches [S, 3, s, s] in [0, 1] (sigmoid of the parameters); `paste` puts `forward`'s patches onto images."""

    stage = "pixels"

    def __init__(self, model: VLM, slots: int = 1, size: int | None = None, seed: int = 0,
                 resolution: int | None = None):
        super().__init__(model, slots, seed)
        self.resolution = resolution or max(s.image_size for s in model.encoders)
        self.size = size or max(1, round(PATCH_FRACTION * self.resolution))
        if not 0 < self.size <= self.resolution:
            raise UsageError(f"--patch-size: patch size {self.size} must be in 1..{self.resolution} (the image side)")
        self.logits = nn.Parameter(torch.zeros(slots, 3, self.size, self.size))  # [S, 3, s, s]

    def reset(self, slot: int, key: str) -> None:
        with torch.no_grad():
            sample = torch.randn(self.logits.shape[1:], generator=self.generator(key))  # a colourful noise start
            self.logits[slot] = sample.to(self.logits.device, self.logits.dtype)

    def patches(self, slots: Tensor) -> Tensor:
        return torch.sigmoid(take_slots(self.logits, slots))

    def forward(self, slots: Tensor) -> Visual:
        """Not a model input by itself: a patch lands on each question's real image, which `forward(slots)` never
        sees. The attack calls `pasted(slots, images, placement)`."""
        raise ValueError("a patch needs the questions' real images and placements: "
                         "use pasted(slots, images, placement)")

    def pasted(self, slots: Tensor, images: Tensor, placement: Placement) -> Visual:
        """The real `images` [B, 3, R, R] with the slots' patches pasted at `placement`, as `pixels`."""
        return Visual("pixels", paste(images, self.patches(slots), placement))

    def export(self, slot: int) -> dict[str, Tensor]:
        with torch.no_grad():
            return {"pixels": torch.sigmoid(self.logits[slot]).cpu().contiguous()}

    @property
    def name(self) -> str:
        return "patch"
