"""Galleries: one section per artifact folder of images (artifacts/<key>/<question_id>.png), keyed by source, each
image beside its question, real image, choices and the model's answer; plus the run's single images.

Any later analysis that writes a folder of per-question images (saliency maps, patches, generator samples) gets a
section without a change here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..benchmarks.question import LETTERS, Question
from .images import THUMB_SIDE, file_uri, png_uri
from .questions import real_image
from .rundata import RunData
from ..sources import parse_source

DEFAULT_MAX_IMAGES = 16


@dataclass
class Choice:
    letter: str
    text: str
    is_answer: bool
    is_pred: bool
    prob: float | None


@dataclass
class Answer:
    """What the model answered with one source's input."""

    source: str
    pred: str
    correct: bool
    prob: float | None  # probability of its answer, when scored by letter


@dataclass
class GalleryItem:
    question_id: str
    uri: str
    real_uri: str | None = None
    text: str | None = None
    choices: list[Choice] = field(default_factory=list)
    answer: str | None = None
    answers: list[Answer] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)  # steps, loss, margin of the optimization


@dataclass
class Gallery:
    key: str
    description: str
    items: list[GalleryItem]
    total: int

    @property
    def left_out(self) -> int:
        return self.total - len(self.items)


def _answer(row: dict) -> Answer:
    prob = None
    if row.get("probs") and row["pred"] in LETTERS[: len(row["probs"])]:
        prob = row["probs"][LETTERS.index(row["pred"])]
    return Answer(row["source"], str(row["pred"]), bool(row["correct"]), prob)


def question_id(path: Path) -> str:
    """The question an artifact image belongs to: saliency maps come as `<qid>-real.png` and `<qid>-wrong.png`, the
    images of a several-image question past its first as `<qid>#<k>.png` (`image_key`)."""
    return re.sub(r"#\d+$", "", path.stem.removesuffix("-real").removesuffix("-wrong"))


def _item(path: Path, question: Question | None, rows: list[dict]) -> GalleryItem:
    item = GalleryItem(path.stem, file_uri(path, THUMB_SIDE))
    item.answers = [_answer(r) for r in rows]
    main = rows[0] if rows else None
    if main:
        item.answer = str(main["answer"])
        item.facts = {k: main[k] for k in ("steps", "loss", "margin") if k in main}
    if question is not None:
        item.text = question.text
        item.answer = question.answer_letter if question.kind == "mc" else item.answer
        real = real_image(question)
        item.real_uri = png_uri(real, THUMB_SIDE) if real is not None else None
        probs = main.get("probs") if main else None
        item.choices = [Choice(letter, text, i == question.answer, bool(main) and main["pred"] == letter,
                               probs[i] if probs and i < len(probs) else None)
                        for i, (letter, text) in enumerate(zip(question.letters, question.choices))]
    return item


def galleries(data: RunData, questions: dict[str, Question], max_images: int) -> list[Gallery]:
    """A gallery per image folder in artifacts/, at most `max_images` images each (benchmark order)."""
    order = {qid: i for i, qid in enumerate(questions)}
    out = []
    for key, paths in data.image_dirs.items():
        paths = sorted(paths, key=lambda p: (order.get(question_id(p), len(order)), p.stem))
        rows = data.rows_of(key)
        rechecks = data.rows_of(f"{key}-png")
        items = []
        for path in paths[:max_images]:
            qid = question_id(path)
            item_rows = [r[qid] for r in (rows, rechecks) if qid in r]
            items.append(_item(path, questions.get(qid), item_rows))
        out.append(Gallery(key, parse_source(key).description, items, len(paths)))
    return out


@dataclass
class SingleImage:
    key: str
    uri: str
    description: str
    n: int | None
    accuracy: float | None


def single_images(data: RunData, skip: set[str]) -> list[SingleImage]:
    """artifacts/<key>.png images (universal inputs and the like) not shown elsewhere, with their source's accuracy."""
    out = []
    for key, path in data.root_images.items():
        if key in skip:
            continue
        n = data.summary["n"].get(key)
        out.append(SingleImage(key, file_uri(path), parse_source(key).description, n,
                               data.summary["accuracy"].get(key)))
    return out
