"""Captions of the questions' real images, for the `caption:` conditions (the model answers from a caption, with no
image): made once by a captioner (`self`: the evaluated model; a model spec such as `hf:ID`: another model;
`file:PATH`: given per question id), with a fixed prompt, and cached in the run directory (`captions.jsonl`, one
row per question and captioner, appended as they are made, so a killed run resumes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from .benchmarks.question import Question
from .conditions import CAPTION_PROMPT, CAPTION_TEMPLATE, CAPTION_TOKENS
from .distributed import SINGLE, World
from .errors import UsageError
from .models.vlm import VLM
from .progress import progress_bar
from .runs import CAPTIONS, RunDir, append_rows, read_rows

SELF = "self"
FILE = "file:"
__all__ = ["CAPTION_PROMPT", "CAPTION_TEMPLATE", "caption_settings", "cached_captions", "make_captions",
           "read_caption_file"]


def caption_settings() -> dict:
    """What identifies the captions of a run (config.json's `captions`)."""
    return {"prompt": CAPTION_PROMPT, "template": CAPTION_TEMPLATE, "max_new_tokens": CAPTION_TOKENS}


def read_caption_file(path: str | Path) -> dict[str, str]:
    """Captions by question id from a JSON object {id: caption} or JSON lines {"question_id", "caption"}."""
    path = Path(path)
    where = f"caption file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{where}: cannot read it ({e.strerror or e})") from None
    try:
        data = json.loads(text)
        rows = [{"question_id": k, "caption": v} for k, v in data.items()] if isinstance(data, dict) else None
    except ValueError:
        rows = None
    if rows is None:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise UsageError(f"{where}, line {i}: not JSON ({e})") from None
            if not isinstance(row, dict) or "question_id" not in row or "caption" not in row:
                raise UsageError(f'{where}, line {i}: expected {{"question_id": ..., "caption": ...}}')
            rows.append(row)
    out = {}
    for row in rows:
        if not isinstance(row["caption"], str):
            raise UsageError(f"{where}: the caption of question {row['question_id']!r} is not text")
        out[str(row["question_id"])] = row["caption"]
    return out


def _captions_files(run: RunDir) -> list[Path]:
    return sorted(run.path.glob("captions*.jsonl"))


def cached_captions(run: RunDir | None, captioner: str) -> dict[str, str]:
    """The captions `run` holds of `captioner`, by question id (every rank's file)."""
    if run is None:
        return {}
    return {r["question_id"]: r["caption"] for f in _captions_files(run) for r in read_rows(f, repair=False)
            if r.get("captioner") == captioner}


def make_captions(captioner: str, model: VLM, questions: Sequence[Question], run: RunDir | None = None,
                  batch_size: int = 16, quiet: bool = True, world: World = SINGLE,
                  captioner_model: VLM | None = None) -> dict[str, str]:
    """Captions of `questions`' first images by `captioner`, by question id: read from the file (`file:PATH`), from
    the run's cache, or generated (greedy, CAPTION_PROMPT) by `model` (`self`) or `captioner_model` (loaded from
    the spec when not given) for those the cache lacks, appended to the run as each batch is made."""
    have = cached_captions(run, captioner)
    todo = [q for q in questions if q.id not in have]
    path = None if run is None else run.path / (CAPTIONS if not world.distributed
                                                else f"captions.rank{world.rank}.jsonl")
    if todo and captioner.startswith(FILE):  # kept in the run too, so its report shows them
        given = read_caption_file(captioner[len(FILE):])
        missing = [q.id for q in todo if q.id not in given]
        if missing:
            raise UsageError(f"caption file {captioner[len(FILE):]!r} has no caption of question {missing[0]!r} "
                             f"({len(missing)} of {len(questions)} questions missing)")
        rows = [{"question_id": q.id, "captioner": captioner, "caption": given[q.id]} for q in todo]
        if path is not None:
            append_rows(path, rows)
        have |= {r["question_id"]: r["caption"] for r in rows}
    elif todo:
        if captioner == SELF:
            by = model
        elif captioner_model is not None:
            by = captioner_model
        else:
            from .models import load_model

            by = load_model(captioner, device=model.device)
        with torch.inference_mode(), progress_bar(f"captioning ({captioner})", len(todo), quiet) as advance:
            for i in range(0, len(todo), batch_size):
                batch = todo[i : i + batch_size]
                visual = by.visual_from_images([q.image(0) for q in batch])
                texts = by.generate([CAPTION_PROMPT] * len(batch), visual, CAPTION_TOKENS)
                rows = [{"question_id": q.id, "captioner": captioner, "caption": t} for q, t in zip(batch, texts)]
                if path is not None:
                    append_rows(path, rows)
                have |= {r["question_id"]: r["caption"] for r in rows}
                advance(len(batch))
    return {q.id: have[q.id] for q in questions}
