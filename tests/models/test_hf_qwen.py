"""Tiny random Qwen2-VL and Qwen2.5-VL models, built from configs and saved locally, through `hf:DIR`."""

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig,
                          Qwen2VLForConditionalGeneration)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mirage.evaluate import evaluate
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.models import Visual, load_model
from mirage.models.hf_qwen import mrope_positions, patchify, window_order
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
WORDS = ("user assistant : . ? , ( ) Answer with the option ' s letter from given choices directly which of these "
         "what is a an").split()


def save_tiny_qwen(d, kind: str) -> str:
    vocab = {t: i for i, t in enumerate([*SPECIAL, *"ABCDEFGHIJ", *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", unk_token="<unk>",
                                  pad_token="<|endoftext|>", additional_special_tokens=SPECIAL[2:])
    tok.chat_template = CHAT
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, bos_token_id=1, eos_token_id=3, pad_token_id=1,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    ids = dict(image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
               vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    if kind == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2)
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **ids))
    else:  # windows of 2 x 2 merge units, so a 112 px image has 4 windows and the order matters
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
                      fullatt_block_indexes=[1])
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen(request, tmp_path_factory):
    d = save_tiny_qwen(tmp_path_factory.mktemp(request.param), request.param)
    return load_model(f"hf:{d}", device="cpu", image_size=112)


@pytest.fixture(scope="module")
def bench(sqa_bench):
    return sqa_bench


def hf_logits(qwen, ids, mask, pixel_values, grids):
    """The model's own forward on our ids: transformers computes the M-RoPE positions itself."""
    kwargs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, image_grid_thw=torch.tensor(grids))
    import inspect
    if "mm_token_type_ids" in inspect.signature(qwen.model.forward).parameters:
        kwargs["mm_token_type_ids"] = (ids == qwen.image_token_id).int()
    return qwen.model(**kwargs).logits[:, -1]


def own_processor(qwen):
    """The model's own Qwen2VLProcessor (chat template, placeholder expansion, tokenizer), without its video part:
    that needs torchvision, which is not installed here, and no video is used."""
    from transformers import Qwen2VLProcessor

    class ImageOnly(Qwen2VLProcessor):
        def check_argument_for_proper_class(self, name, arg):
            return None if name == "video_processor" else super().check_argument_for_proper_class(name, arg)

    return ImageOnly(image_processor=qwen.image_processor, tokenizer=qwen.tokenizer, video_processor=None,
                     chat_template=qwen.tokenizer.chat_template)


def test_letter_probabilities_equal_the_processor_and_forward(qwen, bench):
    """Token ids exactly the processor's `apply_chat_template(tokenize=True)` (Qwen's tokenizer adds no BOS), and
    the letter probabilities equal the model's own forward on the processor's inputs."""
    processor = own_processor(qwen)
    for q in bench.questions[:2]:
        image, prompt, n = q.image().convert("RGB"), bench.prompt(q), len(q.choices)
        turn = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
        inputs = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True,
                                               return_tensors="pt")
        ids, mask, _, _, _ = qwen.prepare([prompt], qwen.visual_from_images([image]))
        assert ids[0].tolist() == inputs["input_ids"][0].tolist()
        letters = qwen.tokenizer.convert_tokens_to_ids(list("ABCDEFGHIJ"[:n]))
        assert qwen.letter_ids(n) == letters  # "<|im_start|>assistant\nA"
        theirs = qwen.model(**inputs).logits[0, -1, letters].softmax(-1)
        mine = qwen.choice_logits([prompt], qwen.visual_from_images([image]), [n])[0].softmax(-1)
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_specs(qwen):
    (spec,) = qwen.encoders
    assert (spec.name, spec.image_size, spec.num_tokens, spec.dim) == ("vision", 112, 64, 32)
    assert qwen.num_image_tokens == 16 and qwen.attn_implementation == "sdpa"


def test_native_resolution_matches_transformers(qwen, bench):
    """Conditions see each image at its own resolution: different token counts per row, same logits as the
    model's forward (which computes M-RoPE positions itself)."""
    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    ids, mask, _, tokens, grids = qwen.prepare(prompts, qwen.visual_from_images([q.image() for q in qs]))
    assert len({g for g in grids}) > 1  # differently shaped images, different grids
    pv, _ = qwen._processor([q.image() for q in qs])
    theirs = hf_logits(qwen, ids, mask, pv, grids)
    torch.testing.assert_close(qwen.lm_logits(ids, mask, tokens, grids)[:, -1], theirs, atol=1e-5, rtol=1e-5)


def test_fixed_resolution_matches_transformers(qwen, bench):
    qs = bench.questions[:2]
    processed = qwen.process_images([q.image() for q in qs])
    assert processed["vision"].shape == (2, 64, 3 * 2 * 14 * 14)
    features = qwen.encode(processed)
    tokens = qwen.connect(features)
    assert features["vision"].shape == (2, 64, 32) and tokens.shape == (2, 16, 32)
    # the merger on our processor-ordered features equals the tower's own output (window order undone for 2.5)
    flat = processed["vision"].reshape(-1, processed["vision"].shape[-1])
    own = qwen.visual(flat, grid_thw=torch.tensor([[1, 8, 8]] * 2)).pooler_output.view(2, 16, -1)
    torch.testing.assert_close(tokens, own)
    prompts = [bench.prompt(q) for q in qs]
    ids, mask, _, t, grids = qwen.prepare(prompts, Visual("processed", processed))
    mine = qwen.choice_logits(prompts, Visual("processed", processed), [len(q.choices) for q in qs])
    theirs = hf_logits(qwen, ids, mask, flat, grids)[:, qwen.letter_ids(4)]
    for row, q in enumerate(qs):
        n = len(q.choices)
        torch.testing.assert_close(mine[row, :n], theirs[row, :n], atol=1e-5, rtol=1e-5)


def test_differentiable_preprocess_matches_processor(qwen, bench):
    imgs = [q.image().convert("RGB") for q in bench.questions[:3]]
    real = qwen.process_images(imgs)["vision"]
    # at the fixed size the twin equals the processor; PIL's resize to it is the only step left to the processor
    px = torch.stack([torch.from_numpy(np.array(im.resize((112, 112), Image.BICUBIC))).permute(2, 0, 1)
                      for im in imgs]).float() / 255
    torch.testing.assert_close(qwen.preprocess(px)["vision"], real, atol=1e-5, rtol=1e-5)
    # from the original sizes, torch's antialiased bicubic is close to PIL's
    for im, r in zip(imgs, real):
        full = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255
        assert (qwen.preprocess(full)["vision"][0] - r).abs().mean() < 0.03
    px.requires_grad_(True)
    qwen.connect(qwen.encode(qwen.preprocess(px))).sum().backward()
    assert px.grad.abs().sum() > 0


def test_patchify_and_window_order_by_hand():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)  # 2x2 patches of 2 px, one merge unit
    rows = patchify(x, patch=2, merge=2, temporal=2)
    assert rows.shape == (2, 4, 3 * 2 * 2 * 2)
    # patch (0, 1) of image 0: channel 0, frame 0 holds pixels (0..1, 2..3); frame 1 repeats it
    assert rows[0, 1, :4].tolist() == [2, 3, 6, 7] and rows[0, 1, 4:8].tolist() == [2, 3, 6, 7]
    # a 4 x 6 grid of units in windows of 2 x 2: windows row by row, units row by row within each
    order = window_order([(1, 8, 12)], merge=2, window=8, patch=2).tolist()
    assert order[:8] == [0, 1, 6, 7, 2, 3, 8, 9] and sorted(order) == list(range(24))
    # a 3 x 3 grid is padded to 4 x 4: the padding is dropped
    assert window_order([(1, 6, 6)], merge=2, window=8, patch=2).tolist() == [0, 1, 3, 4, 2, 5, 6, 7, 8]


def test_mrope_positions_by_hand():
    # left padding, two text tokens, a 2x3 image block (from a 4x6 patch grid), two text tokens
    ids = torch.tensor([[0, 5, 5, 9, 9, 9, 9, 9, 9, 5, 5]])
    mask = torch.tensor([[0] + [1] * 10])
    pos = mrope_positions(ids, mask, 9, [(1, 4, 6)], merge=2)[:, 0, 1:]
    assert pos[0].tolist() == [0, 1, 2, 2, 2, 2, 2, 2, 5, 6]
    assert pos[1].tolist() == [0, 1, 2, 2, 2, 3, 3, 3, 5, 6]
    assert pos[2].tolist() == [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="image placeholders"):
        mrope_positions(ids, mask, 9, [(1, 4, 4)], merge=2)


def test_conditions_and_optimized_inputs_run(qwen, bench, tmp_path):
    res = evaluate(qwen, bench.subset(6), "real,blank,noise", out=tmp_path / "cond")
    assert res.summary["n"]["real"] == 6
    run = RunDir.open(tmp_path / "opt", {"x": 1})
    for spec in (OptimizeSpec("features"), OptimizeSpec("pixels"), OptimizeSpec("features", scope="universal",
                                                                                train=3)):
        rows = run_optimization(qwen, bench.subset(5), spec, OptimizeConfig(steps=3, batch_size=2), run)
        assert {r["source"] for r in rows} >= {spec.source}
    # the saved PNGs are re-checked through the processor at native resolution: the fixed size survives it
    assert {r["source"] for r in run.rows()} >= {"pixels-question-png"}
    assert qwen.generate([bench.prompt(bench.questions[0])], qwen.visual_from_images([bench.questions[0].image()]), 3)


def test_image_size_must_fit_the_patch_grid(tmp_path):
    d = save_tiny_qwen(tmp_path, "qwen2_vl")
    with pytest.raises(ValueError, match="image_aspect_ratio applies to LLaVA-1.5, not to 'qwen2_vl'"):
        load_model(f"hf:{d}", device="cpu", image_aspect_ratio="pad")
    with pytest.raises(ValueError, match="image_size 100: .* multiple of 28 \\(e.g. 84 or 112\\)"):
        load_model(f"hf:{d}", device="cpu", image_size=100)
    m = load_model(f"hf:{d}", device="cpu", image_size=28 * 10)  # 280 px: above the processor's 64-unit bound
    with pytest.raises(ValueError, match="choose a size within its pixel bounds"):
        m.process_images([Image.new("RGB", (50, 50))])


def test_cli_passes_model_options_and_refuses_misplaced_ones(tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app

    d = save_tiny_qwen(tmp_path / "m", "qwen2_vl")
    base = ["eval", "--benchmark", "scienceqa", "--data-dir", "/work/shared/fixtures/scienceqa", "--limit", "2",
            "--conditions", "real", "--device", "cpu", "-q"]
    ok = CliRunner().invoke(app, [*base, "--model", f"hf:{d}", "--image-size", "112", "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    cfg = __import__("json").loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["image_size"] == 112 and cfg["environment"]["attn_implementation"] == "sdpa"
    bad = CliRunner().invoke(app, [*base, "--model", "demo", "--image-size", "112", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "model 'demo' takes no option image_size" in bad.output


def test_none_is_the_text_only_prompt_through_transformers(qwen, bench):
    """`none`: the chat template's text-only turn, no vision tokens, no pixel values; letter probabilities equal
    transformers' own forward (its own text-only positions), question by question, while mirage left-pads a batch."""
    from mirage.models.chat import image_turn

    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    ids, _, _, tokens, _ = qwen.prepare(prompts, Visual.none())
    assert tokens is None and not (ids == qwen.image_token_id).any()
    mine = qwen.choice_logits(prompts, Visual.none(), [len(q.choices) for q in qs]).softmax(-1)
    for row, (q, p) in enumerate(zip(qs, prompts)):
        ids = qwen.tokenizer.apply_chat_template(image_turn(p, image=False), add_generation_prompt=True,
                                                 tokenize=True, return_dict=True, return_tensors="pt")
        assert "<|vision_start|>" not in qwen.tokenizer.decode(ids["input_ids"][0])
        full = qwen.model(**ids).logits[0, -1, qwen.letter_ids(len(q.choices))].float().softmax(-1)
        torch.testing.assert_close(mine[row, : len(q.choices)], full, atol=1e-4, rtol=1e-4)
    real = qwen.choice_logits(prompts, qwen.visual_from_images([q.image() for q in qs]), [4] * 3)
    assert not torch.allclose(real.softmax(-1), mine, atol=1e-3)
    assert evaluate(qwen, bench.subset(3), "none").summary["n"]["none"] == 3


def test_generate_with_the_key_value_cache_equals_recomputing_the_prefix(qwen, bench, monkeypatch):
    """Captions (`caption:self`, 128 tokens) keep the LM's cache: the prompt once, then one token a step at M-RoPE
    position last + 1 on all three axes. Native images of different sizes (rows with different grids and token
    counts), the fixed size, and text only: the same tokens and hidden states as recomputing the prefix."""
    from cached_generation import assert_cached_generation

    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    assert len({q.image().size for q in qs}) > 1
    assert_cached_generation(qwen, prompts, lambda rows: qwen.visual_from_images([qs[i].image() for i in rows]),
                             monkeypatch, texts=False)
    pixels = torch.rand(3, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    assert_cached_generation(qwen, prompts, lambda rows: Visual("pixels", pixels[rows]), monkeypatch, texts=False)
    assert_cached_generation(qwen, prompts, lambda rows: Visual.none(), monkeypatch, texts=False)
