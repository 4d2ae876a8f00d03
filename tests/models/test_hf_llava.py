"""A tiny random LLaVA-1.5, built from configs and saved locally, through `hf:DIR` (no downloads)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                          LlavaProcessor, PreTrainedTokenizerFast)

from safetensors.torch import load_file

from mirage.evaluate import evaluate
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.models import Visual, load_model
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

# llava-hf/llava-1.5-7b-hf's chat template: it writes no <s>; the tokenizer adds it (as LlamaTokenizer does)
CHAT = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
        "{% endif %}"
        "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
        "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
        "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
        "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    words = "USER ASSISTANT : . ? , ( ) Answer with the option ' s letter from given choices directly which of these what is a an".split()
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", "<image>", *"ABCDEFGHIJ", *words])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
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
    """The default: the official LLaVA code's preprocessing (pad to a square)."""
    return load_model(f"hf:{llava_dir}", device="cpu")


@pytest.fixture(scope="module")
def llava_crop(llava_dir):
    """The transformers processor's preprocessing (short side resized, centre crop) and chat template."""
    return load_model(f"hf:{llava_dir}", device="cpu", image_aspect_ratio="crop", conversation="hf")


@pytest.fixture(scope="module")
def bench(sqa_bench):
    return sqa_bench


def test_stages_and_specs(llava):
    (spec,) = llava.encoders
    assert (spec.name, spec.image_size, spec.num_tokens, spec.dim) == ("vision", 32, 16, 32)
    assert llava.attn_implementation == "sdpa" and llava.name_or_path.startswith("hf:")


@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_differentiable_preprocess_matches_processor(llava, llava_crop, bench, mode):
    llava = llava if mode == "pad" else llava_crop
    imgs = [q.image() for q in bench.questions[:4]]
    assert len({im.size for im in imgs}) > 1  # real, differently shaped images
    real = llava.process_images(imgs)["vision"]
    for im, r in zip(imgs, real):
        px = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        diff = llava.preprocess(px)["vision"][0]
        assert diff.shape == r.shape and (diff - r).abs().mean() < 0.02 and (diff - r).abs().max() < 0.5


def test_features_and_logits_agree_with_transformers(llava_crop, bench):
    llava = llava_crop  # the processor's own preprocessing
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


def test_letter_probabilities_equal_the_processor_and_forward(llava_crop, bench):
    """The token ids are the processor's own (`apply_chat_template(tokenize=True)`: the template writes no <s>, the
    tokenizer adds it once, as LLaVA-1.5's does) and the letter probabilities equal transformers' forward on them."""
    llava = llava_crop
    tok = llava.tokenizer
    for q in bench.questions[:3]:
        image, prompt, n = q.image().convert("RGB"), bench.prompt(q), len(q.choices)
        turn = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
        inputs = llava.processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True, return_tensors="pt")
        assert inputs["input_ids"][0, :2].tolist() == tok.convert_tokens_to_ids(["<s>", "USER"])
        ids, mask, _ = llava.sequences([prompt])
        assert ids[0].tolist() == inputs["input_ids"][0].tolist()
        letters = tok.convert_tokens_to_ids(list("ABCDEFGHIJ"[:n]))
        assert llava.letter_ids(n) == letters  # "ASSISTANT: A": the first token of an assistant turn answering A
        theirs = llava.model(**inputs).logits[0, -1, letters].softmax(-1)
        mine = llava.choice_logits([prompt], llava.visual_from_images([image]), [n])[0].softmax(-1)
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_batched_letters_are_each_prompt_alone_through_transformers(llava, bench):
    """Letter scoring right-aligns a batch of prompts of different lengths and passes no attention mask
    (`causal_scoring`): each row's letter logits equal transformers' forward on that prompt alone (no padding at
    all), and so do the gradients an optimization reads from the features."""
    qs = [q for q in bench.questions if len(bench.prompt(q).split()) > 3][:4]
    prompts = [bench.prompt(q) for q in qs]
    ids, mask, _ = llava.sequences(prompts)
    assert llava.causal_scoring and len(set(mask.sum(1).tolist())) > 1  # the batch is padded
    processed = llava.process_images([q.image() for q in qs])
    feats = llava.encode(processed)["vision"].detach().requires_grad_(True)
    n = min(len(q.choices) for q in qs)
    batched = llava.choice_logits(prompts, Visual("features", {"vision": feats}), [n] * len(qs))
    batched.logsumexp(-1).sum().backward()
    letters = llava.letter_ids(n)
    for i, p in enumerate(prompts):
        one_ids, one_mask, _ = llava.sequences([p])
        f = feats.detach()[i : i + 1].requires_grad_(True)
        embeds = llava.embed(one_ids).masked_scatter((one_ids == llava.image_token_id)[..., None], llava.connect({"vision": f}))
        theirs = llava.model(inputs_embeds=embeds, attention_mask=one_mask).logits[0, -1, letters]
        torch.testing.assert_close(batched[i], theirs, atol=1e-5, rtol=1e-5)
        theirs.logsumexp(-1).backward()
        torch.testing.assert_close(feats.grad[i], f.grad[0], atol=1e-6, rtol=1e-4)


def test_right_align_moves_each_row_to_the_left_edge():
    from mirage.models.spliced import right_align

    ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 1], [0, 0, 0, 2]])
    mask = (ids != 0).long()
    moved, last = right_align(ids, mask)
    assert moved.tolist() == [[5, 6, 0, 0], [7, 8, 9, 1], [2, 0, 0, 0]] and last.tolist() == [1, 3, 0]


def test_pad_is_the_official_llava_preprocessing(llava, llava_crop, bench, tmp_path):
    """haotian-liu/LLaVA `process_images` with `image_aspect_ratio: pad`: expand2square with the processor's mean as
    int(x * 255) (written here with numpy), then the CLIP processor; its letter probabilities through the model's
    own forward equal mirage's. The run records which preprocessing it used."""
    ip = llava.processor.image_processor
    colour = [int(x * 255) for x in ip.image_mean]
    for q in bench.questions[:3]:
        arr = np.array(q.image().convert("RGB"))
        h, w = arr.shape[:2]
        assert h != w
        s = max(h, w)
        canvas = np.empty((s, s, 3), np.uint8)
        canvas[:] = colour
        canvas[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = arr
        pixels = ip(images=[Image.fromarray(canvas)], return_tensors="pt")["pixel_values"]
        ours = llava.process_images([q.image()])["vision"]
        torch.testing.assert_close(ours, pixels, rtol=0, atol=1e-5)
        assert (llava_crop.process_images([q.image()])["vision"] - pixels).abs().max() > 0.1  # crop is another image
        prompt, n = bench.prompt(q), len(q.choices)
        ids, mask, _ = llava.sequences([prompt])
        letters = llava.tokenizer.convert_tokens_to_ids(list("ABCDEFGHIJ"[:n]))
        theirs = llava.model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits[0, -1, letters]
        mine = llava.choice_logits([prompt], llava.visual_from_images([q.image()]), [n])[0]
        torch.testing.assert_close(mine.softmax(-1), theirs.softmax(-1), atol=1e-5, rtol=0)
    res = evaluate(llava, bench.subset(2), "real", out=tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["environment"]["image_aspect_ratio"] == "pad" and res.summary["n"]["real"] == 2
    with pytest.raises(ValueError, match="image_aspect_ratio 'square': allowed pad, crop"):
        load_model(f"hf:{llava.model.config._name_or_path}", device="cpu", image_aspect_ratio="square")


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


def test_processor_path_agrees_with_the_llava_backend(llava_crop, llava_dir, bench):
    """The generic backend (processor + the model's own forward), used for models mirage has no stages for, scores
    exactly as the LLaVA backend does, and says what optimization would need."""
    from transformers import AutoProcessor

    from mirage.models.hf_processor import NotSupportedYet, ProcessorVLM

    llava = llava_crop  # the processor path preprocesses as the transformers processor does
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


def test_processor_path_holds_the_bos_once(llava, llava_dir, bench):
    """Templates that write the BOS themselves (Gemma 3, Idefics3, Mistral 3) get it once, not once more from the
    tokenizer; templates that do not (llava-hf) get the tokenizer's."""
    from transformers import AutoProcessor

    from mirage.models.hf_processor import ProcessorVLM

    q = bench.questions[0]
    bos, user = llava.tokenizer.convert_tokens_to_ids(["<s>", "USER"])
    for template in (CHAT, "{{ bos_token }}" + CHAT):
        processor = AutoProcessor.from_pretrained(llava_dir)
        processor.chat_template = template
        generic = ProcessorVLM(llava.model, processor, "hf:tiny")
        ids = generic._inputs([bench.prompt(q)], generic.visual_from_images([q.image()]))["input_ids"][0]
        assert ids[:2].tolist() == [bos, user], template[:20]
        assert generic.letter_ids(4) == llava.tokenizer.convert_tokens_to_ids(list("ABCD"))


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


def test_cli_passes_the_preprocessing_option(llava_dir, tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app

    base = ["eval", "--benchmark", "scienceqa", "--data-dir", "/work/shared/fixtures/scienceqa", "--limit", "2",
            "--conditions", "real", "--device", "cpu", "-q"]
    ok = CliRunner().invoke(app, [*base, "--model", f"hf:{llava_dir}", "--image-aspect-ratio", "crop",
                                  "--out", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["image_aspect_ratio"] == "crop" and cfg["environment"]["image_aspect_ratio"] == "crop"
    bad = CliRunner().invoke(app, [*base, "--model", "demo", "--image-aspect-ratio", "pad",
                                   "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "model 'demo' takes no option image_aspect_ratio" in bad.output


def test_none_is_the_text_only_prompt_through_transformers(llava_crop, bench):
    """`none`: the chat template's text-only turn (no placeholder, no pixel values); letter probabilities equal
    transformers' own forward on it, question by question, while mirage batches them left-padded."""
    llava = llava_crop  # llava-hf's template
    from mirage.models.chat import image_turn

    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    ids, _, _, tokens, _ = llava.prepare(prompts, Visual.none())
    assert tokens is None and not (ids == llava.image_token_id).any()
    mine = llava.choice_logits(prompts, Visual.none(), [len(q.choices) for q in qs]).softmax(-1)
    for row, (q, p) in enumerate(zip(qs, prompts)):
        inputs = llava.processor.apply_chat_template(image_turn(p, image=False), add_generation_prompt=True,
                                                     tokenize=True, return_dict=True, return_tensors="pt")
        assert "pixel_values" not in inputs and llava.image_token_id not in inputs["input_ids"][0].tolist()
        full = llava.model(**inputs).logits[0, -1, llava.letter_ids(len(q.choices))].float().softmax(-1)
        torch.testing.assert_close(mine[row, : len(q.choices)], full, atol=1e-4, rtol=1e-4)
    real = llava.choice_logits(prompts, llava.visual_from_images([q.image() for q in qs]), [4] * 3)
    assert not torch.allclose(real.softmax(-1), mine, atol=1e-3)  # an image changes the answer: the test can fail


def test_none_condition_and_the_processor_path(llava_crop, llava_dir, bench):
    """`none` runs as an ordinary condition, and the processor path scores it as the LLaVA backend does (with
    llava-hf's template, which the processor path runs)."""
    llava = llava_crop
    from transformers import AutoProcessor

    from mirage.models.hf_processor import ProcessorVLM

    res = evaluate(llava, bench, "real,none")
    assert res.summary["n"]["none"] == len(bench) and {r["source"] for r in res.rows} == {"real", "none"}
    generic = ProcessorVLM(llava.model, AutoProcessor.from_pretrained(llava_dir), "hf:tiny")
    qs = bench.questions[:3]
    prompts, n = [bench.prompt(q) for q in qs], [len(q.choices) for q in qs]
    torch.testing.assert_close(generic.choice_logits(prompts, Visual.none(), n),
                               llava.choice_logits(prompts, Visual.none(), n), atol=1e-4, rtol=1e-4)


def test_soft_prompt_is_the_text_only_turn_with_free_vectors(llava, llava_crop, bench, tmp_path):
    """A soft prompt on LLaVA's text path: the `none` prompt's ids (no image token), its vectors right after
    "USER:" where the image would stand (in llava-hf's template and in the official vicuna_v1 conversation); letter
    logits equal transformers' own forward on those input embeddings, row by row, while mirage batches rows of
    different lengths. Per-question and universal soft prompts run."""
    from mirage.models.chat import image_turn
    from mirage.models.vlm import SOFT

    official, llava = llava, llava_crop  # the comparison below runs llava-hf's template
    qs = bench.questions[:2]
    vectors = torch.zeros(2, 5, official.model.config.text_config.hidden_size)
    ids, mask, _, _, layout = official.prepare([bench.prompt(q) for q in qs], Visual(SOFT, vectors))
    for row in range(2):  # vicuna_v1: "<system words> USER: <the vectors> <question> ASSISTANT:"
        at = int(layout.where[row].nonzero()[0, 0])
        assert official.tokenizer.convert_ids_to_tokens(ids[row, at - 2 : at].tolist()) == ["USER", ":"]

    qs = bench.questions[:3]
    prompts = [bench.prompt(q) for q in qs]
    vectors = torch.randn(3, 5, llava.model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    ids, mask, _, tokens, layout = llava.prepare(prompts, Visual(SOFT, vectors))
    assert not (ids == llava.image_token_id).any() and int(layout.where.sum()) == 15
    mine = llava.choice_logits(prompts, Visual(SOFT, vectors), [len(q.choices) for q in qs])
    for row, p in enumerate(prompts):
        text = llava.processor.apply_chat_template(image_turn(p, image=False), add_generation_prompt=True,
                                                   tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
        assert llava.tokenizer.convert_ids_to_tokens(text[0, :2].tolist()) == ["<s>", "USER"]  # the place: after ":"
        embeds = llava.model.get_input_embeddings()(text)
        embeds = torch.cat([embeds[:, :3], vectors[row : row + 1], embeds[:, 3:]], 1)
        full = llava.model(inputs_embeds=embeds).logits[0, -1, llava.letter_ids(len(qs[row].choices))]
        torch.testing.assert_close(mine[row, : len(qs[row].choices)], full, atol=1e-4, rtol=1e-4)
    run = RunDir.open(tmp_path / "soft", {"x": 1})
    for spec in (OptimizeSpec("soft-prompt"), OptimizeSpec("soft-prompt", scope="universal", train=3)):
        rows = run_optimization(llava, bench.subset(5), spec, OptimizeConfig(steps=2, batch_size=2), run)
        assert spec.source in {r["source"] for r in rows}
    saved = load_file(run.artifacts_dir / "soft-prompt-universal.safetensors")["soft_prompt"]
    assert saved.shape == (llava.num_image_tokens, llava.model.config.text_config.hidden_size)  # one per image token


def test_generate_with_the_key_value_cache_equals_recomputing_the_prefix(llava, bench, monkeypatch):
    """Captions (`caption:self`, 128 tokens) run the prompt once and then one token per step, with images and text
    only: the same tokens as recomputing the prefix (`cached_generation.py`)."""
    from cached_generation import assert_cached_generation

    qs = [q for q in bench.questions if q.images][:2]
    prompts = [bench.prompt(q) for q in qs]
    assert_cached_generation(llava, prompts, lambda rows: llava.visual_from_images([qs[i].image() for i in rows]),
                             monkeypatch)
    assert_cached_generation(llava, prompts, lambda rows: Visual("none", None), monkeypatch)
