"""What a result row's `source` name says: a condition, an optimized input (`<input>-<scope>[-<encoders>]`), its
8-bit PNG re-check (`-png`) or its universal training questions (`-train`)."""

from __future__ import annotations

from dataclasses import dataclass

# From no information about the image to all of it: the order the spectrum plot walks.
SPECTRUM = ("none", "blank", "noise", "shuffle", "blur", "wrong", "real")  # none: no image at all
CONDITION_NAMES = frozenset(SPECTRUM)
TEXT_MODEL = "text-model"  # the base LLM on the text alone (--text-model)
SCOPES = ("question", "universal")
SUFFIXES = {"png": "re-checked from its saved 8-bit PNG", "train": "on its training questions"}

# Table order: groups first, then the run's own order within a group.
GROUPS = ("condition", "optimized", "single-encoder", "other")
GROUP_TITLES = {"condition": "image conditions", "optimized": "optimized inputs",
                "single-encoder": "optimized through one encoder", "other": "other sources"}


@dataclass(frozen=True)
class SourceInfo:
    """One source name, parsed."""

    name: str
    group: str  # one of GROUPS
    input: str | None = None  # features, pixels, tokens ... for optimized inputs
    scope: str | None = None  # question or universal
    encoders: tuple[str, ...] = ()  # single-encoder (or subset) runs
    suffix: str | None = None  # png or train

    @property
    def base(self) -> str:
        """The optimized source a `-png` / `-train` row belongs to (the name itself otherwise)."""
        return self.name[: -len(self.suffix) - 1] if self.suffix else self.name

    @property
    def description(self) -> str:
        if self.group == "condition":
            if self.name == "none":
                return "no image at all (text-only prompt)"
            return "file image" if self.name.startswith("file:") else "image condition"
        if self.name == TEXT_MODEL:
            return "base LLM, text only"
        if self.group == "other":
            return ""
        what = f"{self.input}, {'one per question' if self.scope == 'question' else 'one for all questions'}"
        if self.encoders:
            what += f", through {' + '.join(self.encoders)} only"
        if self.scope == "universal" and not self.suffix:
            what += ", held-out questions"
        return what + (f", {SUFFIXES[self.suffix]}" if self.suffix else "")


def parse_source(name: str) -> SourceInfo:
    """Classify a source name (unknown shapes fall in the `other` group rather than failing)."""
    if name in CONDITION_NAMES or name.startswith("file:"):
        return SourceInfo(name, "condition")
    stem, suffix = name, None
    for s in SUFFIXES:
        if name.endswith(f"-{s}"):
            stem, suffix = name[: -len(s) - 1], s
            break
    parts = stem.split("-")
    if len(parts) < 2 or parts[1] not in SCOPES or not parts[0]:
        return SourceInfo(name, "other")
    encoders = tuple(e for e in "-".join(parts[2:]).split("+") if e)
    return SourceInfo(name, "single-encoder" if encoders else "optimized", parts[0], parts[1], encoders, suffix)


def ordered_sources(names: list[str]) -> list[SourceInfo]:
    """Sources grouped (conditions, optimized inputs, single-encoder runs, others), run order within a group;
    conditions follow the spectrum's order."""
    infos = [parse_source(n) for n in names]

    def key(item: tuple[int, SourceInfo]) -> tuple:
        i, info = item
        rank = SPECTRUM.index(info.name) if info.name in SPECTRUM else len(SPECTRUM)
        return (GROUPS.index(info.group), rank if info.group == "condition" else 0, i)

    return [info for _, info in sorted(enumerate(infos), key=key)]
