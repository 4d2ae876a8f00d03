"""ShapesQA scenes: attribute tables, seeded scene sampling (numpy) and a batched torch renderer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IMAGE_SIZE = 224
GRID = 4  # objects sit in distinct cells of a GRID x GRID layout
CELL = IMAGE_SIZE // GRID
MAX_OBJECTS = 4

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 50, 47),
    "orange": (245, 140, 30),
    "yellow": (235, 215, 50),
    "green": (60, 180, 75),
    "blue": (50, 100, 230),
    "purple": (150, 70, 200),
}
SIZES = {"tiny": 9, "small": 14, "medium": 19, "large": 25}  # half-extent in pixels
COLOUR_JITTER = 12
MAX_SHIFT = 6  # objects stay near their cell centre so position words stay unambiguous


@dataclass
class Obj:
    """One object of a scene; `center` in pixels, `cell` as (row, col)."""

    shape: str
    colour: str
    size: str
    cell: tuple[int, int]
    center: tuple[float, float]
    rgb: tuple[int, int, int]

    @property
    def radius(self) -> int:
        return SIZES[self.size]

    @property
    def box(self) -> list[int]:
        """[x0, y0, x1, y1], pixel bounds of the object (clipped to the image)."""
        r, (x, y) = self.radius, self.center
        return [max(0, int(x - r)), max(0, int(y - r)), min(IMAGE_SIZE, int(np.ceil(x + r))), min(IMAGE_SIZE, int(np.ceil(y + r)))]

    def to_meta(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "cell": list(self.cell),
                "center": list(self.center), "rgb": list(self.rgb), "box": self.box}

    @classmethod
    def from_meta(cls, m: dict) -> "Obj":
        return cls(m["shape"], m["colour"], m["size"], tuple(m["cell"]), tuple(m["center"]), tuple(m["rgb"]))


@dataclass
class Scene:
    objects: list[Obj]
    background: tuple[int, int, int]


def sample_scene(rng: np.random.Generator, n: int, cells: list[tuple[int, int]] | None = None) -> Scene:
    """A scene of `n` objects with distinct shapes and colours in distinct cells (`cells` fixes the first ones)."""
    cells = list(cells or [])
    free = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in cells]
    for i in rng.permutation(len(free))[: n - len(cells)]:
        cells.append(free[i])
    shapes = rng.permutation(len(SHAPES))[:n]
    colours = rng.permutation(len(COLOURS))[:n]
    names = list(COLOURS)
    objects = []
    for k in range(n):
        size = list(SIZES)[rng.integers(len(SIZES))]
        shift = min(MAX_SHIFT, CELL // 2 - SIZES[size] - 2)
        dx, dy = rng.integers(-shift, shift + 1, size=2)
        row, col = cells[k]
        center = (col * CELL + CELL / 2 + float(dx), row * CELL + CELL / 2 + float(dy))
        base = np.array(COLOURS[names[colours[k]]])
        rgb = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255)
        objects.append(Obj(SHAPES[shapes[k]], names[colours[k]], size, (row, col), center, tuple(int(v) for v in rgb)))
    background = tuple(int(v) for v in rng.integers(12, 40, size=3))
    return Scene(objects, background)


def scene_tensors(scenes: list[Scene], device=None) -> dict[str, torch.Tensor]:
    """Pack scenes into padded tensors for `render` (K = MAX_OBJECTS slots, `present` marks used ones)."""
    b = len(scenes)
    center = torch.zeros(b, MAX_OBJECTS, 2)
    cell = torch.zeros(b, MAX_OBJECTS, 2, dtype=torch.long)  # (row, col)
    radius = torch.zeros(b, MAX_OBJECTS)
    shape = torch.zeros(b, MAX_OBJECTS, dtype=torch.long)
    rgb = torch.zeros(b, MAX_OBJECTS, 3)
    present = torch.zeros(b, MAX_OBJECTS, dtype=torch.bool)
    colour = torch.zeros(b, MAX_OBJECTS, dtype=torch.long)  # attribute classes, for dense training targets
    size = torch.zeros(b, MAX_OBJECTS, dtype=torch.long)
    for i, s in enumerate(scenes):
        for k, o in enumerate(s.objects):
            center[i, k] = torch.tensor(o.center)
            cell[i, k] = torch.tensor(o.cell)
            radius[i, k] = o.radius
            shape[i, k] = SHAPES.index(o.shape)
            rgb[i, k] = torch.tensor(o.rgb, dtype=torch.float32)
            present[i, k] = True
            colour[i, k] = list(COLOURS).index(o.colour)
            size[i, k] = list(SIZES).index(o.size)
    background = torch.tensor([s.background for s in scenes], dtype=torch.float32)
    out = dict(center=center, cell=cell, radius=radius, shape=shape, rgb=rgb, present=present,
               background=background, colour=colour, size=size)
    return {k: v.to(device) for k, v in out.items()}


def object_masks(center: torch.Tensor, radius: torch.Tensor, shape: torch.Tensor, present: torch.Tensor,
                 size: int = IMAGE_SIZE) -> torch.Tensor:
    """Boolean masks [B, K, size, size] of each object slot, `center` in that window's pixels."""
    coords = torch.arange(size, device=center.device, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, 1, size) - center[..., 0, None, None]  # [B, K, 1, W]
    dy = coords.view(1, 1, size, 1) - center[..., 1, None, None]  # [B, K, H, 1]
    r = radius[..., None, None]
    adx, ady = dx.abs(), dy.abs()
    circle = dx**2 + dy**2 <= r**2
    square = (adx <= 0.85 * r) & (ady <= 0.85 * r)
    triangle = (dy >= -r) & (dy <= 0.8 * r) & (adx <= (dy + r) / 1.8)  # apex up, base 2r wide
    arm = 0.33 * r
    cross = ((adx <= r) & (ady <= arm)) | ((ady <= r) & (adx <= arm))
    s = shape[..., None, None]
    masks = torch.where(s == 0, circle, torch.where(s == 1, square, torch.where(s == 2, triangle, cross)))
    return masks & present[..., None, None]


def render(t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw packed scenes: (uint8 images [B, 3, H, W], per-cell object masks [B, K, CELL, CELL]).

    Each object lies inside its own grid cell, so it is drawn in that cell's window only.
    """
    b = t["center"].shape[0]
    local = t["center"] - t["cell"].flip(-1).float() * CELL  # (x, y) relative to the cell's corner
    masks = object_masks(local, t["radius"], t["shape"], t["present"], CELL)
    img = t["background"][:, :, None, None, None, None].expand(b, 3, GRID, CELL, GRID, CELL)
    cells = img.permute(0, 2, 4, 1, 3, 5).contiguous()  # [B, G, G, 3, C, C]
    rows = torch.arange(b, device=img.device)
    for k in range(masks.shape[1]):
        r, c = t["cell"][:, k, 0], t["cell"][:, k, 1]
        cells[rows, r, c] = torch.where(masks[:, k, None], t["rgb"][:, k, :, None, None], cells[rows, r, c])
    img = cells.permute(0, 3, 1, 4, 2, 5).reshape(b, 3, GRID * CELL, GRID * CELL)
    return img.round().clamp(0, 255).to(torch.uint8), masks
