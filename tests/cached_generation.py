"""A check shared by the backends whose `generate` keeps the LM's key/value cache (`cached_generation`)."""

from __future__ import annotations

import torch


def assert_cached_generation(model, prompts, visual_of, monkeypatch, tokens: int = 6, texts: bool = True,
                             atol: float = 1e-5) -> None:
    """`visual_of(rows)`: the Visual of those prompt indices. The greedy tokens of the padded batch equal the loop
    that recomputes the whole prefix each step and each prompt generated alone; the prompt runs once (`prefill`),
    then one token a step (`lm_cached`); the prefill's hidden states are `_hidden`'s, and each cached step's
    (`cached_step`, generate's own) is the whole sequence's at that position (positions and mask of a padded batch).
    `texts` False: the model may answer nothing (a tiny one that ends at once), so the texts' equality proves
    little and the hidden states carry the check."""
    assert model.cached_generation and len(set(model.sequences(prompts)[1].sum(1).tolist())) > 1  # padded
    calls, inside = [], []
    prefill, lm_cached = type(model).prefill, type(model).lm_cached

    def counted_prefill(self, input_ids, *a):
        calls.append(("prefill", input_ids.shape[1]))
        inside.append(True)
        try:
            return prefill(self, input_ids, *a)
        finally:
            inside.pop()

    def counted_step(self, embeds, *a):
        if not inside:
            calls.append(embeds.shape[1])
        return lm_cached(self, embeds, *a)

    monkeypatch.setattr(type(model), "prefill", counted_prefill)
    monkeypatch.setattr(type(model), "lm_cached", counted_step)
    rows = list(range(len(prompts)))
    cached = model.generate(prompts, visual_of(rows), tokens)
    width = model.prepare(prompts, visual_of(rows))[0].shape[1]
    assert calls == [("prefill", width)] + [1] * (tokens - 1)  # the prompt once, then a token a step
    alone = [model.generate([p], visual_of([i]), tokens)[0] for i, p in enumerate(prompts)]
    calls.clear()
    with monkeypatch.context() as m:
        m.setattr(model, "cached_generation", False)
        assert model.generate(prompts, visual_of(rows), tokens) == cached == alone
    assert not calls and (all(cached) or not texts)
    input_ids, mask, _, image_tokens, layout = model.prepare(prompts, visual_of(rows))
    with torch.no_grad():
        hidden, cache, positions = prefill(model, input_ids, mask, image_tokens, layout)
        torch.testing.assert_close(hidden, model._hidden(input_ids, mask, image_tokens, layout), atol=atol, rtol=1e-4)
        words = [t for t in input_ids[0][mask[0] > 0].tolist() if t != model.image_token_id][-3:]  # text tokens
        for nxt in torch.tensor([words] * len(prompts), device=input_ids.device).T[:, :, None]:
            input_ids, mask = torch.cat([input_ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
            hidden, cache, positions = model.cached_step(nxt, mask, positions, cache)  # generate's own step
            whole = model._hidden(input_ids, mask, image_tokens, layout)[:, -1:]
            torch.testing.assert_close(hidden, whole, atol=atol, rtol=1e-4)
