"""A tiny random LLaVA-1.5, built from configs and saved locally, through `hf:DIR` (no downloads)."""

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          LlavaProcessor, PreTrainedTokenizerFast)

from mirage.evaluate import evaluate
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.models import Visual, load_model
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

CHAT = ("{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    words = "USER ASSISTANT : . ? , ( ) Answer with the option ' s letter from given choices directly which of these what is a an".split()
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", "<image>", *"ABCDEFGHIJ", *words])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                               chat_template=CHAT, image_token="<image>", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, pad_token_id=3),
        image_token_id=4, vision_feature_layer=-2, vision_feature_select_strategy="default")
    d = tmp_path_factory.mktemp("llava")
    LlavaForConditionalGeneration(config).save_pretrained(d)
    processor.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def llava(llava_dir):
    return load_model(f"hf:{llava_dir}", device="cpu")


@pytest.fixture(scope="module")
def bench(sqa_bench):
    return sqa_bench


def test_stages_and_specs(llava):
    (spec,) = llava.encoders
    assert (spec.name, spec.image_size, spec.num_tokens, spec.dim) == ("vision", 32, 16, 32)
    assert llava.attn_implementation == "sdpa" and llava.name_or_path.startswith("hf:")


def test_differentiable_preprocess_matches_processor(llava, bench):
    imgs = [q.image() for q in bench.questions[:4]]
    assert len({im.size for im in imgs}) > 1  # real, differently shaped images
    real = llava.process_images(imgs)["vision"]
    for im, r in zip(imgs, real):
        px = torch.from_numpy(__import__("numpy").array(im)).permute(2, 0, 1)[None].float() / 255
        diff = llava.preprocess(px)["vision"][0]
        assert diff.shape == r.shape and (diff - r).abs().mean() < 0.02 and (diff - r).abs().max() < 0.5


def test_features_and_logits_agree_with_transformers(llava, bench):
    q = bench.questions[0]
    processed = llava.process_images([q.image()])
    ours = llava.connect(llava.encode(processed))
    theirs = llava.inner.get_image_features(pixel_values=processed["vision"], vision_feature_layer=-2,
                                            vision_feature_select_strategy="default").pooler_output[0]
    torch.testing.assert_close(ours[0], theirs)
    text = llava.chat_text(bench.prompt(q))
    inputs = llava.processor(text=[text], images=[q.image()], return_tensors="pt")
    full = llava.model(**inputs).logits[0, -1]
    mine = llava.choice_logits([bench.prompt(q)], Visual("processed", processed), [len(q.choices)])[0]
    torch.testing.assert_close(mine, full[llava.letter_ids(len(q.choices))].float(), atol=1e-4, rtol=1e-4)


def test_conditions_and_optimized_inputs_run(llava, bench, tmp_path):
    res = evaluate(llava, bench, "real,blank,noise,shuffle", out=tmp_path / "cond")
    assert res.summary["n"]["real"] == len(bench)
    run = RunDir.open(tmp_path / "opt", {"x": 1})
    for spec in (OptimizeSpec("features"), OptimizeSpec("pixels"), OptimizeSpec("tokens"),
                 OptimizeSpec("pixels", scope="universal", train=3)):
        rows = run_optimization(llava, bench.subset(5), spec, OptimizeConfig(steps=3, batch_size=2), run)
        assert {r["source"] for r in rows} >= {spec.source}
    assert len(list((run.artifacts_dir / "pixels-question").glob("*.png"))) == 5
    # inputs are optimized, the model is not: no weight gradient was computed or kept
    assert not any(p.requires_grad or p.grad is not None for p in llava.parameters())


def test_unsupported_model_type_says_what_is_missing(tmp_path):
    from transformers import LlamaForCausalLM
    LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                 num_attention_heads=1)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model type 'llama' is not an image-text-to-text model"):
        load_model(f"hf:{tmp_path}", device="cpu")


def test_processor_path_agrees_with_the_llava_backend(llava, llava_dir, bench):
    """The generic backend (processor + the model's own forward), used for models mirage has no stages for, scores
    exactly as the LLaVA backend does, and says what optimization would need."""
    from transformers import AutoProcessor

    from mirage.models.hf_processor import NotSupportedYet, ProcessorVLM

    generic = ProcessorVLM(llava.model, AutoProcessor.from_pretrained(llava_dir), "hf:tiny")
    qs = bench.questions[:3]
    prompts, n = [bench.prompt(q) for q in qs], [len(q.choices) for q in qs]
    ours = generic.choice_logits(prompts, generic.visual_from_images([q.image() for q in qs]), n)
    theirs = llava.choice_logits(prompts, llava.visual_from_images([q.image() for q in qs]), n)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert generic.letter_ids(4) == llava.letter_ids(4)
    res = evaluate(generic, bench, "real,blank")
    assert res.summary["n"]["blank"] == len(bench)
    with pytest.raises(NotSupportedYet, match="differentiable preprocessing.*llava, qwen2_vl"):
        generic.preprocess(torch.zeros(1, 3, 32, 32))


def test_image_size_option_is_refused_for_llava(llava_dir):
    with pytest.raises(ValueError, match="image_size applies to the Qwen2-VL family"):
        load_model(f"hf:{llava_dir}", device="cpu", image_size=448)


def test_memory_switches_on_a_transformers_vlm(llava_dir, bench, tmp_path):
    """Gradient checkpointing reaches a transformers VLM's LM and tower (the same answers); offloading says it does
    not apply."""
    from mirage.experiments import apply_switches

    plain, ckpt = load_model(f"hf:{llava_dir}", device="cpu"), load_model(f"hf:{llava_dir}", device="cpu")
    apply_switches(ckpt, OptimizeSpec("pixels"), grad_checkpointing=True)
    assert ckpt.inner.language_model.gradient_checkpointing
    cfg = OptimizeConfig(steps=3, batch_size=2, early_stop=0)
    rows = [run_optimization(m, bench.subset(2), OptimizeSpec("pixels"), cfg, RunDir.open(tmp_path / n, {"x": 1}))
            for m, n in ((plain, "a"), (ckpt, "b"))]
    probs = [[p for r in sorted(rs, key=lambda r: (r["source"], r["question_id"])) for p in r["probs"]] for rs in rows]
    assert len(probs[0]) > 0 and probs[0] == pytest.approx(probs[1], abs=1e-3)
    with pytest.raises(ValueError, match="--offload-unused-encoders: HFLlava has no separately held encoders"):
        apply_switches(plain, OptimizeSpec("features"), offload=True)
