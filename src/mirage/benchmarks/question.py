"""`Question` and `Benchmark`: what every loader produces and every evaluation consumes."""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import MirageError
from ..runs import SKIPPED_KEY

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PROMPT_VARIANTS = ("lmms-eval", "model", "official")  # what `--prompt` chooses among (Benchmark.with_prompt)

# An image as stored by a loader: encoded bytes (PNG/JPEG, as the hub's image structs hold), a file path, or an
# object whose `open()` makes the PIL image when asked (lmms-eval's doc_to_visual, `benchmarks.lmms.LazyImage`).
ImageRef = bytes | str | Path | Any


class ImageLoadError(MirageError):
    """An image of a question could not be read; the message names the file and the question."""


# Image modes Pillow reads 16-bit (and 32-bit integer) pixels into: convert("RGB") clips every value above 255,
# so a 16-bit PNG would become nearly all white; they are scaled to 8 bits instead.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_WARNED: set[str] = set()


def _warn_once(kind: str, message: str) -> None:
    if kind not in _WARNED:
        _WARNED.add(kind)
        from ..progress import warn

        warn(message + " (said once; later images like it are treated the same)")


def to_rgb(im: Image.Image, question_id: str = "?") -> Image.Image:
    """An image as the models read it, 8-bit RGB. Two cases a plain `convert("RGB")` gets wrong are said once:
    16-bit pixels (`WIDE_MODES`) are scaled to 8 bits (x * 255 / 65535) instead of clipped to white; transparent
    pixels keep their colour channels, as lmms-eval and the official LLaVA code read them (`convert("RGB")`), which
    is what published scores were computed on. transformers' own `convert_to_rgb` composites on white instead: the
    README's image section says where the two differ."""
    if im.mode in WIDE_MODES:
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        if im.mode == "I" and arr.max() <= 255:  # 8-bit values held in 32-bit pixels
            return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
        _warn_once("wide", f"question {question_id!r}: a {im.mode} image (16-bit pixels) is scaled to 8 bits, not "
                   "clipped to white as convert('RGB') would")
        return Image.fromarray(np.clip(np.rint(arr * 255 / 65535), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        _warn_once("alpha", f"question {question_id!r}: an image with transparency is read as lmms-eval and LLaVA "
                   "read it (alpha dropped, transparent pixels keep their stored colour, often black); transformers' "
                   "processors would composite it on white")
    return im.convert("RGB")


@contextmanager
def strict_decoding():
    """Within it, Pillow refuses a truncated image as it does by default, whatever was imported before: lmms-eval's
    task module turns `ImageFile.LOAD_TRUNCATED_IMAGES` on for the whole process at import, under which a
    truncated image decodes with its missing part grey instead of failing. The flag is global: for the load-time
    checks (`Benchmark.readable`, the `file:` loader), not for decoding in worker threads."""
    from PIL import ImageFile

    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def open_image(ref: ImageRef, question_id: str) -> Image.Image:
    """Decode one stored image as RGB (`to_rgb`), naming the question (and file) when it cannot be read."""
    import warnings

    where = f"file {str(ref)!r}" if isinstance(ref, (str, Path)) else "embedded image bytes"
    if not isinstance(ref, (bytes, str, Path)):
        try:
            return ref.open()
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise ImageLoadError(f"question {question_id!r}: cannot make {ref}: {e}") from e
    try:
        src = io.BytesIO(ref) if isinstance(ref, bytes) else ref
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(src) as im:
                    return to_rgb(im, question_id)
            except Image.DecompressionBombWarning:  # said as one line, once, not as Python's raw warning
                pass
        _warn_once("large", f"question {question_id!r}: image {where} has more pixels than Pillow's "
                   f"decompression-bomb limit ({Image.MAX_IMAGE_PIXELS:,}); read anyway, but each condition costs "
                   "time and memory in proportion (blur: several seconds an image at 100 megapixels)")
        if isinstance(src, io.BytesIO):
            src.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                return to_rgb(im, question_id)
    except Image.DecompressionBombError as e:  # over twice the limit: Pillow refuses to decode it
        raise ImageLoadError(f"question {question_id!r}: image {where} is too large to decode ({e})") from e
    except (FileNotFoundError, IsADirectoryError) as e:
        raise ImageLoadError(f"question {question_id!r}: image {where} does not exist") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageLoadError(f"question {question_id!r}: cannot read image {where}: {e}") from e


@dataclass(frozen=True)
class Question:
    """One question: multiple choice (`answer` indexes `choices`) or, with kind "open", a free-form answer in
    `meta["answer"]` (no choices, `answer` = -1). `images` are stored refs, decoded on demand."""

    id: str
    text: str
    choices: tuple[str, ...]
    answer: int
    images: tuple[ImageRef, ...] = field(default=(), repr=False)
    type: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    kind: str = "mc"

    def __post_init__(self) -> None:
        if self.kind == "open":
            if self.choices or "answer" not in self.meta:
                raise ValueError(f"question {self.id!r}: an open question has no choices and its answer in meta['answer']")
            return
        if self.kind != "mc":
            raise ValueError(f"question {self.id!r}: kind must be 'mc' or 'open', not {self.kind!r}")
        if not 2 <= len(self.choices) <= len(LETTERS):
            raise ValueError(f"question {self.id!r}: needs 2..{len(LETTERS)} choices, has {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"question {self.id!r}: answer index {self.answer} outside {len(self.choices)} choices")

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.choices)]

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def image(self, index: int = 0) -> Image.Image:
        """The question's `index`-th image as an RGB PIL image."""
        if not self.images:
            raise ImageLoadError(f"question {self.id!r} has no image")
        return open_image(self.images[index], self.id)


def image_key(question_id: str, k: int) -> str:
    """The name of a question's `k`-th image (0-based) where each image of a question has its own (a condition's
    per-image draw, an optimized input's image slot and its artifact): the question's id for the first, "<id>#<k+1>"
    past it."""
    return question_id if k == 0 else f"{question_id}#{k + 1}"


def letter_prompt(question: Question) -> str:
    """Plain multiple-choice prompt: question, lettered options, and the instruction to answer by letter."""
    opts = " ".join(f"{letter} . {choice}" for letter, choice in zip(question.letters, question.choices))
    return f"{question.text} {opts} answer with the letter ."


@dataclass
class Benchmark:
    """A named, ordered list of questions with the prompt style its questions are asked in."""

    name: str
    split: str
    questions: list[Question]
    prompt_style: Callable[[Question], str] = letter_prompt
    # The whole split these questions were taken from (None: just them). Conditions that look across questions
    # (`wrong`) draw from it, so a run on the first N questions is a prefix of the run on all of them.
    pool: list[Question] | None = field(default=None, repr=False, compare=False)
    # True when `prompt_style` is mirage's generic one (a `file:` set has no official prompt): a model that reads
    # a prompt style of its own (`VLM.prompt_style`, e.g. the demo's) is asked in that instead.
    generic_prompt: bool = False
    # how a generated answer is judged: (question, response, seed) -> (pred, answer, correct); None: MMMU's parser
    judging: Callable[[Question, str, int], tuple] | None = None
    # the published prompts it can be asked in, by name (`with_prompt`), and which one `prompt_style` is
    prompts: dict[str, Callable[[Question], str]] = field(default_factory=dict, repr=False, compare=False)
    prompt_name: str = "lmms-eval"
    # model -> the prompt style its family is asked in, where the benchmark has one per family (lmms-eval's
    # per-model kwargs), or None for the benchmark's own
    family_prompt: Callable[[Any], Callable[[Question], str] | None] | None = None
    # the benchmark's own aggregation of the `metrics` its judging adds to generated rows (lmms-eval's
    # process_results + aggregation): one source's values -> {metric: value}
    metrics: Callable[[list[dict]], dict] | None = None
    # True: a question is asked with every image it holds, each where its text places an `<image>` marker
    # (lmms-eval's doc_to_visual); False: with its first (MMMU's official LLaVA runner)
    all_images: bool = False
    # A `file:`/`spec:` benchmark: the name that loads it again from any directory (its resolved path) and the
    # sha256 of that file, so a run records which file it evaluated, not a stem another file shares (`identity`).
    ref: str | None = None
    digest: str | None = None
    # questions left out because an image of theirs cannot be decoded (`readable`): id -> why
    skipped: dict[str, str] = field(default_factory=dict, compare=False)

    def identity(self) -> dict:
        """What names this benchmark in a run's config.json: `benchmark` (the registered name, or `file:`/`spec:`
        and the resolved path), for a file `benchmark_sha256` (another file at that path is another benchmark),
        and `skipped_unreadable` (id -> why) where questions were left out (`readable`): the questions its numbers
        do not stand on."""
        return {"benchmark": self.ref or self.name, **({"benchmark_sha256": self.digest} if self.digest else {}),
                **({SKIPPED_KEY: dict(self.skipped)} if self.skipped else {})}

    def readable(self) -> "Benchmark":
        """These questions less those with an image that cannot be decoded, strictly (a truncated one too:
        `strict_decoding`), each said in one `warning:` line naming the benchmark, the question and why, and kept
        in `skipped` (which `identity` records in the run). For stored data the user cannot edit (hub parquet
        files, lmms-eval tasks): asked, such a question would fail the run at the same place on every resume.
        One decode of each image asked (the images it is asked with: all, or its first); the split (`pool`) keeps
        them, and the conditions that show another question's image pass over one that cannot be read."""
        bad: dict[str, str] = {}
        with strict_decoding():
            for q in self.questions:
                try:
                    for i in range(len(q.images) if self.all_images else min(1, len(q.images))):
                        q.image(i)
                except ImageLoadError as e:
                    bad[q.id] = str(e).removeprefix(f"question {q.id!r}: ")
        if not bad:
            return self
        from ..progress import warn

        for qid, why in bad.items():
            warn(f"{self.name}: question {qid!r} skipped, its image cannot be decoded ({why}); the run records it "
                 f"under {SKIPPED_KEY}")
        if len(bad) == len(self.questions):
            raise ImageLoadError(f"{self.name}: none of the {len(bad)} questions asked has an image that can be "
                                 "decoded")
        return self.skipping(bad)

    def skipping(self, skipped: dict[str, str]) -> "Benchmark":
        """These questions less the `skipped` ones (id -> why), which it records; the split keeps them."""
        return replace(self, questions=[q for q in self.questions if q.id not in skipped],
                       pool=self.split_questions, skipped={**self.skipped, **skipped})

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self):
        return iter(self.questions)

    def __getitem__(self, i: int) -> Question:
        return self.questions[i]

    def prompt(self, question: Question) -> str:
        """The text the model is asked (without the image placeholder: the model's template places it)."""
        return self.prompt_style(question)

    def subset(self, limit: int | None) -> "Benchmark":
        """The first `limit` questions (all when None), same name and prompt style."""
        qs = self.questions if limit is None else self.questions[:limit]
        return replace(self, questions=list(qs), pool=self.split_questions)

    def for_model(self, model) -> "Benchmark":
        """This benchmark as `model` is asked it: a generic prompt gives way to the model's own prompt style."""
        family = self.family_prompt(model) if self.family_prompt is not None else None
        if family is not None:
            return replace(self, prompt_style=family, family_prompt=None, pool=self.split_questions)
        own = getattr(model, "prompt_style", None)
        if not self.generic_prompt or own is None:
            return self
        return replace(self, prompt_style=own, generic_prompt=False, pool=self.split_questions)

    def with_prompt(self, variant: str | None, model=None) -> "Benchmark":
        """This benchmark asked in prompt `variant` (None: as it is): `lmms-eval` (its lmms-eval task's), `official`
        (its official runner's, where it has one: MMMU), `model` (the model family's own published prompt, by
        `model.prompt_family`, e.g. lmms-eval's `mmstar_qwen` for the Qwen-VL family)."""
        if variant is None:
            return self
        from ..errors import UsageError

        if variant not in PROMPT_VARIANTS:
            from ..registry import did_you_mean

            raise UsageError("--prompt: " + did_you_mean("prompt", variant, list(PROMPT_VARIANTS)))
        key = getattr(model, "prompt_family", None) if variant == "model" else variant
        if key is None:
            raise UsageError(f"--prompt model: {type(model).__name__} has no published prompt family of its own "
                             "(the Qwen-VL family has: qwen)")
        if key == self.prompt_name:
            return self
        if key not in self.prompts:
            raise UsageError(f"--prompt {variant}: {self.name} has no {key!r} prompt (it has: "
                             f"{', '.join(dict.fromkeys([self.prompt_name, *self.prompts]))})")
        return replace(self, prompt_style=self.prompts[key], prompt_name=key, generic_prompt=False,
                       pool=self.split_questions)

    @property
    def split_questions(self) -> list[Question]:
        """The whole split (`pool`), or these questions when they are all there is."""
        return self.pool if self.pool is not None else self.questions

    def judge(self, question: Question, response: str, seed: int = 0) -> tuple:
        """(pred, answer, correct) of a generated `response`: the benchmark's own `judging`, or by default the
        official MMMU parser and judge (multiple choice or open), which mirage uses for every benchmark. A
        benchmark with `metrics` adds a fourth item, the row's `metrics` (lmms-eval's process_results)."""
        if self.judging is not None:
            return self.judging(question, response, seed)
        from .mmmu_judge import judge_response

        return judge_response(question, response, seed)

    def types(self) -> Sequence[str]:
        return sorted({q.type for q in self.questions})
