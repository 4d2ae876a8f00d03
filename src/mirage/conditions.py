"""Image conditions: non-optimized images shown to a model instead of (or as) a question's real image, and `none`,
no image at all (the model's text-only prompt).

Every image condition is deterministic per (question id, seed) and returns an RGB image of the real image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from mirage.benchmarks.question import Benchmark, ImageLoadError, Question
from mirage.errors import MirageError, UsageError
from mirage.models.vlm import VLM, Visual
from mirage.registry import Registry
from mirage.seeding import seed_for

CONDITIONS: Registry[Callable[[Question, "ConditionContext"], Image.Image | None]] = Registry("condition")

FILE_PREFIX = "file:"
NEEDS_OWN_IMAGE = frozenset({"real", "blur", "shuffle"})  # the rest can show something for an imageless question
DEFAULT_SIZE = (224, 224)  # for questions without an image
BLUR_SIGMA = 50.0  # the "radius 50" of the research notes
SHUFFLE_GRID = 8
NONE = "none"


@dataclass(frozen=True)
class ConditionContext:
    """What a condition may look at besides the question: the questions being evaluated, and the seed."""

    benchmark: Benchmark
    seed: int = 0

    @cached_property
    def derangement(self) -> tuple[tuple[int, ...], dict[str, int]]:
        """`wrong`'s permutation of the whole split's positions, and each id's position (made once per context)."""
        return _derangement(tuple(q.id for q in self.benchmark.split_questions), self.seed)


@dataclass(frozen=True)
class Condition:
    """A named way of producing the image shown for a question."""

    name: str
    make: Callable[[Question, ConditionContext], Image.Image | None]
    needs_image: bool = False  # skipped for questions that have no image of their own

    def image(self, question: Question, ctx: ConditionContext) -> Image.Image:
        """The image this condition shows for `question`."""
        img = self.make(question, ctx)
        if img is None:
            raise MirageError(f"condition {self.name!r} shows no image (question {question.id!r})")
        return img

    @property
    def image_free(self) -> bool:
        """True for `none`: the model gets no image at all, not even a blank one."""
        return self.name == NONE

    def visual(self, model: VLM, questions: Sequence[Question], ctx: ConditionContext) -> Visual:
        """What the model is given for `questions`: their images through its real processor, or no image."""
        if self.image_free:
            return Visual.none()
        return model.visual_from_images([self.image(q, ctx) for q in questions])


def _size(question: Question) -> tuple[int, int]:
    return question.image(0).size if question.images else DEFAULT_SIZE


def _from_array(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")


@CONDITIONS.register("none")
def none(question: Question, ctx: ConditionContext) -> None:
    """No image at all: no placeholder, no image tokens, no pixels (MMStar's "without visual input")."""
    return None


@CONDITIONS.register("real")
def real(question: Question, ctx: ConditionContext) -> Image.Image:
    """The question's own first image."""
    return question.image(0)


@CONDITIONS.register("blank")
def blank(question: Question, ctx: ConditionContext) -> Image.Image:
    """Uniform mid grey (128, 128, 128)."""
    return Image.new("RGB", _size(question), (128, 128, 128))


@CONDITIONS.register("noise")
def noise(question: Question, ctx: ConditionContext) -> Image.Image:
    """Per-pixel, per-channel Gaussian noise, mean 0.5 and std 0.25 of the full range, clipped."""
    w, h = _size(question)
    rng = np.random.default_rng(seed_for("noise", ctx.seed, question.id))
    return _from_array(255.0 * np.clip(rng.normal(0.5, 0.25, size=(h, w, 3)), 0.0, 1.0))


@lru_cache(maxsize=16)
def _derangement(ids: tuple[str, ...], seed: int) -> tuple[tuple[int, ...], dict[str, int]]:
    """A single-cycle permutation of positions (Sattolo) and the position of each id."""
    n = len(ids)
    if n < 2:
        raise MirageError(f"condition 'wrong' needs at least 2 questions to take another's image, got {n}")
    index = {qid: i for i, qid in enumerate(ids)}
    if len(index) != n:
        raise MirageError("condition 'wrong' needs unique question ids")
    rng = np.random.default_rng(seed_for("wrong", seed, n))
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(i))  # j < i, never j == i: this is what makes it one cycle, so no fixed point
        perm[i], perm[j] = perm[j], perm[i]
    return tuple(perm), index


@CONDITIONS.register("wrong")
def wrong(question: Question, ctx: ConditionContext) -> Image.Image:
    """Another question's first image, by a fixed derangement of the benchmark's whole split
    (`ctx.benchmark.split_questions`), so `--limit N` shows the same images as the first N rows of a full run.

    Resized to this question's image size; questions without an image or with an identical image are skipped.
    """
    questions = ctx.benchmark.split_questions
    perm, index = ctx.derangement
    if question.id not in index:
        raise MirageError(f"condition 'wrong': question {question.id!r} is not in benchmark {ctx.benchmark.name!r}")
    own = question.image(0) if question.images else None
    size = own.size if own is not None else DEFAULT_SIZE
    start = index[question.id]
    # Walk the cycle: benchmarks reuse one image for several questions, and showing it would be the real image.
    j = perm[start]
    while j != start:
        if questions[j].images:
            img = questions[j].image(0)
            if own is None or img.size != own.size or img.tobytes() != own.tobytes():
                # Same size as the real image, so that image-token counts do not differ between conditions.
                return img if img.size == size else img.resize(size, Image.BICUBIC)
        j = perm[j]
    raise MirageError(f"condition 'wrong': no other question of {ctx.benchmark.name!r} has a different image")


@CONDITIONS.register("blur")
def blur(question: Question, ctx: ConditionContext) -> Image.Image:
    """Heavy Gaussian blur (sigma 50 px) that keeps the mean colour exactly, up to uint8 rounding."""
    a = torch.from_numpy(np.asarray(question.image(0), dtype=np.float64))
    h, w = a.shape[:2]
    # Filtering in the Fourier domain (periodic boundary) leaves the DC term, i.e. the mean colour, untouched;
    # PIL's GaussianBlur extends edges instead, which shifts the mean at this radius.
    f2 = torch.fft.fftfreq(h, dtype=torch.float64)[:, None] ** 2 + torch.fft.rfftfreq(w, dtype=torch.float64) ** 2
    transfer = torch.exp(-2 * torch.pi**2 * BLUR_SIGMA**2 * f2)
    out = torch.fft.irfft2(torch.fft.rfft2(a, dim=(0, 1)) * transfer[..., None], s=(h, w), dim=(0, 1))
    return _from_array(out.numpy())


@CONDITIONS.register("shuffle")
def shuffle(question: Question, ctx: ConditionContext) -> Image.Image:
    """The real image cut into an 8x8 grid of equal patches, randomly permuted; pixels are kept exactly.

    When a side is not divisible by 8, the remainder strips (right, bottom) stay in place.
    """
    a = np.array(question.image(0))
    g = SHUFFLE_GRID
    ph, pw = a.shape[0] // g, a.shape[1] // g
    if ph == 0 or pw == 0:
        return Image.fromarray(a, "RGB")
    tiles = a[: g * ph, : g * pw].reshape(g, ph, g, pw, 3).swapaxes(1, 2).reshape(g * g, ph, pw, 3)
    tiles = tiles[np.random.default_rng(seed_for("shuffle", ctx.seed, question.id)).permutation(g * g)]
    a[: g * ph, : g * pw] = tiles.reshape(g, g, ph, pw, 3).swapaxes(1, 2).reshape(g * ph, g * pw, 3)
    return Image.fromarray(a, "RGB")


@lru_cache(maxsize=8)
def _load_file(path: Path, spec: str) -> Image.Image:
    # Not open_image: its message names a question, and this image belongs to no question.
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"condition {spec!r}: cannot read image file {str(path)!r}: {e}") from e


def _file_condition(spec: str) -> Condition:
    path = Path(spec[len(FILE_PREFIX) :]).resolve()
    _load_file(path, spec)  # fail now, before any evaluation work

    def make(question: Question, ctx: ConditionContext) -> Image.Image:
        return _load_file(path, spec).copy()  # a copy, so a caller's edits cannot reach the cache

    return Condition(spec, make)


def get_condition(spec: str) -> Condition:
    """The condition named `spec`: a registered name such as "blur", or "file:PATH" (PATH relative to the cwd)."""
    if spec.startswith(FILE_PREFIX):
        return _file_condition(spec)
    return Condition(spec, CONDITIONS.get(spec), needs_image=spec in NEEDS_OWN_IMAGE)


def parse_conditions(csv: str | Sequence[str]) -> list[Condition]:
    """Conditions from "real,blank,noise" (or a list of specs), all validated before any is used."""
    specs = [s.strip() for s in (csv.split(",") if isinstance(csv, str) else csv)]
    if not specs or specs == [""]:
        raise UsageError("no conditions given")
    if "" in specs:
        raise UsageError(f"empty condition name in {','.join(specs)!r}")
    dups = sorted({s for s in specs if specs.count(s) > 1})
    if dups:
        raise UsageError(f"duplicate condition(s): {', '.join(dups)}")
    return [get_condition(s) for s in specs]
