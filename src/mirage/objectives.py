"""Objectives: what an optimized input should make the model do. The optimization loop never names a loss."""

from __future__ import annotations

from typing import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from .benchmarks.question import Question
from .models.vlm import VLM, Visual, letter_logits, on_device
from .registry import Registry

# objective(model, prompts, visual, questions) -> (loss per question [B], choice logits [B, C])
Objective = Callable[[VLM, Sequence[str], Visual, Sequence[Question]], tuple[Tensor, Tensor]]
OBJECTIVES: Registry = Registry("objective")


def _answers(questions: Sequence[Question], device) -> Tensor:
    return on_device([q.answer for q in questions], device)


@OBJECTIVES.register("ce")
def answer_ce(model: VLM, prompts: Sequence[str], visual: Visual, questions: Sequence[Question]) -> tuple[Tensor, Tensor]:
    """Teacher-forcing cross-entropy of the correct answer letter over the whole vocabulary."""
    logits = model.next_token_logits(prompts, visual)  # [B, V]
    letters = on_device([model.letter_ids(len(q.choices))[q.answer] for q in questions], logits.device)
    return F.cross_entropy(logits, letters, reduction="none"), letter_logits(model, logits, [len(q.choices) for q in questions])


def choice_margin(choice_logits: Tensor, questions: Sequence[Question]) -> Tensor:
    """Correct letter's logit minus the best other letter's: > 0 means the model answers correctly. [B]"""
    answers = _answers(questions, choice_logits.device)
    correct = choice_logits.gather(1, answers[:, None])[:, 0]
    others = choice_logits.scatter(1, answers[:, None], float("-inf")).max(1).values
    return correct - others


@OBJECTIVES.register("margin")
def margin_hinge(model: VLM, prompts: Sequence[str], visual: Visual, questions: Sequence[Question],
                 margin: float = 3.0) -> tuple[Tensor, Tensor]:
    """Hinge on the letter margin: zero once the correct letter leads every other by `margin` logits."""
    logits = model.choice_logits(prompts, visual, [len(q.choices) for q in questions])
    return F.relu(margin - choice_margin(logits, questions)), logits
