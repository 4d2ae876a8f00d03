"""The generic transformers path on tiny random models of each family, saved with tokenizer, processor and chat
template and loaded through `hf:DIR`: LLaVA-NeXT and LLaVA-OneVision (anyres tiles, unpadding, newline tokens; the
OneVision processor saved and loaded without its video part, no torchvision here), Gemma 3 (pooling projector,
bidirectional image attention), PaliGemma (no chat template, prefix LM)."""

import functools
import importlib.util

import pytest
import torch
from PIL import Image
from tiny_hf import ONEVISION, to_tensor, word_tokenizer
from transformers import (CLIPVisionConfig, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor,
                          Gemma3TextConfig, GemmaConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                          LlavaNextProcessor, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                          LlavaOnevisionProcessor, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                          PaliGemmaProcessor, Qwen2Config, SiglipVisionConfig)
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, Idefics3VisionConfig
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor, InternVLVisionConfig
from transformers import LlavaProcessor, VipLlavaConfig, VipLlavaForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from mirage.evaluate import evaluate
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.models import Visual, load_model
from mirage.models.hf_generic import image_only
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

MISTRAL = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {% for c in m['content'] %}"
           "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} [/INST]{% else %}"
           "{{ m['content'][0]['text'] }}{{ eos_token }}{% endif %}{% endfor %}")
QWEN = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
         "{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}"
         "{% endfor %}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
IDEFICS = ("<|begin_of_text|>{% for m in messages %}{{ m['role'] | capitalize }}"
           "{% if m['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}{% for c in m['content'] %}"
           "{% if c['type'] == 'text' %}{{ c['text'] }}{% elif c['type'] == 'image' %}{{ '<image>' }}{% endif %}"
           "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
IDEFICS_TOKENS = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
                  *(f"<row_{i}_col_{j}>" for i in (1, 2) for j in (1, 2))]
GRID = [[32, 64], [64, 32], [64, 64]]
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
              patch_size=8)


def save_tiny(d, kind: str) -> str:
    torch.manual_seed(0)
    if kind == "llava_next":
        tok, vocab = word_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>", "[INST]", "[/INST]"], bos_token="<s>",
                                    eos_token="</s>", pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
        ip = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                        image_grid_pinpoints=GRID)
        processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=MISTRAL,
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1)
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(
            vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(vocab_size=len(vocab), pad_token_id=3,
                                                                              **TEXT),
            image_token_id=4, image_grid_pinpoints=GRID, vision_feature_layer=-2))
    elif kind == "gemma3":  # a 4 x 4 patch grid pooled to 2 x 2 tokens
        tok, vocab = word_tokenizer(["<unk>", "<bos>", "<eos>", "<pad>", "<start_of_image>", "<end_of_image>",
                                     "<image_soft_token>", "<start_of_turn>", "<end_of_turn>"], bos_token="<bos>",
                                    eos_token="<eos>", pad_token="<pad>", extra_special_tokens={
                                        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                        "image_token": "<image_soft_token>"})
        ip = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
        processor = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA, image_seq_length=4)
        model = Gemma3ForConditionalGeneration(Gemma3Config(
            vision_config=SiglipVisionConfig(**VISION), mm_tokens_per_image=4, image_token_id=6, boi_token_index=4,
            eoi_token_index=5, text_config=Gemma3TextConfig(vocab_size=len(vocab), head_dim=16, pad_token_id=3,
                                                            sliding_window=512, **TEXT)))
        with torch.no_grad():  # initialised to zeros: every image would give the same (zero) tokens
            model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.2)
    elif kind == "paligemma":  # no chat template: image tokens, BOS, the prompt, a newline
        tok, vocab = word_tokenizer(["<unk>", "<bos>", "<eos>", "<pad>", "<image>"], bos_token="<bos>",
                                    eos_token="<eos>", pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
        ip = SiglipImageProcessorPil(size={"height": 32, "width": 32})
        ip.image_seq_length = 16
        processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
        model = PaliGemmaForConditionalGeneration(PaliGemmaConfig(
            vision_config=SiglipVisionConfig(**VISION), image_token_id=4, projection_dim=32,
            text_config=GemmaConfig(vocab_size=len(tok), head_dim=16, pad_token_id=3, **TEXT)))
    elif kind == "idefics3":  # 64 px: 2 x 2 tiles of 32 px and the global image, 16 patches shuffled to 4 tokens each
        tok, vocab = word_tokenizer(["<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<pad>", *IDEFICS_TOKENS],
                                    bos_token="<|begin_of_text|>", eos_token="<end_of_utterance>", pad_token="<pad>",
                                    additional_special_tokens=IDEFICS_TOKENS)
        ip = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
        processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS)
        model = Idefics3ForConditionalGeneration(Idefics3Config(
            vision_config=Idefics3VisionConfig(**VISION), scale_factor=2, image_token_id=vocab["<image>"],
            text_config=LlamaConfig(vocab_size=len(vocab), pad_token_id=3, **TEXT)))
    elif kind == "internvl":  # 64 px: 2 x 2 tiles of 32 px and the thumbnail, 16 patches shuffled to 4 tokens each
        tok, vocab = word_tokenizer(["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                                     "<IMG_CONTEXT>", "<video>"], eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                    extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                                          "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
        ip = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32})
        processor = image_only(InternVLProcessor)(image_processor=ip, tokenizer=tok, image_seq_length=4,
                                                  chat_template=QWEN.replace("<image>", "<IMG_CONTEXT>"))
        model = InternVLForConditionalGeneration(InternVLConfig(
            vision_config=InternVLVisionConfig(**{**VISION, "image_size": (32, 32), "patch_size": (8, 8)}),
            text_config=Qwen2Config(vocab_size=len(vocab), pad_token_id=1, **TEXT), image_token_id=6,
            image_seq_length=4))
    elif kind == "vipllava":  # no family piece: the generic path probes which layers its projector reads
        tok, vocab = word_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], bos_token="<s>", eos_token="</s>",
                                    pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
        ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=MISTRAL,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
        model = VipLlavaForConditionalGeneration(VipLlavaConfig(
            vision_config=CLIPVisionConfig(**{**VISION, "num_hidden_layers": 3}), image_token_id=4,
            text_config=LlamaConfig(vocab_size=len(vocab), pad_token_id=3, **TEXT), vision_feature_layers=[-2, 1]))
    else:
        tok, vocab = word_tokenizer(["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                                    eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                    extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})
        ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=GRID)
        processor = image_only(LlavaOnevisionProcessor)(image_processor=ip, tokenizer=tok, num_image_tokens=16,
                                                        vision_feature_select_strategy="full", chat_template=ONEVISION)
        model = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(
            vision_config=SiglipVisionConfig(**VISION), text_config=Qwen2Config(vocab_size=len(vocab), pad_token_id=1,
                                                                                **TEXT),
            image_token_id=4, video_token_id=5, image_grid_pinpoints=GRID, vision_feature_layer=-1,
            vision_feature_select_strategy="full"))
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return str(d)


# family -> fixed size, (features T, D), image tokens, the twin's exact part (where the processor does not resample)
EXPECT = {
    # 64 px: the 2 x 2 grid of 32 px tiles plus the base image, 16 tokens each; tokens: the base, the unpadded
    # 8 x 8 grid, a newline per row. The base is a 64 -> 32 resize: the one inexact part.
    "llava_next": (64, (5 * 16, 32), 16 + 8 * 8 + 8, lambda t: t[:, 1:]),
    "llava_onevision": (64, (5 * 16, 32), 16 + 8 * 8 + 8, lambda t: t[:, 1:]),
    "gemma3": (32, (16, 32), 4, lambda t: t),  # 16 patches average-pooled to 4 tokens
    "paligemma": (32, (16, 32), 16, lambda t: t),
    # the tiles are the image itself; the global image is a LANCZOS 64 -> 32 resize (the twin: antialiased bicubic)
    "idefics3": (64, (5 * 16, 32), 5 * 4, lambda t: t[:, :-1]),
    "internvl": (64, (5 * 16, 32), 5 * 4, lambda t: t[:, :-1]),  # the thumbnail: a 64 -> 32 bicubic resize
    "vipllava": (32, (16, 2 * 32), 16, lambda t: t),  # two layers' states concatenated, CLS dropped
}


@pytest.fixture(scope="module", params=list(EXPECT))
def vlm(request, tmp_path_factory, one_thread):
    return load_model(f"hf:{save_tiny(tmp_path_factory.mktemp(request.param), request.param)}", device="cpu")


@pytest.fixture(scope="module")
def bench(sqa_bench):
    return sqa_bench


def test_fixed_size_and_specs(vlm):
    size, shape, n, _ = EXPECT[vlm.kind]
    (spec,) = vlm.encoders
    assert vlm.image_size == size and (spec.image_size, spec.num_tokens, spec.dim) == (size, *shape)
    assert vlm.num_image_tokens == n


def test_real_condition_equals_the_models_own_forward(vlm, bench):
    """Native resolution: the processor's ids and pixels, the model's forward: our letter logits equal it."""
    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    ours = vlm.choice_logits(prompts, vlm.visual_from_images([q.image() for q in qs]), [len(q.choices) for q in qs])
    for row, (p, q) in enumerate(zip(prompts, qs)):
        inputs = vlm._chat_inputs(p, q.image())
        assert inputs["input_ids"][0].tolist().count(vlm.tokenizer.bos_token_id or -1) <= 1  # BOS once
        theirs = vlm.model(**inputs).logits[0, -1, vlm.letter_ids(len(q.choices))]
        torch.testing.assert_close(ours[row, : len(q.choices)], theirs, atol=1e-4, rtol=1e-4)


def test_twin_equals_the_processor_at_the_fixed_size(vlm, bench):
    size, _, _, exact = EXPECT[vlm.kind]
    imgs = [q.image().convert("RGB").resize((size, size), Image.BICUBIC) for q in bench.questions[:3]]
    real = vlm.process_images(imgs)["vision"]
    twin = vlm.preprocess(torch.cat([to_tensor(im) for im in imgs]))["vision"]
    assert twin.shape == real.shape
    # exact where the processor does not resample; a resize is torch's antialiased filter against PIL's
    torch.testing.assert_close(exact(twin), exact(real), atol=1e-5, rtol=0)
    assert (twin - real).abs().mean() < 0.01 and (twin - real).abs().max() < 0.15  # LANCZOS: ~16/255 at most
    # our stages at the fixed size equal the model's get_image_features on the same pixels, and so do the logits
    tokens = vlm.connect(vlm.encode({"vision": real}))
    extra = {"image_sizes": torch.tensor([[size, size]] * 3)} if hasattr(vlm.family, "grid") else {}
    if vlm.kind == "internvl":  # the model takes every image's tiles flat
        own = vlm.inner.get_image_features(pixel_values=real.flatten(0, 1)).pooler_output.reshape(tokens.shape)
    else:
        own = torch.stack(list(vlm.inner.get_image_features(pixel_values=real, **extra).pooler_output))
    torch.testing.assert_close(tokens, own)
    q = bench.questions[0]
    inputs = vlm._chat_inputs(bench.prompt(q), imgs[0])
    theirs = vlm.model(**inputs).logits[0, -1, vlm.letter_ids(len(q.choices))]
    mine = vlm.choice_logits([bench.prompt(q)], Visual("processed", {"vision": real[:1]}), [len(q.choices)])[0]
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_gradients_reach_the_pixels(vlm, bench):
    px = torch.rand(2, 3, vlm.image_size, vlm.image_size, requires_grad=True)
    q = bench.questions[0]
    loss = vlm.answer_loss([bench.prompt(q)] * 2, Visual("pixels", px), ["A", "B"]).sum()
    loss.backward()
    assert px.grad.abs().sum() > 0 and torch.isfinite(px.grad).all()


def test_conditions_and_optimized_inputs_run(vlm, bench, tmp_path):
    res = evaluate(vlm, bench.subset(4), "real,blank,noise", out=tmp_path / "cond")
    assert res.summary["n"]["real"] == 4
    env = __import__("json").loads((tmp_path / "cond" / "config.json").read_text())["environment"]
    assert env["image_size"] == vlm.image_size and env["fixed_layout"]["family"] == type(vlm.family).__name__
    assert ("documented" in env["prompt_format"]) == (vlm.kind == "paligemma")
    run = RunDir.open(tmp_path / "opt", {"x": 1})
    for spec in (OptimizeSpec("features"), OptimizeSpec("pixels"), OptimizeSpec("pixels", scope="universal", train=2)):
        rows = run_optimization(vlm, bench.subset(4), spec, OptimizeConfig(steps=2, batch_size=2), run)
        assert {r["source"] for r in rows} >= {spec.source}
    # the PNGs are re-checked through the native path
    assert {r["source"] for r in run.rows()} >= {"pixels-question-png", "pixels-universal-png"}
    assert not any(p.requires_grad or p.grad is not None for p in vlm.parameters())
    q = bench.questions[0]  # greedy answers: the prompt's attention rules hold for the generated tokens too
    inputs = vlm._chat_inputs(bench.prompt(q), q.image())
    theirs = vlm.model.generate(**inputs, max_new_tokens=3, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    assert vlm.generate([bench.prompt(q)], vlm.visual_from_images([q.image()]), 3) == \
        [vlm.tokenizer.decode(theirs, skip_special_tokens=True).strip()]


def test_a_cross_attention_model_is_refused_by_name(tmp_path, bench):
    """Llama-3.2-Vision (mllama) reads images through cross-attention layers: conditions run through its processor,
    optimization is refused saying why, and so is a fixed image size."""
    from transformers import (MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor, MllamaTextConfig,
                              MllamaVisionConfig)
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    from mirage.models.hf_processor import NotSupportedYet

    tok, vocab = word_tokenizer(["<unk>", "<|begin_of_text|>", "<|eot_id|>", "<pad>", "<|image|>", "<|python_tag|>"],
                                bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<pad>",
                                extra_special_tokens={"image_token": "<|image|>"})
    ip = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2)
    MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=QWEN.replace("<image>", "<|image|>")) \
        .save_pretrained(tmp_path)
    torch.manual_seed(0)
    MllamaForConditionalGeneration(MllamaConfig(
        vision_config=MllamaVisionConfig(hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
                                         intermediate_size=64, vision_output_dim=64, image_size=32, patch_size=8,
                                         max_num_tiles=2, intermediate_layers_indices=[0],
                                         supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]]),
        text_config=MllamaTextConfig(vocab_size=len(vocab), cross_attention_layers=[1], pad_token_id=3, **TEXT),
        image_token_index=4)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="image_size applies to .*'mllama' is not: .*cross-attention"):
        load_model(f"hf:{tmp_path}", device="cpu", image_size=64)
    model = load_model(f"hf:{tmp_path}", device="cpu")
    assert evaluate(model, bench.subset(2), "real").summary["n"]["real"] == 2
    with pytest.raises(NotSupportedYet, match="mllama.*cross-attention layers inside the LM.*no `tokens`"):
        run_optimization(model, bench.subset(2), OptimizeSpec("pixels"), OptimizeConfig(steps=1),
                         RunDir.open(tmp_path / "run", {"x": 1}))


def test_a_model_outside_the_families_is_probed_or_refused_naming_the_probe(tmp_path, monkeypatch):
    """VipLLaVA has no family piece: the probe finds the layers its projector reads. When the model's own image
    features are something else, the probe fails and optimization is refused saying which step did not fit."""
    from transformers.models.vipllava.modeling_vipllava import VipLlavaModel

    from mirage.models.hf_families import Probed
    from mirage.models.hf_processor import NotSupportedYet, ProcessorVLM

    d = save_tiny(tmp_path / "vip", "vipllava")
    vlm = load_model(f"hf:{d}", device="cpu")
    assert type(vlm.family) is Probed and (vlm.family.layer, vlm.family.drop) == ([-2, 1], True)
    own = VipLlavaModel.get_image_features

    @functools.wraps(own)
    def doubled(self, *args, **kwargs):
        out = own(self, *args, **kwargs)
        out.pooler_output = out.pooler_output * 2
        return out

    monkeypatch.setattr(VipLlavaModel, "get_image_features", doubled)
    refused = load_model(f"hf:{d}", device="cpu")
    assert isinstance(refused, ProcessorVLM)
    with pytest.raises(NotSupportedYet, match="vipllava.*get_image_features is not the vision tower's"):
        refused.preprocess(torch.zeros(1, 3, 32, 32))


def test_processors_with_a_video_part_load_without_torchvision(tmp_path):
    """LLaVA-OneVision's full processor wants its video processor (torchvision, absent here): `hf:DIR` builds it from
    the saved image processor, tokenizer and settings, and its prompt is the processor's own."""
    from transformers import AutoProcessor

    d = save_tiny(tmp_path, "llava_onevision")
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(Exception):  # the video processor's classes are missing
            AutoProcessor.from_pretrained(d)
    vlm = load_model(f"hf:{d}", device="cpu")
    assert not hasattr(vlm.processor, "video_processor") and vlm.processor.num_image_tokens == 16
    assert vlm.chat_text("x").startswith("<|im_start|>user <image>\nx<|im_end|>")


def test_cli_optimizes_a_generic_family_at_its_image_size(tmp_path):
    """`mirage optimize --model hf:DIR --image-size`: pixels at the fixed size, re-checked from the PNG at native
    resolution, the layout recorded in the run's config."""
    import json

    from typer.testing import CliRunner

    from mirage.cli import app

    d = save_tiny(tmp_path / "m", "gemma3")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["optimize", "--model", f"hf:{d}", "--image-size", "64", "--input", "pixels",
                                   "--benchmark", "scienceqa", "--data-dir", "/work/shared/fixtures/scienceqa",
                                   "--limit", "2", "--steps", "2", "--device", "cpu", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["image_size"] == 64 and cfg["environment"]["fixed_layout"]["family"] == "Gemma3"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rows} >= {"pixels-question", "pixels-question-png"}

