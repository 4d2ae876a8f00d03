"""The soft-prompt control on the demo architecture: free vectors in the text-only prompt, where the image would
stand, that never pass through an image token, an encoder or the connector; batched rows equal rows alone."""

import pytest
import torch

from mirage.inputs import Reference, build_input
from mirage.models.vlm import SOFT, Visual


def test_the_soft_prompt_sees_no_image_token(tiny_model, small_bench, monkeypatch):
    qs = small_bench.questions[:4]
    prompts = [small_bench.prompt(q) for q in qs]
    assert len({len(p.split()) for p in prompts}) > 1  # rows of different lengths: padding is exercised
    inp = build_input("soft-prompt", tiny_model, 4, Reference({}, (0.0, 1.0), (0, 0), {}), seed=0)
    for s, q in enumerate(qs):
        inp.reset(s, q.id)
    assert inp.vectors.shape == (4, tiny_model.num_image_tokens, tiny_model.lm.config.hidden_size)  # the default
    visual = inp(torch.arange(4))
    ids, mask, _, vectors, layout = tiny_model.prepare(prompts, visual)
    none_ids, none_mask, *_ = tiny_model.prepare(prompts, Visual.none())
    assert not (ids == tiny_model.image_token_id).any()
    for row in range(4):  # the `none` prompt's own ids around the vectors, which sit after `<bos> <|user|>`
        text = ids[row][mask[row].bool() & ~layout.where[row]]
        assert text.tolist() == none_ids[row][none_mask[row].bool()].tolist()
        at = layout.where[row].nonzero()[:, 0]
        assert len(at) == tiny_model.num_image_tokens and tiny_model.tokenizer.convert_ids_to_tokens(
            ids[row][at[0] - 2 : at[0]].tolist()) == ["<bos>", "<|user|>"]

    def no_image(*_):
        raise AssertionError("the image path ran")

    monkeypatch.setattr(tiny_model, "encode", no_image)
    monkeypatch.setattr(tiny_model, "connect", no_image)
    seen = []
    lm_hidden = tiny_model.lm_hidden
    monkeypatch.setattr(tiny_model, "lm_hidden", lambda e, m, p: seen.append(e) or lm_hidden(e, m, p))
    logits = tiny_model.choice_logits(prompts, visual, [len(q.choices) for q in qs])
    (embeds,) = seen  # right-aligned rows: every row's vectors, then its text, then padding
    for row in range(4):
        n = int(mask[row].sum())
        aligned = torch.cat([ids[row][mask[row].bool()], ids[row][~mask[row].bool()]])
        where = torch.cat([layout.where[row][mask[row].bool()], layout.where[row][~mask[row].bool()]])
        torch.testing.assert_close(embeds[row][where], visual.value[row])
        text = embeds[row][:n][~where[:n]]
        torch.testing.assert_close(text, tiny_model.embed(aligned[:n][~where[:n]]))
        alone = tiny_model.choice_logits(prompts[row : row + 1], visual.select([row]), [len(qs[row].choices)])
        torch.testing.assert_close(logits[row : row + 1], alone, atol=1e-4, rtol=1e-4)
    logits.logsumexp(-1).sum().backward()
    assert inp.vectors.grad.abs().sum(-1).gt(0).all()  # every vector of every row moves the answer


def test_soft_prompt_options_are_refused_by_name(tiny_model):
    from mirage.errors import UsageError
    from mirage.experiments import OptimizeSpec

    with pytest.raises(UsageError, match="--soft-tokens applies to --input soft-prompt"):
        OptimizeSpec("features", soft_tokens=8)
    assert OptimizeSpec("soft-prompt", scope="universal").source == "soft-prompt-universal"
    inp = build_input("soft-prompt", tiny_model, 1, Reference({}, (0.0, 1.0), (0, 0), {}), soft_tokens=5)
    assert inp(torch.zeros(3, dtype=torch.long)).value.shape == (3, 5, tiny_model.lm.config.hidden_size)
    assert inp(torch.zeros(1, dtype=torch.long)).stage == SOFT
