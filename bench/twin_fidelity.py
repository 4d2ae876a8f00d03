"""How close the generic path's differentiable twins are to the PIL processors at real checkpoints' default settings
(no weights needed): `PYTHONPATH=src python bench/twin_fidelity.py`, on the ScienceQA fixture's first 6 images.

2026-12-02 (torch 2.13 CPU, transformers 5.24), |twin - PIL| in 8-bit levels (x255), per image of the layout:
  llava_next@672       (1, 5, 3, 336, 336)  mean [0.099, 0, 0, 0, 0]  max 1.1   (base image 672 -> 336 bicubic)
  llava_onevision@768  (1, 5, 3, 384, 384)  mean [0.098, 0, 0, 0, 0]  max 1.0
  internvl@896         (1, 5, 3, 448, 448)  mean [0, 0, 0, 0, 0.095]  max 1.1   (thumbnail 896 -> 448 bicubic)
  idefics3 global 1456 -> 364: the twin's bicubic vs PIL LANCZOS mean 0.29, max 16.4; vs PIL bicubic 0.09, 1.0
The tiles are exact; a resize (two passes, each clipped, as PIL) differs by PIL's 8-bit rounding (and, for
LANCZOS, by the filter).
"""

import io
from types import SimpleNamespace as NS

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil

from mirage.models.hf_families import Anyres, InternVL, resize

FIXTURE = "/work/shared/fixtures/scienceqa/data/test-00000-of-00001.parquet"
NEXT_GRID = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255


def layouts(images) -> None:
    cases = {
        "llava_next@672": (Anyres, LlavaNextImageProcessorPil(size={"shortest_edge": 336}, image_grid_pinpoints=NEXT_GRID,
                                                              crop_size={"height": 336, "width": 336}), 672, {"do_pad": True}),
        "llava_onevision@768": (Anyres, LlavaOnevisionImageProcessorPil(), 768, {}),
        "internvl@896": (InternVL, GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}), 896,
                         {"crop_to_patches": True}),
    }
    for name, (family, ip, size, kw) in cases.items():
        cfg = NS(image_grid_pinpoints=getattr(ip, "image_grid_pinpoints", None), vision_feature_layer=-1,
                 vision_feature_select_strategy="full", downsample_ratio=0.5)
        f = family(NS(image_processor=ip, model=NS(config=cfg), processor=NS(images_kwargs=kw)), size)
        diffs = []
        for im in images:
            sq = im.resize((size, size), Image.BICUBIC)
            real = ip(images=[sq], return_tensors="pt", **kw)["pixel_values"]
            real = real[None] if family is InternVL else real
            twin = f.twin(tensor(sq))
            diffs.append((twin - real).abs() * torch.tensor(ip.image_std).view(1, 1, 3, 1, 1))  # pixel units
        d = torch.cat(diffs)
        mean = [round(float(v) * 255, 3) for v in d.mean(dim=(0, 2, 3, 4))]
        print(f"{name}: {tuple(real.shape)} mean x255 {mean} max x255 {float(d.max()) * 255:.1f}")


def lanczos(images) -> None:
    for name, f in (("LANCZOS", Image.LANCZOS), ("BICUBIC", Image.BICUBIC)):
        d = torch.cat([(resize(tensor(big), (364, 364), 1) - tensor(big.resize((364, 364), f))).abs()
                       for big in (im.resize((1456, 1456), Image.BICUBIC) for im in images)])
        print(f"idefics3 global 1456 -> 364 vs PIL {name}: mean x255 {float(d.mean()) * 255:.2f} "
              f"max x255 {float(d.max()) * 255:.1f}")


if __name__ == "__main__":
    rows = pq.read_table(FIXTURE).to_pylist()
    imgs = [Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB") for r in rows if r["image"]][:6]
    layouts(imgs)
    lanczos(imgs)
