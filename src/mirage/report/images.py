"""Images embedded in the page as base64 PNG data URIs, so that the report is one file that needs no network."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_SIDE = 128  # gallery thumbnails: a 1,000-question run stays a page of a few MB


def png_uri(image: Image.Image, max_side: int | None = None) -> str:
    """`image` as a `data:image/png;base64,...` URI, shrunk to fit `max_side` when given."""
    image = image.convert("RGB")
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_uri(path: Path, max_side: int | None = None) -> str:
    """A data URI of the image file at `path` (see `png_uri`)."""
    with Image.open(path) as im:
        return png_uri(im, max_side)


def noise_picture(question, size: tuple[int, int], seed: int) -> tuple[Image.Image, bool]:
    """The `noise` condition's image for `question` (a Question with an image: exactly what the model saw), or a
    picture drawn the same way (Gaussian, mean 0.5, std 0.25 per pixel and channel) at `size`; and which it is."""
    from ..benchmarks.question import Benchmark
    from ..conditions import ConditionContext, noise

    if question is not None and question.images:
        return noise(question, ConditionContext(Benchmark("", "", [question]), seed)), True
    w, h = size
    a = np.clip(np.random.default_rng(seed).normal(0.5, 0.25, size=(h, w, 3)), 0.0, 1.0)
    return Image.fromarray(np.rint(255 * a).astype(np.uint8), "RGB"), False
