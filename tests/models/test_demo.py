import pytest
import torch

from mirage.models import Visual, load_model
from mirage.models.demo.modeling import DemoVLM
from mirage.registry import UnknownNameError

PROMPTS = ["what colour is the circle ? A . red B . blue C . green D . yellow answer with the letter .",
           "how many objects are there ? A . one B . two answer with the letter ."]


def test_specs_follow_the_cambrian_layout(tiny_model):
    specs = {s.name: s for s in tiny_model.encoders}
    assert list(specs) == ["clip", "siglip", "dino", "convnext"]
    assert len({s.image_size for s in specs.values()}) == 3 and len({s.mean for s in specs.values()}) == 3
    assert specs["convnext"].num_tokens == 16 * specs["clip"].num_tokens == 16 * specs["siglip"].num_tokens


def test_stage_shapes_and_choice_masking(tiny_model, small_bench):
    imgs = [q.image() for q in small_bench.questions[:2]]
    processed = tiny_model.process_images(imgs)
    assert {k: tuple(v.shape) for k, v in processed.items()} == {
        "clip": (2, 3, 112, 112), "siglip": (2, 3, 96, 96), "dino": (2, 3, 112, 112), "convnext": (2, 3, 224, 224)}
    feats = tiny_model.encode(processed)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {s.name: (2, s.num_tokens, s.dim) for s in tiny_model.encoders}
    tokens = tiny_model.connect(feats)
    assert tokens.shape == (2, 64, tiny_model.config.lm["hidden_size"])
    logits = tiny_model.choice_logits(PROMPTS, Visual("processed", processed), [4, 2])
    assert logits.shape == (2, 4) and torch.isinf(logits[1, 2:]).all() and torch.isfinite(logits[0]).all()
    # every stage gives the same answer logits
    for stage, value in (("features", feats), ("tokens", tokens)):
        torch.testing.assert_close(tiny_model.choice_logits(PROMPTS, Visual(stage, value), [4, 2]), logits)


def test_differentiable_preprocess_matches_real_processor(tiny_model, small_bench):
    imgs = [q.image() for q in small_bench.questions[:4]]
    real = tiny_model.choice_logits(PROMPTS[:1] * 4, tiny_model.visual_from_images(imgs), [4] * 4)
    pixels = torch.stack([torch.from_numpy(__import__("numpy").array(im)).permute(2, 0, 1) for im in imgs]) / 255.0
    diff = tiny_model.choice_logits(PROMPTS[:1] * 4, Visual("pixels", pixels.float()), [4] * 4)
    assert (real - diff).abs().max() < 0.05 * real.abs().max()
    for name, x in tiny_model.preprocess(pixels.float()).items():  # the inputs themselves agree to uint8 rounding
        assert (x - tiny_model.process_images(imgs)[name]).abs().max() < 3 / 255 / 0.22


def test_gradients_reach_pixels_through_every_encoder(tiny_model):
    pixels = torch.rand(1, 3, 224, 224)
    for spec in tiny_model.encoders:
        px = pixels.clone().requires_grad_(True)
        processed = tiny_model.preprocess(px)
        # hold every other encoder's input fixed: only `spec`'s path can carry gradient
        processed = {k: (v if k == spec.name else v.detach()) for k, v in processed.items()}
        tiny_model.answer_loss(PROMPTS[:1], Visual("processed", processed), ["B"]).sum().backward()
        assert px.grad is not None and px.grad.abs().sum() > 0, spec.name


def test_answer_loss_and_generate(tiny_model):
    v = Visual("pixels", torch.rand(2, 3, 224, 224))
    loss = tiny_model.answer_loss(PROMPTS, v, ["A", "red <|end|>"])
    assert loss.shape == (2,) and torch.isfinite(loss).all() and (loss > 0).all()
    logits = tiny_model.choice_logits(PROMPTS[:1], Visual("pixels", v.value[:1]), [4])
    # the letter loss is the negative log-softmax of that letter over the whole vocabulary
    full = tiny_model.lm_logits(*tiny_model.sequences(PROMPTS[:1])[:2], tiny_model.to_tokens(Visual("pixels", v.value[:1])))
    want = -full[0, -1].float().log_softmax(-1)[tiny_model.letter_ids(1)[0]]
    torch.testing.assert_close(tiny_model.answer_loss(PROMPTS[:1], Visual("pixels", v.value[:1]), ["A"])[0], want)
    torch.testing.assert_close(logits[0, 0], full[0, -1, tiny_model.letter_ids(1)[0]].float())
    out = tiny_model.generate(PROMPTS, v, max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_generate_keeps_the_key_value_cache(tiny_model, monkeypatch):
    """`caption:demo`'s captions: the prompt once, then a token a step, the tokens of recomputing the prefix."""
    from cached_generation import assert_cached_generation

    pixels = torch.rand(2, 3, 224, 224)
    assert_cached_generation(tiny_model, PROMPTS, lambda rows: Visual("pixels", pixels[rows]), monkeypatch,
                             texts=False)  # the tiny demo ends its answers at once


def test_save_load_identical_logits(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    loaded = DemoVLM.from_pretrained(tmp_path / "m")
    v = Visual("pixels", torch.rand(2, 3, 224, 224))
    torch.testing.assert_close(loaded.choice_logits(PROMPTS, v, [4, 2]), tiny_model.choice_logits(PROMPTS, v, [4, 2]),
                               rtol=0, atol=0)
    assert loaded.tokenizer.get_vocab() == tiny_model.tokenizer.get_vocab()
    via_registry = load_model(f"demo:{tmp_path / 'm'}", device="cpu")
    assert via_registry.name_or_path == f"demo:{tmp_path / 'm'}"


def test_load_errors_name_the_problem(tiny_model, tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'demo'"):
        load_model("dmeo")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        DemoVLM.from_pretrained(tmp_path)  # empty directory
    tiny_model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file, save_file
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    state.pop("aggregator.queries")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \['aggregator.queries'\].*unexpected keys \['extra.weight'\]"):
        DemoVLM.from_pretrained(tmp_path / "m")


def _lm_inputs(lm, watched, run):
    """What the LM (a LlamaModel) received as input embeddings while `run()` ran, and whether any `watched` module
    (vision encoders, connector) ran at all."""
    seen, ran = [], []
    hooks = [lm.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["inputs_embeds"]), with_kwargs=True)]
    hooks += [m.register_forward_hook(lambda *a: ran.append(1)) for m in watched]
    try:
        out = run()
    finally:
        for h in hooks:
            h.remove()
    return out, seen, ran


def test_none_shows_the_lm_no_image_token(tiny_model):
    """`none`: no encoder or aggregator runs, and the LM's input is exactly the embedded text-only chat prompt."""
    tok = tiny_model.tokenizer
    watched = [*tiny_model.vision.values(), tiny_model.aggregator]
    _, seen, ran = _lm_inputs(tiny_model.lm.model, watched,
                              lambda: tiny_model.choice_logits(PROMPTS[:1], Visual.none(), [4]))
    turn = [{"role": "user", "content": [{"type": "text", "text": PROMPTS[0]}]}]
    ids = tok.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert not ran and tiny_model.image_token_id not in ids
    torch.testing.assert_close(seen[0][0], tiny_model.lm.get_input_embeddings()(torch.tensor(ids)))
    _, seen, ran = _lm_inputs(tiny_model.lm.model, watched, lambda: tiny_model.choice_logits(
        PROMPTS[:1], Visual("pixels", torch.rand(1, 3, 224, 224)), [4]))
    assert ran and seen[0].shape[1] == len(ids) + tiny_model.num_image_tokens  # the image path does splice
