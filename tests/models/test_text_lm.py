"""The base LLM for S_t (`--text-model`): a tiny random causal LM saved locally and loaded as `hf:DIR`."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mirage.evaluate import evaluate
from mirage.models import Visual
from mirage.models.demo.tokenizer import build_tokenizer
from mirage.models.text_lm import load_text_model
from mirage.benchmarks.shapes.questions import vocabulary


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    tok = build_tokenizer(vocabulary())
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(
        d := tmp_path_factory.mktemp("lm"))
    tok.save_pretrained(d)
    return d


def test_letter_probabilities_equal_the_lm_forward_on_its_chat_prompt(lm_dir, small_bench):
    lm = load_text_model(f"hf:{lm_dir}", device="cpu")
    qs = small_bench.questions[:4]
    prompts = [small_bench.prompt(q) for q in qs]
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    mine = lm.choice_logits(prompts, Visual.none(), [len(q.choices) for q in qs]).softmax(-1)
    for row, (q, p) in enumerate(zip(qs, prompts)):
        ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                               tokenize=True, return_dict=True, return_tensors="pt")
        full = lm.model(**ids).logits[0, -1, lm.letter_ids(len(q.choices))].softmax(-1)
        torch.testing.assert_close(mine[row, : len(q.choices)], full, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="a text model takes no visual input"):
        lm.choice_logits(prompts, Visual("pixels", torch.zeros(4, 3, 8, 8)), [4] * 4)


def test_text_model_rows_and_s_t_in_the_summary(lm_dir, tiny_model, small_bench, tmp_path):
    lm = load_text_model(f"hf:{lm_dir}", device="cpu")
    res = evaluate(tiny_model, small_bench, "real,none", text_model=lm, out=tmp_path / "run")
    assert res.summary["n"]["text-model"] == len(small_bench)
    blind = res.summary["blind"]
    assert {"S_v", "S_wv", "S_t", "MG", "ML"} <= set(blind)
    assert blind["S_t"]["value"] == res.summary["accuracy"]["text-model"]
    again = evaluate(tiny_model, small_bench, "real,none", text_model=lm, out=tmp_path / "run")  # resumes
    assert again.summary == res.summary


def test_text_model_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="give demo, demo:DIR or hf:"):
        load_text_model("llama")
    with pytest.raises(FileNotFoundError, match="no base LM at .*mirage train-demo-text"):
        load_text_model(f"demo:{tmp_path}")


def test_the_shipped_base_lm_loads_and_reads_the_demo_prompts(small_bench):
    """The demo's base LM ships beside its weights, with the demo's tokenizer (same ids) and LM shape."""
    from mirage.models import load_model

    lm, vlm = load_text_model("demo", device="cpu"), load_model("demo", device="cpu")
    assert lm.tokenizer.get_vocab() == vlm.tokenizer.get_vocab() and lm.letter_ids(4) == vlm.letter_ids(4)
    assert lm.model.config.hidden_size == vlm.lm.config.hidden_size
    qs = small_bench.questions[:8]
    logits = lm.choice_logits([small_bench.prompt(q) for q in qs], Visual.none(), [len(q.choices) for q in qs])
    assert torch.isfinite(logits).all()


def test_soft_prompt_on_the_text_model(lm_dir, small_bench, tmp_path):
    """The soft-prompt control on a base LM: its vectors where the user's content starts in the LM's chat turn
    (after `<bos> <|user|>`); logits equal the LM's forward on those embeddings; an optimization's rows are named
    `-text-model`, and a text model needs --soft-tokens (it has no image tokens to count)."""
    from mirage.errors import UsageError
    from mirage.experiments import OptimizeSpec, run_optimization
    from mirage.models.vlm import SOFT
    from mirage.optimize import OptimizeConfig
    from mirage.runs import RunDir

    lm = load_text_model(f"hf:{lm_dir}", device="cpu")
    qs = small_bench.questions[:3]
    prompts = [small_bench.prompt(q) for q in qs]
    vectors = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(1))
    mine = lm.choice_logits(prompts, Visual(SOFT, vectors), [4] * 3)
    for row, p in enumerate(prompts):
        ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                               tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
        assert lm.tokenizer.convert_ids_to_tokens(ids[0, :2].tolist()) == ["<bos>", "<|user|>"]
        embeds = lm.model.get_input_embeddings()(ids)
        embeds = torch.cat([embeds[:, :2], vectors[row : row + 1], embeds[:, 2:]], 1)
        torch.testing.assert_close(mine[row], lm.model(inputs_embeds=embeds).logits[0, -1, lm.letter_ids(4)],
                                   atol=1e-4, rtol=1e-4)
    run = RunDir.open(tmp_path / "run", {"x": 1})
    with pytest.raises(UsageError, match="give --soft-tokens N"):
        run_optimization(lm, small_bench.subset(2), OptimizeSpec("soft-prompt"), OptimizeConfig(steps=1), run)
    rows = run_optimization(lm, small_bench.subset(4), OptimizeSpec("soft-prompt", soft_tokens=3),
                            OptimizeConfig(steps=2, batch_size=2), run)
    assert {r["source"] for r in rows} == {"soft-prompt-question-text-model"} and len(rows) == 4
