"""A tiny random Qwen3-VL (16 px patches, DeepStack features added into the first LM layers) through `hf:DIR`."""

import pytest
import torch
from PIL import Image
from tiny_hf import to_tensor, word_tokenizer
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mirage.evaluate import evaluate
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.models import Visual, load_model
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]


def save_tiny_qwen3(d) -> str:
    tok, vocab = word_tokenizer(SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                additional_special_tokens=SPECIAL[2:])
    tok.chat_template = CHAT
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16, pad_token_id=1,
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                  num_position_embeddings=16, deepstack_visual_indexes=[0, 1])
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"]))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    Qwen2VLImageProcessorPil(patch_size=16, min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 64).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory, one_thread):
    return load_model(f"hf:{save_tiny_qwen3(tmp_path_factory.mktemp('qwen3'))}", device="cpu", image_size=128)


@pytest.fixture(scope="module")
def bench(sqa_bench):
    return sqa_bench


def hf_logits(qwen3, ids, mask, pixel_values, grids):
    """The model's own forward on our ids (it computes M-RoPE positions and DeepStack itself)."""
    return qwen3.model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values,
                       image_grid_thw=torch.tensor(grids), mm_token_type_ids=(ids == qwen3.image_token_id).int()
                       ).logits[:, -1]


def test_specs(qwen3):
    # 128 px: an 8 x 8 grid of 16 px patches, 4 x 4 tokens; DeepStack after vision blocks 0 and 1
    assert [s.name for s in qwen3.encoders] == ["vision", "deepstack0", "deepstack1"]
    assert all((s.image_size, s.num_tokens, s.dim) == (128, 64, 32) for s in qwen3.encoders)
    assert qwen3.num_image_tokens == 16


def test_real_condition_equals_the_models_own_forward(qwen3, bench):
    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    ids, mask, _, tokens, grids = qwen3.prepare(prompts, qwen3.visual_from_images([q.image() for q in qs]))
    assert len(set(grids)) > 1 and tokens.shape[-1] == 3 * 32  # native grids; merger + 2 DeepStack mergers
    pv, _ = qwen3._processor([q.image() for q in qs])
    torch.testing.assert_close(qwen3.lm_logits(ids, mask, tokens, grids)[:, -1],
                               hf_logits(qwen3, ids, mask, pv, grids), atol=1e-4, rtol=1e-4)
    # DeepStack matters: without it the logits differ
    plain = qwen3.lm_logits(ids, mask, torch.cat([tokens[:, :32], 0 * tokens[:, 32:]], -1), grids)[:, -1]
    assert (plain - hf_logits(qwen3, ids, mask, pv, grids)).abs().max() > 1e-3


def test_fixed_size_twin_stages_and_gradients(qwen3, bench):
    imgs = [q.image().convert("RGB").resize((128, 128), Image.BICUBIC) for q in bench.questions[:2]]
    processed = qwen3.process_images(imgs)
    px = torch.cat([to_tensor(im) for im in imgs])
    torch.testing.assert_close(qwen3.preprocess(px)["vision"], processed["vision"], atol=1e-5, rtol=1e-5)
    tokens = qwen3.connect(qwen3.encode(processed))
    flat = processed["vision"].reshape(-1, processed["vision"].shape[-1])
    own = qwen3.inner.get_image_features(flat, torch.tensor([[1, 8, 8]] * 2))
    torch.testing.assert_close(tokens, torch.cat([torch.cat(own.pooler_output),
                                                  *[torch.cat(f) for f in own.deepstack_features]], -1).view(2, 16, -1))
    q = bench.questions[0]
    ids, mask, _, t, grids = qwen3.prepare([bench.prompt(q)], Visual("processed", {"vision": processed["vision"][:1]}))
    mine = qwen3.choice_logits([bench.prompt(q)], Visual("processed", {"vision": processed["vision"][:1]}),
                               [len(q.choices)])[0]
    theirs = hf_logits(qwen3, ids, mask, flat[:64], grids)[0, qwen3.letter_ids(len(q.choices))]
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    px.requires_grad_(True)
    qwen3.answer_loss([bench.prompt(q)] * 2, Visual("pixels", px), ["A", "B"]).sum().backward()
    assert px.grad.abs().sum() > 0


def test_conditions_and_optimized_inputs_run(qwen3, bench, tmp_path):
    assert evaluate(qwen3, bench.subset(3), "real,blank", out=tmp_path / "cond").summary["n"]["real"] == 3
    run = RunDir.open(tmp_path / "opt", {"x": 1})
    for spec in (OptimizeSpec("features"), OptimizeSpec("pixels"), OptimizeSpec("tokens"),
                 OptimizeSpec("pixels", scope="universal", train=2)):
        rows = run_optimization(qwen3, bench.subset(4), spec, OptimizeConfig(steps=2, batch_size=2), run)
        assert {r["source"] for r in rows} >= {spec.source}
    assert {r["source"] for r in run.rows()} >= {"pixels-question-png", "pixels-universal-png"}


def test_image_size_must_fit_the_16px_patches(tmp_path):
    with pytest.raises(ValueError, match="image_size 112: .* multiple of 32 \\(e.g. 96 or 128\\)"):
        load_model(f"hf:{save_tiny_qwen3(tmp_path)}", device="cpu", image_size=112)


def test_generate_with_the_key_value_cache_equals_recomputing_the_prefix(qwen3, bench, monkeypatch):
    """The prompt once with DeepStack at its image slots, then one plain token a step: the same tokens and hidden
    states as recomputing the prefix, on native images of different sizes. (Text only is Qwen2-VL's path, tested
    there: this tiny model's first text-only answer token is the image placeholder, which recomputing cannot take.)"""
    from cached_generation import assert_cached_generation

    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    assert_cached_generation(qwen3, prompts, lambda rows: qwen3.visual_from_images([qs[i].image() for i in rows]),
                             monkeypatch, texts=False)
