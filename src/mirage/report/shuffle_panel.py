"""The shuffle panel (Multi-modal Data Spectrum): accuracy with the pair, the image alone, the text alone and
neither, beside chance, and the paired differences, read off summary.json's `shuffle` (`mirage.blind`), overall and
per question type, with its picture; and the captions the `caption:` conditions answered from, beside their
questions."""

from __future__ import annotations

from dataclasses import dataclass

from ..benchmarks.question import Question
from ..blind import SHUFFLE_MEASURES, SHUFFLE_NAMES, shuffle_decomposition
from ..runs import read_rows
from .plots import Plot, shuffle_plot
from .rundata import RunData

CAPTION_ROWS = 40  # captions shown (the first questions of the run)


@dataclass
class ShufflePanel:
    """The measures present, the overall block and one per question type, and the picture."""

    measures: list[str]
    overall: dict
    by_type: dict[str, dict]
    intervals: dict
    labels: dict
    plot: Plot | None


def shuffle_blocks(shuffle: dict) -> dict[str, dict]:
    """`{"all": the overall block, type: its block, ...}` of a decomposition, as the picture groups them."""
    return {"all": shuffle, **shuffle.get("by_type", {})}


def shuffle_panel(data: RunData) -> ShufflePanel | None:
    """The panel of a run whose rows hold `image-only` or `both`; None otherwise. Read from summary.json (which
    knows each question's chance); from the rows when a summary was not written."""
    shuffle = data.summary_file.get("shuffle") or shuffle_decomposition(data.rows)
    if not shuffle:
        return None
    order = (*SHUFFLE_MEASURES[:4], "chance", *SHUFFLE_MEASURES[4:])
    present = [m for m in order if m in shuffle or any(m in b for b in shuffle["by_type"].values())]
    plot = shuffle_plot(shuffle_blocks(shuffle), "Where the score comes from: pair, image alone, text alone, neither")
    return ShufflePanel(present, {m: shuffle[m] for m in present if m in shuffle}, shuffle["by_type"],
                        shuffle["intervals"], SHUFFLE_NAMES, plot)


@dataclass
class CaptionRow:
    """One question's caption beside its text, and how it was answered from the caption and with the image."""

    question_id: str
    captioner: str
    caption: str
    question: str
    caption_row: dict | None
    real_row: dict | None


def caption_rows(data: RunData, questions: dict[str, Question], limit: int = CAPTION_ROWS) -> list[CaptionRow]:
    """The run's captions (captions.jsonl, every rank's), the first `limit` per captioner, beside their questions."""
    out, answered = [], {}
    real = data.rows_of("real")
    for f in sorted(data.path.glob("captions*.jsonl")):
        for r in read_rows(f, repair=False):
            cap = r.get("captioner", "")
            if cap not in answered:
                answered[cap] = [0, data.rows_of(f"caption:{cap}")]
            if answered[cap][0] >= limit:
                continue
            answered[cap][0] += 1
            q = questions.get(r["question_id"])
            out.append(CaptionRow(r["question_id"], cap, r.get("caption", ""), q.text if q else "",
                                  answered[cap][1].get(r["question_id"]), real.get(r["question_id"])))
    return out
