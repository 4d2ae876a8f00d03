"""The one owner of result rows' `source` names, built and parsed here only.

    <condition>                          real, blank, noise, wrong, blur, shuffle, file:<path>, none (no image)
    text-model                           the base LLM on the same prompts as text (--text-model)
    tst-lm, tst-rf                       trained-blind: a LoRA-tuned LM / a random forest trained on the other folds'
                                         questions' text (cross-fitted; `mirage tst`)
    <input>-<scope>[-<e1>+<e2>][-from-<start>][-text-model]   an optimized input (features-question,
                                         pixels-universal-clip+dino, features-question-from-blank: started from the
                                         blank image's features; soft-prompt-question: free vectors in the text-only
                                         prompt, the control; soft-prompt-question-text-model: on the base LLM)
    <source>-png                         the same input re-checked from its saved 8-bit PNG
    <source>-train                       a universal input on its own training questions
    inversion-question[-<encoders>][-from-<start>]   two-stage inversion (its PNG re-check: -png)
    patch-untargeted, patch-targeted-<letter|wrong> (-fixed, -png), patch-random
    generator-<method> (-train), saliency-<method>[-<encoder>]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .conditions import CAPTION_PREFIX, CONDITIONS, FILE_PREFIX

SCOPES = ("question", "universal")
START = "from"  # `-from-<start>`: where an input's optimization started, when not at its random start
SUFFIXES = {"png": "re-checked from its saved 8-bit PNG", "train": "on its training questions"}
TEXT_MODEL = "text-model"  # MMStar's S_t: the VLM's base LLM on the text alone
TST_LM = "tst-lm"  # trained-blind (TsT): a LoRA-tuned LM on the text, cross-fitted (experiments/tst.py)
TST_RF = "tst-rf"  # trained-blind (TsT): a random forest on features of the text, cross-fitted
PATCH_RANDOM = "patch-random"  # the untrained noise patch at the same places: the occlusion control


SOFT_PROMPT = "soft-prompt"  # the control: free vectors in the text-only prompt (inputs/soft_prompt.py)


def optimized(input: str, scope: str, encoders: Sequence[str] | None = None, start: str | None = None,
              text_model: bool = False) -> str:
    """`<input>-<scope>`, plus the encoder subset for single-encoder (or subset) runs, plus `-from-<start>` when the
    input starts from an image's features (blank) instead of its random start, plus `-text-model` when it was
    optimized on the base LLM (`--text-model`) instead of the VLM."""
    return (f"{input}-{scope}" + (f"-{'+'.join(encoders)}" if encoders else "")
            + (f"-{START}-{start}" if start else "") + (f"-{TEXT_MODEL}" if text_model else ""))


def png(source: str) -> str:
    """The rows of `source`'s saved 8-bit image read back through the model's real processor."""
    return f"{source}-png"


def train(source: str) -> str:
    """The rows of a universal input on its own training questions."""
    return f"{source}-train"


def fixed(source: str) -> str:
    """A patch's rows at the fixed unseen places (corners and centre)."""
    return f"{source}-fixed"


def inversion(encoders: Sequence[str] | None = None, start: str = "random") -> str:
    """`inversion-question` (`inversion-question-from-blank` from blank-start features), with `-<e1>+<e2>` through
    a subset of encoders: per-question pixels, named as every optimized input is."""
    return optimized("inversion", "question", encoders, None if start == "random" else start)


def patch(goal: str, target: str | None) -> str:
    """`patch-untargeted`, `patch-targeted-B`, `patch-targeted-wrong`."""
    return "patch-untargeted" if goal == "untargeted" else f"patch-targeted-{target}"


def generator(method: str) -> str:
    return f"generator-{method}"


def saliency(method: str, encoder: str | None = None) -> str:
    """`saliency-<method>`, plus `-<encoder>` for a map through one encoder alone."""
    return f"saliency-{method}" + (f"-{encoder}" if encoder else "")


TRAINED_BLIND = {TST_LM: "LM LoRA-tuned on the other folds' text, no image (cross-fitted)",
                 TST_RF: "random forest on the other folds' text features, no image (cross-fitted)"}

# Conditions that change more than the image (the shuffle decomposition's), in words.
CONDITION_DESCRIPTIONS = {
    "wrong": "another question's image (text only)",
    "image-only": "the real image with another question's words (image only)",
    "both": "another question's words and another's image (neither)",
}

# What the sources of the analyses are, by name prefix (most specific first), for the report's "what" column.
OTHER_DESCRIPTIONS = (
    ("inversion", "pixels inverted from per-question features (two-stage inversion)"),
    (PATCH_RANDOM, "an untrained noise patch on the real image (the occlusion control)"),
    ("patch-untargeted", "adversarial patch on the real image, away from the answer"),
    ("patch-targeted", "adversarial patch on the real image, toward a target letter"),
    ("generator", "images from the question-conditioned generator"),
)


@dataclass(frozen=True)
class SourceInfo:
    """One source name, parsed."""

    name: str
    group: str  # condition, optimized, single-encoder or other
    input: str | None = None  # features, pixels, tokens ... for optimized inputs
    scope: str | None = None  # question or universal
    encoders: tuple[str, ...] = ()  # single-encoder (or subset) runs
    suffix: str | None = None  # png or train
    start: str | None = None  # blank: started from the blank image's features
    text_model: bool = False  # optimized on the base LLM (`--text-model`), not the VLM

    @property
    def base(self) -> str:
        """The optimized source a `-png` / `-train` row belongs to (the name itself otherwise)."""
        return self.name[: -len(self.suffix) - 1] if self.suffix else self.name

    @property
    def description(self) -> str:
        """What the source shows the model, in words (the report's "what" column)."""
        if self.group == "condition":
            if self.name == "none":
                return "no image at all (text-only prompt)"
            if self.name in CONDITION_DESCRIPTIONS:
                return CONDITION_DESCRIPTIONS[self.name]
            if self.name.startswith("caption:"):
                return f"a caption ({self.name[len('caption:'):]}) instead of the image"
            return "file image" if self.name.startswith(FILE_PREFIX) else "image condition"
        if self.name == TEXT_MODEL:
            return "base LLM, text only"
        if self.name in TRAINED_BLIND:
            return TRAINED_BLIND[self.name]
        if self.input == "inversion":
            return (OTHER_DESCRIPTIONS[0][1] + (f", from {self.start}-start features" if self.start else "")
                    + (f", through {' + '.join(self.encoders)} only" if self.encoders else "")
                    + (f", {SUFFIXES[self.suffix]}" if self.suffix else ""))
        if self.group == "other":
            what = next((what for prefix, what in OTHER_DESCRIPTIONS if self.name.startswith(prefix)), "")
            ends = {**SUFFIXES, "fixed": "at fixed unseen places"}
            tail = next((t for k, t in ends.items() if self.name.endswith(f"-{k}")), None)
            return what + (f", {tail}" if what and tail else "")
        what = f"{self.input}, {'one per question' if self.scope == 'question' else 'one for all questions'}"
        if self.encoders:
            what += f", through {' + '.join(self.encoders)} only"
        if self.start:
            what += f", started from the {self.start} image's features"
        if self.input == SOFT_PROMPT:
            what = what.replace(SOFT_PROMPT, "soft prompt (free vectors in the text-only prompt, no image)", 1)
        if self.text_model:
            what += ", on the base LLM"
        if self.scope == "universal" and not self.suffix:
            what += ", held-out questions"
        return what + (f", {SUFFIXES[self.suffix]}" if self.suffix else "")


def parse_source(name: str) -> SourceInfo:
    """Classify a source name (unknown shapes fall in the `other` group rather than failing)."""
    if name in CONDITIONS or name.startswith((FILE_PREFIX, CAPTION_PREFIX)):
        return SourceInfo(name, "condition")
    stem, suffix = name, None
    for s in SUFFIXES:
        if name.endswith(f"-{s}"):
            stem, suffix = name[: -len(s) - 1], s
            break
    text_model = stem.endswith(f"-{TEXT_MODEL}")
    if text_model:
        stem = stem[: -len(TEXT_MODEL) - 1]
    parts = stem.split("-")
    if SOFT_PROMPT.split("-") == parts[:2]:  # the one input whose name holds a hyphen
        parts = [SOFT_PROMPT, *parts[2:]]
    start = None
    if len(parts) >= 4 and parts[-2] == START:
        parts, start = parts[:-2], parts[-1]
    if len(parts) < 2 or parts[1] not in SCOPES or not parts[0]:
        return SourceInfo(name, "other")
    encoders = tuple(e for e in "-".join(parts[2:]).split("+") if e)
    return SourceInfo(name, "single-encoder" if encoders else "optimized", parts[0], parts[1], encoders, suffix,
                      start, text_model)


def is_universal(name: str) -> bool:
    """Whether `name` is a universal optimized input (one for all questions)."""
    return parse_source(name).scope == "universal"
