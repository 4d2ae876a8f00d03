"""Seeds derived from names: every random draw in mirage is keyed by (purpose, seed, question id ...), so any
subset, order, batch size or resume draws the same numbers."""

from __future__ import annotations

import hashlib

import torch


def seed_for(*parts: object) -> int:
    """A stable 64-bit seed from `parts` (their str forms); unlike hash(), the same in every process."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def generator_for(*parts: object) -> torch.Generator:
    """A CPU torch generator seeded by `seed_for(*parts)`."""
    return torch.Generator().manual_seed(seed_for(*parts) % 2**63)
