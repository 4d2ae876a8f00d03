"""Shared fixtures: a private benchmark cache, tiny random demo models built from configs, small benchmarks."""

from __future__ import annotations

import pytest
import torch

from mirage.benchmarks.question import Benchmark
from mirage.benchmarks.shapes import generate_questions
from mirage.benchmarks.shapes.questions import vocabulary
from mirage.models.demo.config import DemoConfig
from mirage.models.demo.modeling import DemoVLM
from mirage.models.demo.tokenizer import build_tokenizer


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Generated splits go to a per-session folder, never the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MIRAGE_CACHE", str(tmp_path_factory.mktemp("mirage-cache")))
    yield
    mp.undo()


def tiny_config(vocab_size: int) -> DemoConfig:
    """The demo architecture (same encoders, input sizes, token grids) at toy widths."""
    cfg = DemoConfig(vocab_size=vocab_size, sva_dim=32, sva_layers=1, sva_heads=2)
    for name in ("clip", "siglip", "dino"):
        c = cfg.encoders[name]["config"]
        c.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
        c.pop("intermediate_size", None) if name == "dino" else c.update(intermediate_size=64)
    cfg.encoders["convnext"]["config"].update(hidden_sizes=[16], depths=[1])
    cfg.lm.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1)
    return cfg


@pytest.fixture(scope="session")
def tiny_model() -> DemoVLM:
    torch.manual_seed(0)
    tok = build_tokenizer(vocabulary())
    return DemoVLM(tiny_config(len(tok)), tok).eval()


@pytest.fixture(scope="session")
def small_bench() -> Benchmark:
    """The first 24 ShapesQA test questions, generated in memory."""
    return Benchmark("shapes", "test", generate_questions("test", 0, 24))
