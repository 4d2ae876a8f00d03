"""How the report orders and titles sources; what a source name says is `mirage.sources`'s (the one owner)."""

from __future__ import annotations

from ..sources import SourceInfo, parse_source

# From no information about the image to all of it: the order the spectrum plot walks.
SPECTRUM = ("blank", "noise", "shuffle", "blur", "wrong", "real")

# Table order: groups first, then the run's own order within a group.
GROUPS = ("condition", "optimized", "single-encoder", "other")
GROUP_TITLES = {"condition": "image conditions", "optimized": "optimized inputs",
                "single-encoder": "optimized through one encoder", "other": "other sources"}


def ordered_sources(names: list[str]) -> list[SourceInfo]:
    """Sources grouped (conditions, optimized inputs, single-encoder runs, others), run order within a group;
    conditions follow the spectrum's order."""
    infos = [parse_source(n) for n in names]

    def key(item: tuple[int, SourceInfo]) -> tuple:
        i, info = item
        rank = SPECTRUM.index(info.name) if info.name in SPECTRUM else len(SPECTRUM)
        return (GROUPS.index(info.group), rank if info.group == "condition" else 0, i)

    return [info for _, info in sorted(enumerate(infos), key=key)]


__all__ = ["GROUPS", "GROUP_TITLES", "SPECTRUM", "ordered_sources"]
