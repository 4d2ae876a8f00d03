"""ShapesQA splits: generated deterministically from a seed, cached on disk as parquet (hub-style image structs)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..question import Benchmark, Question, letter_prompt
from .questions import Item, sample_item
from .scene import render, scene_tensors

VERSION = 1  # bump when generation changes, so old caches are not reused
SPLITS = {"train": (0, 20_000), "val": (1, 1_000), "test": (2, 1_000)}  # split -> (stream id, size)
RENDER_BATCH = 128


def cache_dir() -> Path:
    """Where generated splits live: $MIRAGE_CACHE, else ~/.cache/mirage."""
    return Path(os.environ.get("MIRAGE_CACHE", Path.home() / ".cache" / "mirage"))


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of question `index` of `split`: any subset or order gives the same questions."""
    return np.random.default_rng([seed, SPLITS[split][0], index])


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def item_meta(item: Item) -> dict:
    """What a question keeps about its scene: objects, background, the target objects and their boxes."""
    return {"objects": [o.to_meta() for o in item.scene.objects], "background": list(item.scene.background),
            "target": item.target, "boxes": [item.scene.objects[k].box for k in item.target]}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        from ...registry import did_you_mean

        raise ValueError(did_you_mean("split", split, list(SPLITS)))


def generate_questions(split: str, seed: int = 0, n: int | None = None) -> list[Question]:
    """The first `n` (default: all) questions of a split, images rendered and PNG-encoded."""
    _check_split(split)
    n = SPLITS[split][1] if n is None else n
    items = [sample_item(item_rng(seed, split, i)) for i in range(n)]
    images = []
    with torch.inference_mode():
        for i in range(0, n, RENDER_BATCH):
            imgs, _ = render(scene_tensors([it.scene for it in items[i : i + RENDER_BATCH]]))
            images += [png_bytes(a) for a in imgs.permute(0, 2, 3, 1).numpy()]
    return [Question(id=f"shapes-{split}-{i:05d}", text=it.text, choices=it.choices, answer=it.answer,
                     images=(img,), type=it.type, meta=item_meta(it)) for i, (it, img) in enumerate(zip(items, images))]


def questions_to_table(questions: list[Question]):
    """Questions as an arrow table in the hub's layout (image structs of PNG bytes, metadata as JSON)."""
    import pyarrow as pa

    return pa.table({"id": [q.id for q in questions], "question": [q.text for q in questions],
                     "choices": [list(q.choices) for q in questions], "answer": [q.answer for q in questions],
                     "type": [q.type for q in questions],
                     "image": [{"bytes": q.images[0], "path": f"{q.id}.png"} for q in questions],
                     "meta": [json.dumps(q.meta) for q in questions]})


def split_path(split: str, seed: int) -> Path:
    return cache_dir() / "shapes" / f"v{VERSION}-seed{seed}" / f"{split}.parquet"


def load_split_table(split: str, seed: int = 0):
    """The whole split as an arrow table, generated on first use and read from the cache afterwards."""
    import pyarrow.parquet as pq

    path = split_path(split, seed)
    if not path.exists():
        table = questions_to_table(generate_questions(split, seed))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # atomic: a killed generation never leaves a half-written cache
    return pq.read_table(path)


def questions_from_table(table) -> list[Question]:
    cols = table.to_pydict()
    return [Question(id=cols["id"][i], text=cols["question"][i], choices=tuple(cols["choices"][i]),
                     answer=int(cols["answer"][i]), images=(cols["image"][i]["bytes"],), type=cols["type"][i],
                     meta=json.loads(cols["meta"][i])) for i in range(table.num_rows)]


def load_shapes(split: str = "test", seed: int = 0) -> Benchmark:
    """ShapesQA `split` (train 20,000 / val 1,000 / test 1,000), deterministic for `seed`."""
    _check_split(split)
    return Benchmark("shapes", split, questions_from_table(load_split_table(split, seed)), letter_prompt)
