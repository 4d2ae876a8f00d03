"""Conditions: what a model is asked instead of (or as) a question as given. Most change the image only:
non-optimized images shown instead of the real one, and `none`, no image at all (the model's text-only prompt).
The shuffle conditions of the Multi-modal Data Spectrum (Madaan et al., ICLR 2026) change the words too: `wrong`
(text only: another question's image), `image-only` (the image with another question's text, the question's own
options and gold) and `both` (text and image each from another question). A condition yields the question as the
model is asked it (`Condition.ask`: text, options, gold) and its image (`Condition.visual`); the scoring loop only
reads what it yields.

Every condition is deterministic per (question id, seed); an image condition returns an RGB image of the real
image's size. Shuffles draw from the benchmark's whole split, so `--limit N` asks what the full run asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from mirage.benchmarks.question import Benchmark, ImageLoadError, Question, image_key
from mirage.errors import MirageError, UsageError
from mirage.models.chat import IMAGE_MARKER
from mirage.models.vlm import SEVERAL_IMAGE_FAMILIES, VLM, Visual
from mirage.registry import Registry
from mirage.seeding import seed_for

CONDITIONS: Registry["Condition"] = Registry("condition")

FILE_PREFIX = "file:"
DEFAULT_SIZE = (224, 224)  # for questions without an image
BLUR_SIGMA = 50.0  # the "radius 50" of the research notes
BLUR_KEEP = 1e-30  # the Gaussian transfer below which a frequency bin is dropped (gaussian_blur)
BLUR_BLOCK = 1 << 22  # pixels of one channel transformed at once (32 MiB of float64)
SHUFFLE_GRID = 8
NONE = "none"
# A question's words that `image-only` and `both` take from another question (the paper's code swaps the question
# and its hint, keeps the options); options written inside the text after one of these stay the question's own.
WORDS_META = ("hint", "unit")
OPTION_MARKERS = ("Choices:", "Options:")
ASKED_KEY = "asked"  # Question.meta: where the words came from (copied into the question's rows)
# `caption:<captioner>`: the model answers from a caption of the image (made by `captions.make_captions` with this
# fixed prompt, recorded in config.json) put before the question's text, with no image.
CAPTION_PREFIX = "caption:"
CAPTION_PROMPT = "Describe this image in detail."
CAPTION_TEMPLATE = "Image description: {caption}\n{question}"
CAPTION_TOKENS = 128  # the longest caption generated, in tokens
CAPTIONERS = "self (the evaluated model), a model spec (hf:ID, demo), file:PATH (captions by question id)"


@dataclass(frozen=True)
class ConditionContext:
    """What a condition may look at besides the question: the questions being evaluated, and the seed."""

    benchmark: Benchmark
    seed: int = 0
    # captions by captioner and question id (`captions.make_captions`), for the `caption:` conditions
    captions: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)

    @cached_property
    def derangement(self) -> tuple[tuple[int, ...], dict[str, int]]:
        """`wrong`'s permutation of the whole split's positions, and each id's position (made once per context)."""
        return self.derangement_of("wrong")

    def derangement_of(self, purpose: str, name: str = "wrong") -> tuple[tuple[int, ...], dict[str, int]]:
        """A derangement of the whole split's positions for `purpose` ("wrong": whose image, "text": whose words),
        independent across purposes, and each id's position (errors name condition `name`)."""
        return _derangement(tuple(q.id for q in self.benchmark.split_questions), self.seed, purpose, name)


@dataclass(frozen=True)
class Condition:
    """A named way of asking a question: the image shown (`make`) and, for conditions that change what the model
    reads, the question's words (`words`: the question as asked, same id, options and gold)."""

    name: str
    make: Callable[[Question, ConditionContext], Image.Image | None]
    needs_image: bool = False  # skipped for questions that have no image of their own
    words: Callable[[Question, ConditionContext], Question] | None = None
    image_free: bool = False  # the model gets no image at all, not even a blank one (`none`, captions)
    captioner: str | None = None  # `caption:` conditions: whose captions replace the image (self, hf:ID, file:PATH)

    def ask(self, question: Question, ctx: ConditionContext) -> Question:
        """The question as the model is asked it under this condition (its own unless the condition changes the
        words): the prompt style reads its text, the rows its id, options and gold."""
        return question if self.words is None else self.words(question, ctx)

    def image(self, question: Question, ctx: ConditionContext) -> Image.Image:
        """The image this condition shows for `question`."""
        img = self.make(question, ctx)
        if img is None:
            raise MirageError(f"condition {self.name!r} shows no image (question {question.id!r})")
        return img

    def images(self, question: Question, ctx: ConditionContext) -> list[Image.Image]:
        """The images this condition shows for `question`: one per image it holds where the benchmark asks every
        image (`Benchmark.all_images`), each made by this condition's rule from that image (`image_slot`), else one."""
        n = len(question.images) if ctx.benchmark.all_images else 1
        if n <= 1:
            return [self.image(question, ctx)]
        return [self.image(image_slot(question, k), ctx) for k in range(n)]

    def visual(self, model: VLM, questions: Sequence[Question], ctx: ConditionContext) -> Visual:
        """What the model is given for `questions` (as asked): their images through its real processor, or no
        image. A question with several images (`images`) needs a model that takes several (`max_images`)."""
        if self.image_free:
            return Visual.none()
        if not ctx.benchmark.all_images or all(len(q.images) <= 1 for q in questions):
            return model.visual_from_images([self.image(q, ctx) for q in questions])
        limit = getattr(model, "max_images", 1)
        many = next((q for q in questions if len(q.images) > limit), None)
        if many is not None:
            raise MirageError(f"{ctx.benchmark.name}: question {many.id!r} has {len(many.images)} images; "
                              f"{type(model).__name__} is asked {limit} image{'s' * (limit > 1)} per question here "
                              f"(several: {SEVERAL_IMAGE_FAMILIES}; see the README)")
        return model.visual_from_images([self.images(q, ctx) for q in questions])


SLOT_KEY = "image_slot"  # Question.meta of `image_slot`'s view: (the question's id, which of its images)


def image_slot(question: Question, k: int) -> Question:
    """`question` seen from its `k`-th image, for a condition's rule: that image as its only one, the id
    "<id>#<k+1>" past the first (each image its own noise and shuffle; the first's are the question's own), and
    the question's id and `k` in meta (`wrong` walks the question's derangement and takes the other question's
    `k`-th image)."""
    return replace(question, id=image_key(question.id, k), images=(question.images[k],),
                   meta={**question.meta, SLOT_KEY: (question.id, k)})


def _size(question: Question) -> tuple[int, int]:
    return question.image(0).size if question.images else DEFAULT_SIZE


def _from_array(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")


def condition(name: str, *, needs_image: bool = False, words=None, image_free: bool = False):
    """Register the image rule below it as condition `name` (one entry per condition)."""
    def add(make):
        CONDITIONS.register(name)(Condition(name, make, needs_image, words, image_free))
        return make
    return add


@condition("none", image_free=True)
def none(question: Question, ctx: ConditionContext) -> None:
    """No image at all: no placeholder, no image tokens, no pixels (MMStar's "without visual input")."""
    return None


@condition("real", needs_image=True)
def real(question: Question, ctx: ConditionContext) -> Image.Image:
    """The question's own first image."""
    return question.image(0)


@condition("blank")
def blank(question: Question, ctx: ConditionContext) -> Image.Image:
    """Uniform mid grey (128, 128, 128)."""
    return Image.new("RGB", _size(question), (128, 128, 128))


@condition("noise")
def noise(question: Question, ctx: ConditionContext) -> Image.Image:
    """Per-pixel, per-channel Gaussian noise, mean 0.5 and std 0.25 of the full range, clipped."""
    w, h = _size(question)
    rng = np.random.default_rng(seed_for("noise", ctx.seed, question.id))
    return _from_array(255.0 * np.clip(rng.normal(0.5, 0.25, size=(h, w, 3)), 0.0, 1.0))


@lru_cache(maxsize=16)
def _derangement(ids: tuple[str, ...], seed: int, purpose: str = "wrong", name: str = "wrong"
                 ) -> tuple[tuple[int, ...], dict[str, int]]:
    """A single-cycle permutation of positions (Sattolo) and the position of each id, seeded by (purpose, seed, n):
    no position maps to itself, and each purpose draws its own."""
    n = len(ids)
    if n < 2:
        raise MirageError(f"condition {name!r} needs at least 2 questions to take another's "
                          f"{'image' if purpose == 'wrong' else 'words'}, got {n}")
    index = {qid: i for i, qid in enumerate(ids)}
    if len(index) != n:
        raise MirageError(f"condition {name!r} needs unique question ids")
    rng = np.random.default_rng(seed_for(purpose, seed, n))
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(i))  # j < i, never j == i: this is what makes it one cycle, so no fixed point
        perm[i], perm[j] = perm[j], perm[i]
    return tuple(perm), index


def _position(question: Question, ctx: ConditionContext, name: str, purpose: str
              ) -> tuple[list[Question], tuple[int, ...], int]:
    perm, index = ctx.derangement_of(purpose, name)
    qid = question.meta.get(SLOT_KEY, (question.id,))[0]  # an image slot walks its question's derangement
    if qid not in index:
        raise MirageError(f"condition {name!r}: question {qid!r} is not in benchmark {ctx.benchmark.name!r}")
    return ctx.benchmark.split_questions, perm, index[qid]


def _other_image(question: Question, ctx: ConditionContext, name: str, avoid: str | None = None) -> Image.Image:
    """Another question's first image along `wrong`'s derangement (skipping images equal to this question's, and
    question `avoid`), resized to this question's image size."""
    questions, perm, start = _position(question, ctx, name, "wrong")
    own = question.image(0) if question.images else None
    size = own.size if own is not None else DEFAULT_SIZE
    # Walk the cycle: benchmarks reuse one image for several questions, and showing it would be the real image.
    slot = question.meta.get(SLOT_KEY, (None, 0))[1]  # an image slot: the other question's image of that rank
    j = perm[start]
    while j != start:
        if questions[j].images and questions[j].id != avoid:
            try:
                img = questions[j].image(min(slot, len(questions[j].images) - 1))
            except ImageLoadError:  # passed over as a question without an image (`Benchmark.readable`)
                j = perm[j]
                continue
            if own is None or img.size != own.size or img.tobytes() != own.tobytes():
                # Same size as the real image, so that image-token counts do not differ between conditions.
                return img if img.size == size else img.resize(size, Image.BICUBIC)
        j = perm[j]
    raise MirageError(f"condition {name!r}: no other question of {ctx.benchmark.name!r} has a different image")


@condition("wrong")
def wrong(question: Question, ctx: ConditionContext) -> Image.Image:
    """Another question's first image, by a fixed derangement of the benchmark's whole split
    (`ctx.benchmark.split_questions`), so `--limit N` shows the same images as the first N rows of a full run.
    The paper's "text only": the question's words with an image that does not belong to them.

    Resized to this question's image size; questions without an image or with an identical image are skipped.
    """
    return _other_image(question, ctx, "wrong")


_FIRST_OPTION_LINE = re.compile(r"\n\(?A[.:)] ")  # a line labelling option A: "A. x", "A: x", "(A) x", "A) x"


def _split_options(text: str) -> tuple[str, str]:
    """(the question's words, the options written after "Choices:"/"Options:" in it, or from its first line
    labelling option A on (lmms-eval's rendered prompts: "...?\nA. x\nB. y\nAnswer with..."), or "")."""
    for marker in OPTION_MARKERS:  # the paper's code looks for "Choices:" first
        if marker in text:
            at = text.find(marker)
            return text[:at], text[at:]
    m = _FIRST_OPTION_LINE.search(text)
    return (text[: m.start()], text[m.start():]) if m else (text, "")


def _words_source(question: Question, ctx: ConditionContext, name: str) -> Question:
    """The question whose words `question` is asked with: the next along the "text" derangement of the whole split
    whose words differ from its own (benchmarks repeat questions: those words would be its own) and, where a
    question is asked with every image (`Benchmark.all_images`), whose words place as many images (`<image>`
    markers) as its own, so that its images stand where the other words place theirs."""
    questions, perm, start = _position(question, ctx, name, "text")
    own = _split_options(question.text)[0].strip()
    markers = own.count(IMAGE_MARKER) if ctx.benchmark.all_images else None
    j = perm[start]
    while j != start:
        words = _split_options(questions[j].text)[0].strip()
        if words != own and (markers is None or words.count(IMAGE_MARKER) == markers):
            return questions[j]
        j = perm[j]
    raise MirageError(f"condition {name!r}: no other question of {ctx.benchmark.name!r} has different words"
                      + (f" placing {markers} images" if markers else ""))


def _with_words(question: Question, other: Question) -> Question:
    """`question` asked with `other`'s words (its text up to any written-in options, its hint), keeping its own
    options (also those written in its text), gold, type and images."""
    text = _split_options(other.text)[0] + _split_options(question.text)[1]
    meta = {k: v for k, v in question.meta.items() if k not in WORDS_META}
    meta |= {k: other.meta[k] for k in WORDS_META if k in other.meta}
    meta[ASKED_KEY] = {"words_from": other.id}
    return replace(question, text=text, meta=meta)


def _other_words(name: str):
    def words(question: Question, ctx: ConditionContext) -> Question:
        return _with_words(question, _words_source(question, ctx, name))
    return words


@condition("image-only", needs_image=True, words=_other_words("image-only"))
def image_only(question: Question, ctx: ConditionContext) -> Image.Image:
    """The question's own image with another question's words (the paper's "image only"): its options and gold
    stay, so only what the image tells about them can beat chance."""
    return question.image(0)


@condition("both", words=_other_words("both"))
def both(question: Question, ctx: ConditionContext) -> Image.Image:
    """Another question's words (as `image-only`) and another question's image (as `wrong`, never the one whose
    words it is asked with): the paper's "neither", the question's own options and gold only."""
    asked = question.meta.get(ASKED_KEY, {}).get("words_from")  # given the question as asked, or as it is
    return _other_image(question, ctx, "both", avoid=asked or _words_source(question, ctx, "both").id)


@condition("blur", needs_image=True)
def blur(question: Question, ctx: ConditionContext) -> Image.Image:
    """Heavy Gaussian blur (sigma 50 px) that keeps the mean colour exactly, up to uint8 rounding."""
    return Image.fromarray(gaussian_blur(np.asarray(question.image(0)), BLUR_SIGMA), "RGB")


def _gauss_transfer(freqs: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-2 * np.pi**2 * sigma**2 * freqs**2)


def gaussian_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """An HxWxC uint8 image blurred by a Gaussian of `sigma` px with a periodic boundary, rounded to uint8.

    Filtering in the Fourier domain (periodic boundary) leaves the DC term, i.e. the mean colour, untouched; PIL's
    GaussianBlur extends edges instead, which shifts the mean at this radius. The Gaussian's transfer is separable
    and vanishes beyond a few hundredths of a cycle per pixel, so each channel goes: every row to its spectrum (in
    blocks of rows), keeping only the bins the blur passes (transfer > BLUR_KEEP); the columns of that narrow band
    filtered whole; back to rows of full width. Float64 throughout: pixel for pixel the uint8 image of the full
    2-D float64 FFT it replaced on every image compared (the dropped bins move a value by under 1e-19), about 10x
    faster on a 10000x10000 photo and without its float copies of the whole image (the issue-31 note)."""
    import scipy.fft as sf

    h, w = a.shape[:2]
    workers = torch.get_num_threads()  # the thread policy mirage set for this process
    tx = _gauss_transfer(sf.rfftfreq(w), sigma)
    tx = tx[: max(1, int((tx > BLUR_KEEP).sum()))]  # decreasing in frequency: the kept bins are the first ones
    ty = _gauss_transfer(sf.fftfreq(h), sigma)[:, None]
    rows = max(1, BLUR_BLOCK // w)
    out = np.empty(a.shape, np.uint8)
    for c in range(a.shape[2]):
        band = np.empty((h, len(tx)), np.complex128)
        for r in range(0, h, rows):
            band[r:r + rows] = sf.rfft(a[r:r + rows, :, c], axis=1, workers=workers)[:, :len(tx)]
        band = sf.ifft(sf.fft(band, axis=0, workers=workers) * ty, axis=0, overwrite_x=True, workers=workers) * tx
        for r in range(0, h, rows):
            block = sf.irfft(band[r:r + rows], n=w, axis=1, workers=workers)
            out[r:r + rows, :, c] = np.clip(np.rint(block, out=block), 0, 255, out=block)
    return out


@condition("shuffle", needs_image=True)
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


def with_caption(question: Question, caption: str, captioner: str) -> Question:
    """`question` asked with `caption` before its text (CAPTION_TEMPLATE), for a model given no image."""
    text = CAPTION_TEMPLATE.format(caption=caption, question=question.text)
    return replace(question, text=text, meta={**question.meta, ASKED_KEY: {"caption_by": captioner}})


def _caption_condition(spec: str) -> Condition:
    captioner = spec[len(CAPTION_PREFIX):]
    kind, _, rest = captioner.partition(":")
    if captioner != "self" and (kind not in ("file", "hf", "demo") or (kind in ("file", "hf") and not rest)):
        raise UsageError(f"condition {spec!r}: unknown captioner {captioner!r} (allowed: {CAPTIONERS})")
    if kind == "file" and not Path(rest).is_file():
        raise UsageError(f"condition {spec!r}: caption file {rest!r} does not exist")

    def words(question: Question, ctx: ConditionContext) -> Question:
        caption = ctx.captions.get(captioner, {}).get(question.id)
        if caption is None:
            raise MirageError(f"condition {spec!r}: no caption of question {question.id!r} was made")
        return with_caption(question, caption, captioner)

    return Condition(spec, none, needs_image=True, words=words, image_free=True, captioner=captioner)


def get_condition(spec: str) -> Condition:
    """The condition named `spec`: a registered name such as "blur", "file:PATH" (PATH relative to the cwd), or
    "caption:CAPTIONER" (self, hf:ID, demo, file:PATH)."""
    if spec.startswith(FILE_PREFIX):
        return _file_condition(spec)
    if spec.startswith(CAPTION_PREFIX):
        return _caption_condition(spec)
    return CONDITIONS.get(spec)


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
