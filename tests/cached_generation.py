"""A check shared by the backends whose `generate` keeps the LM's key/value cache (`cached_generation`)."""

from __future__ import annotations

import torch


def assert_cached_generation(model, prompts, visual_of, monkeypatch, tokens: int = 6, texts: bool = True) -> None:
    """`visual_of(rows)`: the Visual of those prompt indices. The greedy tokens of the padded batch equal the loop
    that recomputes the whole prefix each step and each prompt generated alone; the prompt runs once, then one
    token a step; and each cached step's hidden state is the whole sequence's at that position (positions and mask
    of a padded batch). `texts` False: the model may answer nothing (a tiny one that ends at once), so the texts'
    equality proves little and the hidden states carry the check."""
    assert model.cached_generation and len(set(model.sequences(prompts)[1].sum(1).tolist())) > 1  # padded
    calls = []
    lm_cached = type(model).lm_cached
    monkeypatch.setattr(type(model), "lm_cached", lambda self, *a: calls.append(a[0].shape[1]) or lm_cached(self, *a))
    rows = list(range(len(prompts)))
    cached = model.generate(prompts, visual_of(rows), tokens)
    assert calls[0] > 1 and set(calls[1:]) == {1} and len(calls) == tokens  # the prompt once, then a token a step
    alone = [model.generate([p], visual_of([i]), tokens)[0] for i, p in enumerate(prompts)]
    calls.clear()
    with monkeypatch.context() as m:
        m.setattr(model, "cached_generation", False)
        assert model.generate(prompts, visual_of(rows), tokens) == cached == alone
    assert not calls and (all(cached) or not texts)
    input_ids, mask, _, image_tokens, layout = model.prepare(prompts, visual_of(rows))
    embeds, positions = model._embedded(input_ids, mask, image_tokens, layout)
    with torch.no_grad():
        hidden, cache = lm_cached(model, embeds, mask, positions, None)
        for nxt in torch.tensor([[5, 7, 9]] * len(prompts)).T[:, :, None]:
            input_ids, mask, positions = (torch.cat([input_ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1),
                                          positions[:, -1:] + 1)
            hidden, cache = lm_cached(model, model.embed(nxt), mask, positions, cache)
            whole = model._hidden(input_ids, mask, image_tokens, layout)[:, -1:]
            torch.testing.assert_close(hidden, whole, atol=1e-5, rtol=1e-4)
