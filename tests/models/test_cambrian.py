"""A tiny random Cambrian-1 (4 towers, SVA, 2-layer Llama with sampler layers), saved under the official key names
and loaded through `cambrian:DIR` (no downloads); the 8B's shapes checked on the meta device."""

import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import ConvNextConfig

import mirage
from mirage.benchmarks.scienceqa import load_scienceqa
from mirage.experiments import OptimizeSpec, apply_switches, run_optimization
from mirage.models import Visual, load_model
from mirage.models.cambrian import IMAGE_SIZE, CambrianConfig, CambrianVLM, config_8b, tiny_config
from mirage.models.cambrian.checkpoint import load_tower, official_state, our_key
from mirage.models.cambrian.pinned import dinov2_pos_encoding
from mirage.models.cambrian.processing import image_cells
from mirage.models.cambrian.sva import SamplerInputs, window_masks
from mirage.models.cambrian.template import IMAGE_TOKEN, SYSTEM, llama_3_prompt, word_level_tokenizer
from mirage.models.cambrian.towers import ConvNextTrunk, VisionTower, convnext_from_open_clip
from mirage.models.square import normalize, pad_square, process_pil, resize_like_pil
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

FIXTURE = Path("/work/shared/fixtures/scienceqa")
if not FIXTURE.is_dir():
    pytest.skip("ScienceQA fixture not available", allow_module_level=True)
WORDS = "system user assistant which what is the of a an these answer with option letter from given choices".split()


def tiny_tokenizer():
    return word_level_tokenizer(WORDS)


def build_tiny() -> CambrianVLM:
    tok = tiny_tokenizer()
    ids = tok(llama_3_prompt("x"), add_special_tokens=False).input_ids
    torch.manual_seed(0)
    return CambrianVLM.random(tiny_config(len(tok), image_position=ids.index(tok.convert_tokens_to_ids(IMAGE_TOKEN))),
                              tok)


@pytest.fixture(scope="module")
def original():
    return build_tiny()


@pytest.fixture(scope="module")
def cambrian_dir(original, tmp_path_factory):
    d = tmp_path_factory.mktemp("cambrian")
    original.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def model(cambrian_dir):
    return load_model(f"cambrian:{cambrian_dir}", device="cpu")


@pytest.fixture(scope="module")
def bench():
    return load_scienceqa("test", data_dir=FIXTURE)


def fixture_image(w: int, h: int, bench) -> Image.Image:
    return next(q.image() for q in bench.questions if q.images and q.image().size == (w, h))


def test_llama_3_template_and_answer_letters(model):
    text = model.chat_text("Which is it?")
    assert text.startswith("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>" + SYSTEM)
    assert text.endswith("<|start_header_id|>user<|end_header_id|><image>\nWhich is it?<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>")
    assert SYSTEM.startswith("You are Cambrian") and "\n    As a multimodal AI" in SYSTEM
    # the answer follows <|end_header_id|> with no space
    assert model.letter_ids(4) == model.tokenizer.convert_tokens_to_ids(list("ABCD"))
    # token ids as tokenizer_image_token gives them: the tokenizer's BOS, then the template's; no third one
    ids = model.sequences(["which is it ?"])[0][0].tolist()
    bos, header = model.tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|start_header_id|>"])
    assert ids[:3] == [bos, bos, header]


def test_saved_with_official_names_and_loaded_identically(original, cambrian_dir, model):
    keys = set(load_file(str(cambrian_dir / "model.safetensors")))
    assert {"model.vision_sampler_layers.1.layers.0.cross_attn.k_proj_3.1.weight", "model.mm_projector_aux_3.0.weight",
            "model.vision_sampler_0.layers.1.pos_embed_3", "model.vision_query", "model.image_newline",
            "model.mm_projector.2.weight", "model.layers.1.mlp.up_proj.weight", "lm_head.weight"} <= keys
    assert not any(k.startswith(("lm.", "connector.", "lm_samplers.", "vision")) for k in keys)
    assert all(our_key(k) in original.state_dict() for k in keys)
    cfg = json.loads((cambrian_dir / "config.json").read_text())
    assert cfg["mm_vision_tower_aux_list"] == ["siglip/CLIP-ViT-SO400M-14-384", "openai/clip-vit-large-patch14-336",
                                              "facebook/dinov2-giant-res378", "clip-convnext-XXL-multi-stage"]
    assert (cfg["mm_projector_type"], cfg["connector_only"], cfg["query_num_list"]) == ("sva", False, [16])
    assert sorted(p.name for p in (cambrian_dir / "vision_towers").iterdir()) == ["clip", "convnext", "dino", "siglip"]
    assert model.name_or_path == f"cambrian:{cambrian_dir}" and not any(p.requires_grad for p in model.parameters())
    v = Visual("pixels", torch.rand(2, 3, 50, 64))
    prompts = ["which is it ?", "what is the answer ?"]
    torch.testing.assert_close(model.choice_logits(prompts, v, [3, 4]), original.choice_logits(prompts, v, [3, 4]),
                               rtol=0, atol=0)


def test_stage_shapes(model, bench):
    imgs = [q.image() for q in bench.questions[:2]]
    processed = model.process_images(imgs)
    assert {k: tuple(v.shape) for k, v in processed.items()} == {
        "siglip": (2, 3, 56, 56), "clip": (2, 3, 32, 32), "dino": (2, 3, 42, 42), "convnext": (2, 3, 64, 64),
        IMAGE_SIZE: (2, 2)}
    assert processed[IMAGE_SIZE].tolist() == [list(im.size) for im in imgs]
    feats = model.encode(processed)
    assert {s.name: (s.num_tokens, s.dim) for s in model.encoders} == {
        "siglip": (16, 40), "clip": (16, 32), "dino": (16, 48), "convnext": (256, 8 + 16)}
    for s in model.encoders:
        assert feats[s.name].shape == (2, s.num_tokens, s.dim)
    tokens = model.connect(feats)
    assert tokens.shape == (2, 16, 64) and model.num_image_tokens == 4 * 5  # 4 x 4 grid + a newline per row
    ids, mask, _, _, _ = model.prepare(["which ?"], Visual("tokens", tokens[:1]))
    assert (ids == model.image_token_id).sum() == 20
    prompts = ["which is it ?", "what is the answer ?"]
    logits = model.choice_logits(prompts, Visual("processed", processed), [3, 2])
    assert logits.shape == (2, 3) and torch.isinf(logits[1, 2]) and torch.isfinite(logits[0]).all()
    for stage, value in (("features", feats), ("tokens", tokens)):
        torch.testing.assert_close(model.choice_logits(prompts, Visual(stage, value), [3, 2]), logits)
    loss = model.answer_loss(prompts, Visual("processed", processed), ["A", "B"])
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    assert len(model.generate(prompts, Visual("processed", processed), max_new_tokens=2)) == 2


def test_preprocessing_matches_an_independent_reference(model, bench):
    """Pad with numpy, resize with PIL (bicubic, as `Image.resize` defaults to), normalise with numpy; the real
    processor must equal it, the differentiable twin agree to PIL's uint8 rounding. 8B sizes included (upsampling)."""
    for im in (fixture_image(302, 232, bench), fixture_image(452, 595, bench)):
        arr = np.array(im.convert("RGB"))
        h, w = arr.shape[:2]
        s = max(h, w)
        pixels = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
        for t in [*model.config.towers, *config_8b().towers]:
            canvas = np.empty((s, s, 3), np.uint8)
            canvas[:] = t.pad
            canvas[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = arr
            ref = np.asarray(Image.fromarray(canvas).resize((t.image_size,) * 2, Image.BICUBIC)) / 255.0
            ref = torch.from_numpy(((ref - np.array(t.mean)) / np.array(t.std)).transpose(2, 0, 1)).float()
            real = process_pil([im], t.image_size, t.pad, t.mean, t.std)[0]
            torch.testing.assert_close(real, ref, rtol=0, atol=1e-5)
            twin = normalize(resize_like_pil(pad_square(pixels, t.pad), t.image_size), t.mean, t.std)[0]
            err = (twin - ref).abs() * torch.tensor(t.std).view(3, 1, 1)  # back in [0, 1] units
            assert err.mean() < 0.5 / 255 and err.max() < 2 / 255, (t.name, t.image_size, err.mean(), err.max())
    # the model's preprocess is that twin per tower, and records the aspect for unpadding
    out = model.preprocess(pixels)
    assert out[IMAGE_SIZE].tolist() == [[w, h]] and out["convnext"].shape == (1, 3, 64, 64)


def test_padding_cells_follow_the_official_offsets():
    # 518 x 80 on 24 x 24 tokens: int(80 * 24 / 518) = 3 image rows, (24 - 3) // 2 = 10 padding rows on each side
    cells = image_cells(24, 518, 80)
    assert cells.all(1).nonzero().flatten().tolist() == [10, 11, 12, 13] and cells[10].all()
    tall = image_cells(24, 80, 518)
    assert tall.all(0).nonzero().flatten().tolist() == [10, 11, 12, 13]
    assert image_cells(24, 300, 300).all() and image_cells(24, 301, 300).all()  # < one cell: nothing dropped
    # a window entirely over padding attends to all its keys (official: rows with no key are unmasked)
    m = window_masks(torch.tensor([[575.0, 171.0]]), 16, 4)  # 16 x 16 keys under a 4 x 4 grid: 4 x 4 windows
    rows = image_cells(16, 575, 171).all(1).nonzero().flatten().tolist()
    assert rows == [6, 7, 8, 9]
    assert m[:4].all() and m[12:].all()  # query rows 0 and 3: all padding
    assert m[4:8].view(4, 4, 4)[:, :2].logical_not().all() and m[4:8].view(4, 4, 4)[:, 2:].all()  # keys rows 4-5 masked


def test_dropping_padding_slots_equals_removing_them(model, bench):
    """Official inference cuts the padding-only token rows out of the sequence and runs the LM's sampler layers on the
    remaining queries; masking them (this backend, and the official training code) must give the same answer."""
    im = fixture_image(575, 171, bench)
    prompt = "which is it ?"
    processed = model.process_images([im])
    ours = model.next_token_logits([prompt], Visual("processed", processed))[0]
    tokens = model.connect(model.encode(processed))
    side, d = model.config.side, tokens.shape[-1]
    keep = image_cells(side, *im.size)
    rows = keep.any(1)
    grid = torch.cat([tokens.view(side, side, d), model.connector.image_newline.view(1, 1, d).expand(side, 1, d)], 1)
    kept = torch.cat([keep, rows[:, None]], 1)
    image = grid[kept]  # [kept slots, D], row-major: each kept row's cells then its newline
    ids = model.tokenizer(model.chat_text(prompt), add_special_tokens=False).input_ids
    at = ids.index(model.image_token_id)
    embeds = torch.cat([model.embed(torch.tensor([ids[:at]]))[0], image, model.embed(torch.tensor([ids[at + 1:]]))[0]])
    n = embeds.shape[0]
    slot_at = at + torch.cumsum(kept.flatten().long(), 0) - 1  # sequence index of each kept slot
    query_pos = slot_at.view(side, side + 1)[:, :side][keep][None]  # [1, kept cells]
    s = tokens.cambrian.sampler
    cells = keep.flatten().nonzero().flatten()
    only = SamplerInputs([k[cells] for k in s.keys], [m[cells] for m in s.masks], s.context[cells])
    hidden = model.decoder(embeds[None], torch.ones(1, n, dtype=torch.long), torch.arange(n)[None],
                           lambda i, h: model._sample_into(i, h, query_pos, only))
    theirs = model.lm_head_logits(hidden[:, -1])[0]
    assert rows.sum() == 2 and keep.sum() == 8  # the check is not vacuous
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_letter_scoring_right_aligns_unless_padding_slots_are_dropped(model, bench, monkeypatch):
    """Letter scoring (and so every optimization step) right-aligns a padded batch and passes no attention mask, as
    for LLaVA, where every image slot is kept (features, square images, text only): the logits equal the masked
    left-padded batch's. Images whose padding-only slots are dropped keep the mask (positions skip those slots)."""
    from mirage.models.cambrian.modeling import DroppedSlots

    prompts = ["which is the answer ?", "which of these is the answer with the letter ?"]
    assert len(set(model.sequences(prompts)[1].sum(1).tolist())) == 2  # padded
    torch.manual_seed(0)
    features = {s.name: torch.randn(2, s.num_tokens, s.dim) for s in model.encoders}
    square = fixture_image(302, 232, bench).resize((64, 64))
    wide = [fixture_image(575, 171, bench), fixture_image(452, 595, bench)]
    masks = []
    hidden = type(model)._hidden
    monkeypatch.setattr(type(model), "_hidden", lambda self, ids, mask, *a: masks.append(mask) or hidden(self, ids, mask, *a))
    for visual, dropped in ((Visual("features", features), False), (model.visual_from_images([square] * 2), False),
                            (Visual.none(), False), (model.visual_from_images(wide), True)):
        assert isinstance(model.prepare(prompts, visual)[4], DroppedSlots) == dropped
        masks.clear()
        with torch.no_grad():
            aligned = model.next_token_logits(prompts, visual)
            assert (masks[-1] is None) != dropped
            with monkeypatch.context() as m:
                m.setattr(model, "causal_scoring", False)
                padded = model.next_token_logits(prompts, visual)
            assert masks[-1] is not None
        torch.testing.assert_close(aligned, padded, atol=1e-4, rtol=1e-4)


def test_generate_with_the_key_value_cache_equals_recomputing_the_prefix(model, bench, monkeypatch):
    """Captions keep the LM's cache: the prompt once with the sampler layers (as official inference runs them, in
    the prefill only), then one plain token a step; the same tokens and hidden states as recomputing the prefix with
    the samplers each step, on images of two aspect ratios (different padding slots dropped) and text only."""
    from cached_generation import assert_cached_generation

    images = [fixture_image(575, 171, bench), fixture_image(302, 232, bench)]
    prompts = ["which is the answer ?", "which of these is the answer with the letter ?"]
    assert_cached_generation(model, prompts, lambda rows: model.visual_from_images([images[i] for i in rows]),
                             monkeypatch, texts=False)
    assert_cached_generation(model, prompts, lambda rows: Visual.none(), monkeypatch, texts=False)


def test_conditions_evaluate(model, bench, tmp_path):
    res = mirage.evaluate(model, bench, "real,blank", out=tmp_path / "eval")
    assert res.summary["n"] == {"real": len(bench), "blank": len(bench)}


def test_optimized_features_and_pixels(model, bench, tmp_path):
    run = RunDir.open(tmp_path / "opt", {"x": 1})
    small = bench.subset(2)
    spec = OptimizeSpec("features", detach=["convnext"])
    rows = run_optimization(model, small, spec, OptimizeConfig(steps=2, batch_size=2), run)
    assert {r["source"] for r in rows} == {"features-question"} and len(rows) == 2
    art = load_file(str(run.path / rows[0]["artifact"]))
    assert art["convnext"].shape == (256, 24) and art["siglip"].shape == (16, 40)
    rows = run_optimization(model, small, OptimizeSpec("pixels"), OptimizeConfig(steps=2, batch_size=2), run)
    assert {r["source"] for r in rows} == {"pixels-question", "pixels-question-png"} and len(rows) == 4
    assert len(list((run.artifacts_dir / "pixels-question").glob("*.png"))) == 2


def test_detached_convnext_gets_no_gradient_and_switches_keep_results(model):
    prompts = ["which is it ?"]
    torch.manual_seed(1)
    feats = {s.name: torch.randn(1, s.num_tokens, s.dim) for s in model.encoders}

    def grads(m):
        x = {k: v.clone().requires_grad_(k != "convnext") for k, v in feats.items()}
        m.answer_loss(prompts, Visual("features", x), ["B"]).sum().backward()
        return {k: v.grad for k, v in x.items()}

    plain = grads(model)
    assert plain["convnext"] is None and all(plain[k].abs().sum() > 0 for k in ("siglip", "clip", "dino"))
    switched = copy.deepcopy(model)
    apply_switches(switched, OptimizeSpec("features"), grad_checkpointing=True, offload=True)
    assert switched.vision["convnext"].model.gradient_checkpointing
    assert switched.lm.model.layers[0].gradient_checkpointing
    for k, g in grads(switched).items():
        if g is not None:
            torch.testing.assert_close(g, plain[k])
    # a tower living elsewhere (offloaded; here: another dtype) runs there and hands its features back
    switched.vision["clip"].double()
    px = torch.rand(1, 3, 40, 40)
    torch.testing.assert_close(switched.choice_logits(prompts, Visual("pixels", px), [3]),
                               model.choice_logits(prompts, Visual("pixels", px), [3]), rtol=1e-4, atol=1e-4)
    assert switched.device == torch.device("cpu") and switched.dtype == torch.float32


def test_tokens_without_features_skip_the_sampler_layers_loudly(original):
    tokens = original.connect({s.name: torch.randn(1, s.num_tokens, s.dim) for s in original.encoders})
    with_keys = original.choice_logits(["which ?"], Visual("tokens", tokens), [2])
    bare = tokens.detach().clone()
    with pytest.warns(UserWarning, match="sampler layers are skipped"):
        without = original.choice_logits(["which ?"], Visual("tokens", bare), [2])
    assert not torch.allclose(with_keys, without)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("model.vision_query"), r"missing keys \['model.vision_query'\], unexpected keys \[\]"),
    (lambda s: s.pop("model.vision_sampler_layers.1.layers.0.proj_in.weight"),
     r"missing keys \['model.vision_sampler_layers.1.layers.0.proj_in.weight'\]"),
    (lambda s: s.__setitem__("model.extra.weight", torch.zeros(1)),
     r"missing keys \[\], unexpected keys \['model.extra.weight'\]"),
    (lambda s: s.__setitem__("model.image_newline", torch.zeros(3)),
     r"shape mismatches \['model.image_newline: \(3,\) != \(64,\)'\]"),
])
def test_checkpoint_refuses_what_does_not_fit(cambrian_dir, tmp_path, edit, message):
    d = tmp_path / "m"
    shutil.copytree(cambrian_dir, d)
    state = load_file(str(d / "model.safetensors"))
    edit(state)
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match=message):
        load_model(f"cambrian:{d}", device="cpu")


def test_sharded_checkpoint_loads(original, tmp_path):
    from mirage.models.cambrian.checkpoint import save_official

    original.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    save_official(original, tmp_path, shard_bytes=200_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    loaded = load_model(f"cambrian:{tmp_path}", device="cpu")
    for k, v in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)


def test_config_reads_official_json_and_refuses_the_unimplemented():
    official = config_8b().to_official()
    del official["mirage"]  # the hub's config.json has no tower specs: the known towers fill them in
    cfg = CambrianConfig.from_official(official)
    assert cfg == config_8b()
    assert cfg.sampler_layer_indices() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27] and cfg.image_position == 91
    typo = ["siglip/CLIP-ViT-SO400M-14-38"] + official["mm_vision_tower_aux_list"][1:]
    for key, value, match in [("model_type", "phi3", "only Llama-based"),
                              ("mm_projector_type", "mlp2x_gelu", "not implemented"),
                              ("image_aspect_ratio", "anyres", "not implemented"),
                              ("mm_vision_tower_aux_list", typo, "did you mean 'siglip/CLIP-ViT-SO400M-14-384'")]:
        with pytest.raises(ValueError, match=match):
            CambrianConfig.from_official({**official, key: value})
    with pytest.raises(ValueError, match="vocab_size 32000 is not Llama-3"):  # e.g. cambrian-13b (Vicuna)
        CambrianConfig.from_official({**official, "vocab_size": 32000})
    with pytest.raises(ValueError, match="not a square grid divisible"):
        CambrianConfig.from_official({**official, "mm_vision_tower_aux_token_len_list": [576, 576, 576, 9000]})
    with pytest.raises(ValueError, match="needs a hub id or a directory"):
        load_model("cambrian", device="cpu")
    with pytest.raises(ValueError, match="takes no option device_map"):
        load_model("cambrian:x", device="cpu", device_map="auto")


def test_8b_shapes_match_the_released_checkpoint():
    """Built on the meta device: the official weights (LM + connector) come to 33.33 GB in fp32, the size of
    nyu-visionx/cambrian-8b's seven shards (4.89 + 4.83 + 5 + 5 + 4.83 + 5 + 3.78 GB)."""
    with torch.device("meta"):
        m = CambrianVLM(config_8b(), tiny_tokenizer())
    state = official_state(m)
    assert sum(v.numel() for v in state.values()) * 4 == pytest.approx(33.33e9, rel=1e-3)
    assert {(s.name, s.image_size, s.num_tokens, s.dim) for s in m.encoders} == {
        ("siglip", 384, 576, 1152), ("clip", 336, 576, 1024), ("dino", 378, 576, 1536), ("convnext", 1024, 9216, 5760)}
    assert tuple(state["model.mm_projector_aux_3.0.weight"].shape) == (1024, 5760)
    assert tuple(state["model.vision_sampler_layers.9.layers.0.proj_in.weight"].shape) == (1024, 4096 + 1024)
    assert tuple(state["model.vision_sampler_0.layers.2.pos_embed_3"].shape) == (16, 1024)  # 96 / 24 = 4 x 4 windows
    assert "model.vision_sampler_0.layers.0.pos_embed_0" not in state  # 24 / 24: one key, no position embedding
    assert m.num_image_tokens == 24 * 25 and len(m.lm_samplers) == 10


def test_open_clip_convnext_key_mapping():
    hf = ConvNextTrunk(ConvNextConfig(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[8, 16], depths=[1, 2]))
    timm = ["stem.0.weight", "stem.0.bias", "stem.1.weight", "stem.1.bias", "head.norm.weight", "head.norm.bias",
            "head.fc.weight", "stages.1.downsample.0.weight", "stages.1.downsample.0.bias",
            "stages.1.downsample.1.weight", "stages.1.downsample.1.bias"]
    for stage, blocks in ((0, 1), (1, 2)):
        for b in range(blocks):
            timm += [f"stages.{stage}.blocks.{b}.{p}" for p in ("gamma", "conv_dw.weight", "conv_dw.bias",
                     "norm.weight", "norm.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")]
    state = {f"visual.trunk.{k}": torch.zeros(1) for k in timm} | {"text.token_embedding.weight": torch.zeros(1)}
    assert set(convnext_from_open_clip(state)) == set(hf.state_dict())
    with pytest.raises(ValueError, match="visual.trunk.stages.0.blocks.0.grn.weight"):
        convnext_from_open_clip({**state, "visual.trunk.stages.0.blocks.0.grn.weight": torch.zeros(1)})


def test_clip_feature_is_the_second_to_last_layer(model):
    clip = model.vision["clip"].model
    out = clip(pixel_values=torch.rand(1, 3, 32, 32), output_hidden_states=True)
    assert len(out.hidden_states) == clip.config.num_hidden_layers + 1
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)


# --- the official towers, written out from the official formulas (timm ViT blocks, transformers 4.37 DINOv2) -------
def layer_norm(x, m, eps):
    return F.layer_norm(x, x.shape[-1:], m.weight, m.bias, eps)


def attention(x, q, k, v, o, heads):
    b, t, d = x.shape
    hd = d // heads
    split = lambda y: y.view(b, t, heads, hd).transpose(1, 2)
    a = (split(q(x)) @ split(k(x)).transpose(-1, -2) * hd**-0.5).softmax(-1) @ split(v(x))
    return o(a.transpose(1, 2).reshape(b, t, d))


def exact_gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def timm_siglip(model, x):
    """open_clip's timm trunk `forward_features`: patches + positions, pre-norm blocks with exact GELU (eps 1e-6),
    final norm."""
    vm, heads = getattr(model, "vision_model", model), model.config.num_attention_heads
    conv = vm.embeddings.patch_embedding
    h = F.conv2d(x, conv.weight, conv.bias, stride=conv.stride).flatten(2).transpose(1, 2)
    h = h + vm.embeddings.position_embedding.weight
    for layer in vm.encoder.layers:
        a = layer.self_attn
        h = h + attention(layer_norm(h, layer.layer_norm1, 1e-6), a.q_proj, a.k_proj, a.v_proj, a.out_proj, heads)
        h = h + layer.mlp.fc2(exact_gelu(layer.mlp.fc1(layer_norm(h, layer.layer_norm2, 1e-6))))
    return layer_norm(h, vm.post_layernorm, 1e-6)


def bicubic_437(n_in, n_out, scale):
    """One axis of F.interpolate(scale_factor=scale, mode="bicubic", align_corners=False) as a matrix [n_out, n_in]:
    samples at (i + 0.5) / scale - 0.5, Keys' cubic with a = -0.75, indices clamped at the border."""
    a, w = -0.75, np.zeros((n_out, n_in))

    def k(s):
        s = abs(s)
        if s <= 1:
            return ((a + 2) * s - (a + 3)) * s * s + 1
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a if s < 2 else 0

    for i in range(n_out):
        x = (i + 0.5) / scale - 0.5
        x0 = math.floor(x)
        for m in range(-1, 3):
            w[i, min(max(x0 + m, 0), n_in - 1)] += k(x - (x0 + m))
    return torch.from_numpy(w)


def positions_437(pos, h, w):
    """transformers 4.37 Dinov2Embeddings.interpolate_pos_encoding: the grid + 0.1 sets the scale factor."""
    side, d = math.isqrt(pos.shape[1] - 1), pos.shape[-1]
    grid = pos[0, 1:].double().view(side, side, d)
    out = torch.einsum("ia,jb,abd->ijd", bicubic_437(side, h, (h + 0.1) / side), bicubic_437(side, w, (w + 0.1) / side),
                       grid)
    return torch.cat([pos[0, :1].double(), out.reshape(h * w, d)])[None].to(pos.dtype)


def dinov2_437(model, x):
    """transformers 4.37 Dinov2Model: CLS + patches + interpolated positions, layer-scaled SwiGLU blocks, final norm;
    patch tokens only ("patch" feature)."""
    e, heads = model.embeddings, model.config.num_attention_heads
    conv = e.patch_embeddings.projection
    h = F.conv2d(x, conv.weight, conv.bias, stride=conv.stride).flatten(2).transpose(1, 2)
    h = torch.cat([e.cls_token.expand(len(x), 1, -1), h], 1)
    p = conv.stride[0]
    h = h + positions_437(e.position_embeddings, x.shape[-2] // p, x.shape[-1] // p)
    for layer in model.encoder.layer:
        a, mlp = layer.attention, layer.mlp
        h = h + layer.layer_scale1.lambda1 * attention(layer_norm(h, layer.norm1, 1e-6), a.q_proj, a.k_proj, a.v_proj,
                                                       a.o_proj, heads)
        y = layer_norm(h, layer.norm2, 1e-6)
        h = h + layer.layer_scale2.lambda1 * mlp.down_proj(F.silu(mlp.gate_proj(y)) * mlp.up_proj(y))
    return layer_norm(h, model.layernorm, 1e-6)[:, 1:]


def official_resize(x, n):
    """The official towers' `interpolate`: a square token map bilinearly resized (float32, align_corners=False)."""
    b, t, d = x.shape
    g, s = math.isqrt(t), math.isqrt(n)
    y = F.interpolate(x.view(b, g, g, d).permute(0, 3, 1, 2).float(), size=(s, s), mode="bilinear", align_corners=False)
    return y.permute(0, 2, 3, 1).reshape(b, n, d)


def test_dinov2_positions_are_transformers_437s():
    """9 x 9 trained positions at a 7 x 7 input (the tiny tower; the 8B goes 37 -> 27): 4.37's scale_factor grid,
    not transformers 5's resize to size, which samples other points."""
    torch.manual_seed(0)
    pos = torch.randn(1, 82, 3)
    ref = positions_437(pos, 7, 7)
    torch.testing.assert_close(dinov2_pos_encoding(pos, 42, 42, 6), ref, rtol=0, atol=1e-5)
    by_size = F.interpolate(pos[:, 1:].view(1, 9, 9, 3).permute(0, 3, 1, 2), size=(7, 7), mode="bicubic",
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, 49, 3)
    assert (by_size - ref[:, 1:]).abs().max() > 0.05  # the two really differ
    # and the tower runs it, whatever transformers is installed
    tower = VisionTower(tiny_config().towers[2]).eval()
    x = torch.randn(2, 3, 42, 42)
    torch.testing.assert_close(tower(x), official_resize(dinov2_437(tower.model, x), 16), rtol=0, atol=1e-5)


def test_siglip_blocks_use_exact_gelu_on_both_paths(tmp_path):
    """The tower's block equals a hand-computed timm block (exact GELU); a checkpoint whose config says tanh (the
    hub's google/siglip-so400m-patch14-384 does) runs exact GELU too. In float64, so tanh's 1e-4 cannot hide."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    cfg = tiny_config().towers[0]
    tower = VisionTower(cfg).double().eval()
    x = torch.randn(1, 3, 56, 56, dtype=torch.float64)
    torch.testing.assert_close(tower.model(pixel_values=x).last_hidden_state, timm_siglip(tower.model, x),
                               rtol=0, atol=1e-10)
    layer, h = tower.model.encoder.layers[0], torch.randn(1, 49, 40, dtype=torch.float64)
    by_hand = h + layer.mlp.fc2(exact_gelu(layer.mlp.fc1(layer_norm(h, layer.layer_norm2, 1e-6))))
    tanh = h + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer_norm(h, layer.layer_norm2, 1e-6)), approximate="tanh"))
    assert (by_hand - tanh).abs().max() > 1e-6
    torch.testing.assert_close(h + layer.mlp(layer.layer_norm2(h)), by_hand, rtol=0, atol=1e-12)
    # the hub path: weights from `source`, a config saying tanh
    hub = tmp_path / "siglip-hub"
    SiglipVisionModel(SiglipVisionConfig(**{**cfg.config, "hidden_act": "gelu_pytorch_tanh"})).save_pretrained(hub)
    loaded = load_tower(dataclasses.replace(cfg, source=str(hub)), tmp_path / "no-cambrian-dir", torch.device("cpu"),
                        torch.float64)
    assert loaded.model.config.hidden_act == "gelu"
    torch.testing.assert_close(loaded.model(pixel_values=x).last_hidden_state, timm_siglip(loaded.model, x),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("structure", ["8b-like", "two-query-groups"])
def test_logits_equal_the_official_towers(structure, bench):
    """Whole-model logits from the processed images equal those from features computed by the official towers'
    formulas (timm SigLIP, transformers 4.37 DINOv2; CLIP and ConvNeXt as the official code runs them), on square
    and non-square images, for the 8B's structure and one with two query groups and no sampler layers."""
    tok = tiny_tokenizer()
    ids = tok(llama_3_prompt("x"), add_special_tokens=False).input_ids
    cfg = tiny_config(len(tok), image_position=ids.index(tok.convert_tokens_to_ids(IMAGE_TOKEN)))
    # weights at the scale of trained ones (std 0.5, not 0.02), so the logits reach a few units as the 8B's do and a
    # tower's error is not hidden below the tolerance
    cfg = dataclasses.replace(cfg, lm={**cfg.lm, "initializer_range": 0.5})
    if structure == "two-query-groups":
        cfg = dataclasses.replace(cfg, query_num_list=[4, 16], connector_only=True)
    torch.manual_seed(1)
    model = CambrianVLM.random(cfg, tok)
    images = [fixture_image(302, 232, bench), fixture_image(452, 595, bench), Image.new("RGB", (64, 64), (200, 30, 90))]
    prompts = ["which is it ?"] * 3
    processed = model.process_images(images)
    feats = {"clip": model.vision["clip"](processed["clip"]),
             "convnext": model.vision["convnext"](processed["convnext"]),
             "siglip": official_resize(timm_siglip(model.vision["siglip"].model, processed["siglip"]), 16),
             "dino": official_resize(dinov2_437(model.vision["dino"].model, processed["dino"]), 16),
             IMAGE_SIZE: processed[IMAGE_SIZE]}
    official = model.choice_logits(prompts, Visual("features", feats), [4] * 3)
    ours = model.choice_logits(prompts, Visual("processed", processed), [4] * 3)
    gap = (official - ours).abs().max()
    assert official.abs().max() > 1 and gap < 1e-4, (official.abs().max(), gap)


def test_every_tower_gets_the_official_eps_activation_and_scale():
    """Whatever the tower's config says (the tiny ones say nothing: transformers' defaults are tanh GELU for SigLIP
    and 1e-12 / 1e-6 eps for ConvNeXt), the official values run."""
    from mirage.models.cambrian.pinned import OFFICIAL, QuickGELU

    for cfg in tiny_config().towers:
        model = VisionTower(cfg).model
        act, eps = OFFICIAL[cfg.arch]
        assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {eps}, cfg.arch
        acts = {type(getattr(m, n)) for m in model.modules() for n in ("activation_fn", "act", "activation")
                if isinstance(getattr(m, n, None), torch.nn.Module)}
        assert acts <= {act} and (acts or cfg.arch == "dinov2"), (cfg.arch, acts)  # DINOv2-g: SwiGLU, no GELU
        for m in model.modules():
            for name in ("scale", "scaling"):
                if isinstance(getattr(m, name, None), float):
                    assert getattr(m, name) == m.head_dim**-0.5
    assert OFFICIAL["clip"][0] is QuickGELU and OFFICIAL["siglip"][0] is torch.nn.GELU


def test_none_shows_the_lm_no_image_token(model, bench):
    """`none`: the llama_3 turn without `<image>\\n` (as official inference builds a text-only turn); no tower,
    connector or sampler layer runs and the LM's input is exactly the embedded text-only prompt."""
    seen, ran = [], []
    hooks = [model.lm.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["inputs_embeds"]),
                                                      with_kwargs=True)]
    hooks += [m.register_forward_hook(lambda *a: ran.append(1))
              for m in (*model.vision.values(), model.connector, *model.lm_samplers)]
    q = next(q for q in bench.questions if q.images)
    try:
        logits = model.choice_logits([bench.prompt(q)], Visual.none(), [len(q.choices)])
    finally:
        for h in hooks:
            h.remove()
    text = llama_3_prompt(bench.prompt(q), image=False)
    assert IMAGE_TOKEN not in text and text == llama_3_prompt(bench.prompt(q)).replace(IMAGE_TOKEN + "\n", "")
    ids = model.tokenizer(text, add_special_tokens=False).input_ids
    assert not ran and model.image_token_id not in ids and torch.isfinite(logits).all()
    torch.testing.assert_close(seen[0][0], model.lm.get_input_embeddings()(torch.tensor(ids)))
