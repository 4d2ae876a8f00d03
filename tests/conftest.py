"""Shared fixtures: a private benchmark cache, tiny random demo models built from configs, small benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mirage.benchmarks.question import Benchmark, Question
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
    # the tiny demo models know ShapesQA's words only; the pipeline tests run them on real benchmarks' prompts
    # anyway (tests/cli/test_user_paths.py checks the refusal at the default threshold)
    mp.setenv("MIRAGE_MAX_UNKNOWN_SHARE", "1")
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


SCIENCEQA_FIXTURE = "/work/shared/fixtures/scienceqa/data/test-00000-of-00001.parquet"


@pytest.fixture(scope="session")
def sqa_bench() -> Benchmark:
    """The ScienceQA fixture's image questions, with a prompt made of words the tiny test tokenizers know."""
    import pyarrow.parquet as pq

    rows = pq.read_table(SCIENCEQA_FIXTURE).to_pylist()
    qs = [Question(f"sqa-{i}", r["question"], tuple(r["choices"]), int(r["answer"]), images=(r["image"]["bytes"],))
          for i, r in enumerate(rows) if r["image"]]
    return Benchmark("scienceqa-fixture", "test", qs, lambda q: q.text + " " + " ".join(
        f"{l} . {c}" for l, c in zip(q.letters, q.choices)) + " Answer with the option ' s letter .")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are all per-op overhead: on a shared 2-core machine a second thread only adds waiting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shapes_cli(tmp_path, monkeypatch, tiny_model, small_bench):
    """For command-line tests: `small_bench` as the cached ShapesQA test split (24 questions, not 1,000) and the
    tiny model saved to a directory, which is returned (use it as `demo:DIR`)."""
    import pyarrow.parquet as pq

    from mirage.benchmarks.shapes.dataset import questions_to_table, split_path

    monkeypatch.setenv("MIRAGE_CACHE", str(tmp_path / "cache"))
    path = split_path("test", 0)
    path.parent.mkdir(parents=True)
    pq.write_table(questions_to_table(small_bench.questions), path)
    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_model):
    """The tiny model saved to a directory (use it as `demo:DIR`)."""
    d = tmp_path_factory.mktemp("tiny")
    tiny_model.save_pretrained(d)
    return str(d)


SCIENCEQA_DIR = "/work/shared/fixtures/scienceqa"


def _study_args(model_dir, out) -> list[str]:
    return ["study", "--model", f"demo:{model_dir}", "--benchmark", "shapes,scienceqa", "--data-dir",
            f"scienceqa={SCIENCEQA_DIR}", "--text-model", f"hf:{Path(model_dir).parent / 'lm'}", "--limit", "4", "--steps", "2", "--batch-size", "2", "--device", "cpu",
            "--out", str(out), "-q"]


@pytest.fixture(scope="session")
def study_args():
    """`study_args(model_dir, out)`: `mirage study` on two benchmarks (ShapesQA and the ScienceQA fixture), tiny:
    4 questions, 2 steps, a tiny random causal LM (saved beside the model) as the text model."""
    return _study_args


@pytest.fixture(scope="module")
def study_env(tmp_path_factory, tiny_model, small_bench):
    """A ShapesQA cache whose test split is `small_bench` (MIRAGE_CACHE while the module runs), and the tiny model
    saved: (cache dir, model dir)."""
    import pyarrow.parquet as pq

    from mirage.benchmarks.shapes.dataset import questions_to_table, split_path

    root = tmp_path_factory.mktemp("study-env")
    mp = pytest.MonkeyPatch()
    mp.setenv("MIRAGE_CACHE", str(root / "cache"))
    path = split_path("test", 0)
    path.parent.mkdir(parents=True)
    pq.write_table(questions_to_table(small_bench.questions), path)
    tiny_model.save_pretrained(root / "tiny")
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_model.tokenizer
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
                     ).save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    yield root / "cache", root / "tiny"
    mp.undo()


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, study_env):
    """An uninterrupted tiny study directory (`study_args`), run through the CLI: (directory, CLI output)."""
    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path_factory.mktemp("study") / "study"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(app, _study_args(study_env[1], out))
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    return out, res.output
