"""`SplicedVLM`: a VLM whose LM reads image tokens spliced into its input embeddings at placeholder positions
(LLaVA-style). Prompt building, letter scoring, answer loss and greedy generation live here once."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..benchmarks.question import LETTERS
from .chat import answer_ids, chat_ids, content_start, image_turn
from .vlm import IMAGES, NONE, SOFT, VLM, Visual, on_device


@dataclass
class SoftSlots:
    """A soft prompt's `layout`: where its vectors stand in the batch [B, L] (the text-only prompt's own ids are
    kept around them; the placeholder ids under them are never read)."""

    where: Tensor


class SplicedVLM(VLM):
    """Subclasses provide `tokenizer`, `image_token_id`, `num_image_tokens`, `embed`, `lm_hidden` and
    `lm_head_logits`, and `render` where the chat template is not the tokenizer's."""

    tokenizer = None
    image_token_id: int
    num_image_tokens: int
    # True where the LM attends by the causal mask alone (1-D positions, no attention rule of its own such as
    # Gemma 3's bidirectional image tokens, `_hidden` not overridden): letter scoring then right-aligns each row and
    # passes no attention mask. Padding after a row's last token is never seen by it under the causal mask, so the
    # answer position's state is the unpadded one, and sdpa runs its causal kernel instead of a masked one.
    causal_scoring = False

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The model's chat template on `messages` (here the tokenizer's)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def chat_text(self, prompt: str, image: bool = True) -> str:
        """The model's chat-formatted user turn with one image placeholder (none when `image` is False: the
        template's text-only turn), ready for the answer."""
        return self.render(image_turn(prompt, image=image), True)

    def answered_text(self, prompt: str, answer: str) -> str:
        """`chat_text`'s conversation with the assistant's turn answering `answer` (where the letters are read)."""
        return self.render(image_turn(prompt, answer), False)

    def text_ids(self, text: str) -> list[int]:
        """A chat text's token ids as the model's processor gives them (placeholders not expanded)."""
        return chat_ids(self.tokenizer, text)

    def embed(self, input_ids: Tensor) -> Tensor:
        raise NotImplementedError

    def lm_hidden(self, embeds: Tensor, mask: Tensor, position_ids: Tensor) -> Tensor:
        """The LM's last hidden states [B, L, D] for input embeddings."""
        raise NotImplementedError

    def lm_head_logits(self, hidden: Tensor) -> Tensor:
        raise NotImplementedError

    # `generate` keeps the LM's key/value cache (`prefill`, then `lm_cached` a token at a time) where the backend's
    # cached steps are checked equal to recomputing the prefix (tests/cached_generation.py); the others recompute it
    cached_generation = False

    def lm_cached(self, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache):
        """The LM on `embeds` after the positions `cache` holds (None: the first): its hidden states [B, L, D] and
        the cache grown by them; `mask` covers the cached and the new positions."""
        raise NotImplementedError

    def prefill(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None
                ) -> tuple[Tensor, object, Tensor]:
        """The prompt through the LM keeping its key/value cache: the hidden states [B, L, D] (`_hidden`'s), the
        cache, and the position ids of each row's last token ([B, 1]; [3, B, 1] for M-RoPE), from which the
        generated tokens count on. A backend whose `_hidden` adds to the LM's inputs (Qwen3-VL's DeepStack,
        Cambrian's sampler layers, a family's attention inputs) adds them here too."""
        embeds, positions = self._embedded(input_ids, mask, image_tokens, layout)
        hidden, cache = self.lm_cached(embeds, mask, positions, None)
        return hidden, cache, positions[..., -1:]

    def cached_step(self, tokens: Tensor, mask: Tensor, positions: Tensor, cache) -> tuple[Tensor, object, Tensor]:
        """One generated token per row [B, 1] after the cached positions (`positions`: the last ones'): its hidden
        state [B, 1, D], the grown cache and its positions. A generated token is text: one position on, on every
        axis of M-RoPE too."""
        positions = positions + 1
        hidden, cache = self.lm_cached(self.embed(tokens), mask, positions, cache)
        return hidden, cache, positions

    def sequences(self, prompts: Sequence[str], targets: Sequence[str] | None = None,
                  counts: int | Sequence[int | Sequence[int]] | None = None, image: bool = True,
                  images: Sequence[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Left-padded ids with the image placeholder repeated `counts` times (per row, or `num_image_tokens`);
        mask; labels (-100 off target). `image=False`: the text-only prompts, no placeholder. `images`: how many
        images each row holds (placed at the prompt's `<image>` markers), each with its count in `counts[row]`."""
        if images is not None and any(k != 1 for k in images):
            cache = self.__dict__.setdefault("_prompt_ids", {})
            for p, k in zip(prompts, images):
                if (p, k) not in cache:
                    cache[p, k] = self.text_ids(self.chat_text(p, k))
            out = build_sequences(self.tokenizer, [cache[p, k] for p, k in zip(prompts, images)], targets,
                                  self.image_token_id, counts)
            return tuple(on_device(t, self.device) for t in out)
        counts = 0 if not image else self.num_image_tokens if counts is None else counts
        out = build_sequences(self.tokenizer, self.prompt_ids(prompts, image), targets, self.image_token_id, counts)
        return tuple(on_device(t, self.device) for t in out)

    def prompt_ids(self, prompts: Sequence[str], image: bool = True) -> list[list[int]]:
        """Each prompt's chat ids (one image placeholder, or none), unpadded."""
        # prompt -> token ids: an optimization asks for each prompt once per step, ~50 times, and the chat template
        # plus tokenizer cost host time on every call (bounded: cleared past 65,536 prompts)
        cache = self.__dict__.setdefault("_prompt_ids", {})
        if len(cache) > 65536:
            cache.clear()
        for p in prompts:
            if (p, image) not in cache:
                cache[p, image] = self.text_ids(self.chat_text(p, image))
        return [cache[p, image] for p in prompts]

    def soft_sequences(self, prompts: Sequence[str], targets: Sequence[str] | None, n: int
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The text-only prompts (`sequences(image=False)`'s ids) with `n` soft-prompt positions where the image
        would stand, the start of the user turn's content: ids, mask, labels and where the vectors go [B, L]."""
        if "_content_start" not in self.__dict__:
            self._content_start = content_start(self.text_ids, lambda p: self.chat_text(p, image=False))
        out = soft_sequences(self.tokenizer, self.prompt_ids(prompts, image=False), self._content_start, n, targets)
        return tuple(on_device(t, self.device) for t in out)

    def input_embeddings(self):
        return self.lm.get_input_embeddings()

    def prepare(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str] | None = None):
        """What one forward pass needs: ids, mask, labels, image tokens ([B, N, D], or [sum N_i, D] when rows hold
        different numbers) and a `layout` for `positions` (None here). A `none` visual gives the text-only prompts
        and no image tokens (None); a `soft` one the text-only prompts with its vectors (layout: `SoftSlots`)."""
        if visual.stage == NONE:
            return (*self.sequences(prompts, targets, image=False), None, None)
        if visual.stage == SOFT:
            if not self.soft_prompts:
                raise ValueError(f"{type(self).__name__}: its text path takes no soft prompt yet")
            input_ids, mask, labels, where = self.soft_sequences(prompts, targets, visual.value.shape[1])
            return input_ids, mask, labels, visual.value, SoftSlots(where)
        visual = several_images(visual)
        if visual.counts is not None:
            # several images in a row (`max_images`): each image its own placeholder block, in the row's order
            tokens = self.to_tokens(replace(visual, counts=None))  # [sum k, N, D]
            n = tokens.shape[1]
            input_ids, mask, labels = self.sequences(prompts, targets, [[n] * k for k in visual.counts],
                                                     images=visual.counts)
            return input_ids, mask, labels, tokens.reshape(-1, tokens.shape[-1]), None
        input_ids, mask, labels = self.sequences(prompts, targets)
        return input_ids, mask, labels, self.to_tokens(visual), None

    def positions(self, input_ids: Tensor, mask: Tensor | None, layout) -> Tensor:
        """Position ids of a left-padded batch: padding must not shift positions (no mask: rows start at 0)."""
        if mask is None:
            return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def _embedded(self, input_ids: Tensor, mask: Tensor | None, image_tokens: Tensor | None, layout=None
                  ) -> tuple[Tensor, Tensor]:
        """The LM's input embeddings [B, L, D] with image tokens at the placeholders, filled row by row (None: text
        only), and their position ids."""
        embeds = self.embed(input_ids)
        if isinstance(layout, SoftSlots):  # a soft prompt: its vectors in the text-only prompt, plain positions
            embeds, layout = place_soft(embeds, layout.where, image_tokens), None
        elif image_tokens is not None:
            slots = (input_ids == self.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, image_tokens.to(embeds.dtype))
        return embeds, self.positions(input_ids, mask, layout)

    def _hidden(self, input_ids: Tensor, mask: Tensor | None, image_tokens: Tensor | None, layout=None) -> Tensor:
        """The LM's hidden states [B, L, D] with image tokens at the placeholders, filled row by row (None: text only).
        `mask` None: every row starts at position 0 and the LM's causal mask is the only one (`causal_scoring`)."""
        embeds, positions = self._embedded(input_ids, mask, image_tokens, layout)
        return self.lm_hidden(embeds, mask, positions)

    def lm_logits(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None) -> Tensor:
        """LM logits [B, L, V] with the image tokens placed at the placeholder positions (None: text only)."""
        return self.lm_head_logits(self._hidden(input_ids, mask, image_tokens, layout))

    def next_token_logits(self, prompts: Sequence[str], visual: Visual) -> Tensor:
        input_ids, mask, _, tokens, layout = self.prepare(prompts, visual)
        if self.causal_scoring and (layout is None or isinstance(layout, SoftSlots)):
            if layout is not None:  # the soft vectors move with their row
                layout = SoftSlots(right_align(layout.where, mask)[0])
            input_ids, last = right_align(input_ids, mask)
            hidden = self._hidden(input_ids, None, tokens, layout)
            hidden = hidden.gather(1, last.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1]))
        else:
            hidden = self._hidden(input_ids, mask, tokens, layout)[:, -1:]
        return self.lm_head_logits(hidden)[:, 0].float()  # the head on the answer position only

    def letter_ids(self, n: int) -> list[int]:
        return chat_letter_ids(self, n)

    def answer_loss(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str]) -> Tensor:
        input_ids, mask, labels, tokens, layout = self.prepare(prompts, visual, targets)
        logits = self.lm_logits(input_ids, mask, tokens, layout)[:, :-1].float()
        labels = labels[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")  # [B, L-1]
        return nll.sum(1) / (labels != -100).sum(1).clamp(min=1)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], visual: Visual, max_new_tokens: int = 8) -> list[str]:
        """Greedy answers. With the key/value cache (`cached_generation`: every backend here) the prompt runs once
        and then one token per step (a 128-token caption costs 128 single-token forwards, not 128 passes over the
        prompt); without it (a new backend until its cached steps are tested) the prefix is recomputed each step.
        The LM head runs on the last position only."""
        input_ids, mask, _, tokens, layout = self.prepare(prompts, visual)
        eos = self.tokenizer.eos_token_id
        out = torch.empty(len(prompts), 0, dtype=torch.long, device=input_ids.device)
        if self.cached_generation:
            hidden, cache, positions = self.prefill(input_ids, mask, tokens, layout)
        for _ in range(max_new_tokens):
            if not self.cached_generation:
                hidden = self._hidden(input_ids, mask, tokens, layout)
            nxt = self.lm_head_logits(hidden[:, -1:])[:, -1].argmax(-1, keepdim=True)  # [B, 1]
            out = torch.cat([out, nxt], 1)
            input_ids, mask = torch.cat([input_ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
            if (out == eos).any(1).all() or out.shape[1] == max_new_tokens:
                break
            if self.cached_generation:
                hidden, cache, positions = self.cached_step(nxt, mask, positions, cache)
        texts = []
        for row in out.tolist():
            row = row[: row.index(eos)] if eos in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts


class TransformersSpliced(SplicedVLM):
    """A transformers `...ForConditionalGeneration` (`self.model`, with `self.inner = model.model` holding the
    `language_model`) read through the spliced path: the LM runs on our input embeddings."""

    @property
    def device(self) -> torch.device:
        return self.inner.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.get_input_embeddings().weight.dtype

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.inner.get_input_embeddings()(input_ids)

    def input_embeddings(self):
        return self.inner.get_input_embeddings()

    def lm_hidden(self, embeds: Tensor, mask: Tensor, position_ids: Tensor) -> Tensor:
        return self.inner.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids,
                                         use_cache=False).last_hidden_state

    def lm_cached(self, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache):
        return cached_forward(self.inner.language_model, embeds, mask, position_ids, cache)

    def lm_head_logits(self, hidden: Tensor) -> Tensor:
        return self.model.lm_head(hidden)

    def checkpointed_parts(self) -> list:
        return [self.model]  # the whole VLM: transformers passes the switch to its towers


def several_images(visual: Visual) -> Visual:
    """Real images given as one list per row (`VLM.visual_from_images` of rows with several) as one flat list
    with each row's `counts`; any other visual as it is."""
    if visual.stage != IMAGES or not any(isinstance(v, (list, tuple)) for v in visual.value):
        return visual
    rows = [v if isinstance(v, (list, tuple)) else [v] for v in visual.value]
    return Visual(IMAGES, [im for row in rows for im in row], tuple(len(r) for r in rows))


def cached_forward(lm, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache, **extra) -> tuple[Tensor, object]:
    """A transformers decoder (`LlamaModel` ...) on `embeds` after the positions its key/value `cache` holds (None:
    the first call), with `extra` inputs of its forward: (last hidden states, the grown cache)."""
    name = cache_argument(lm.forward)
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True, **{name: cache},
             **extra)
    return out.last_hidden_state, out[name]


def cache_argument(forward) -> str:
    """The name a transformers forward gives its key/value cache: `cache` since 5.2x, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def right_align(input_ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """A left-padded batch moved to the left edge of each row (its padding after it), and each row's last position
    [B], on the batch's device without a host sync."""
    lengths = mask.sum(1)
    width = input_ids.shape[1]
    index = (torch.arange(width, device=input_ids.device) + (width - lengths)[:, None]) % width
    return input_ids.gather(1, index), lengths - 1


def soft_sequences(tokenizer, ids: Sequence[list[int]], at: int, n: int, targets: Sequence[str] | None = None
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Tokenized text-only prompts with `n` placeholder positions inserted at token `at` (the pad id: its embedding
    is replaced), left-padded by `build_sequences`; also where the soft vectors go [B, L] (bool)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [list(r[:at]) + [pad] * n + list(r[at:]) for r in ids]
    input_ids, mask, labels = build_sequences(tokenizer, rows, targets, -1, 0)
    offset = torch.arange(input_ids.shape[1])[None] - ((mask == 0).sum(1) + at)[:, None]
    return input_ids, mask, labels, (offset >= 0) & (offset < n)


def place_soft(embeds: Tensor, where: Tensor, vectors: Tensor) -> Tensor:
    """Input embeddings [B, L, D] with a soft prompt's vectors [B, N, D] at `where` [B, L'] (L' <= L: greedy
    generation appends tokens after it)."""
    if where.shape[1] < embeds.shape[1]:
        where = torch.cat([where, where.new_zeros(len(where), embeds.shape[1] - where.shape[1])], 1)
    return embeds.masked_scatter(where.unsqueeze(-1), vectors.to(embeds.dtype))


def build_sequences(tokenizer, texts: Sequence[str] | Sequence[list[int]], targets: Sequence[str] | None,
                    image_token_id: int, num_image_tokens: int | Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Tokenize chat texts (`chat_ids`) or take them tokenized, repeat the image placeholder `num_image_tokens` times
    (one count for all rows or one per row; 0: texts carry no image), append target tokens, left-pad. Returns ids,
    attention mask and labels (-100 except on targets)."""
    texts = list(texts)
    ids = texts if texts and not isinstance(texts[0], str) else [chat_ids(tokenizer, t) for t in texts]
    tgt = tokenizer(list(targets), add_special_tokens=False).input_ids if targets is not None else [[]] * len(ids)
    counts = [num_image_tokens] * len(ids) if isinstance(num_image_tokens, int) else list(num_image_tokens)
    seqs, labels = [], []
    for prompt, t, num_image_tokens in zip(ids, tgt, counts):
        if not isinstance(num_image_tokens, int):  # several images in this row: one count per placeholder, in order
            if prompt.count(image_token_id) != len(num_image_tokens):
                raise ValueError(f"a prompt holds {prompt.count(image_token_id)} image placeholders for "
                                 f"{len(num_image_tokens)} images")
            it = iter(num_image_tokens)
            prompt = [x for tok in prompt for x in ([image_token_id] * next(it) if tok == image_token_id else [tok])]
        elif num_image_tokens > 0:
            if prompt.count(image_token_id) != 1:
                raise ValueError(f"a prompt must hold exactly one image placeholder, found {prompt.count(image_token_id)}")
            p = prompt.index(image_token_id)
            prompt = prompt[:p] + [image_token_id] * num_image_tokens + prompt[p + 1 :]
        seqs.append(prompt + t)
        labels.append([-100] * len(prompt) + t)
    n = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (n - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
    labels_t = torch.tensor([[-100] * (n - len(lab)) + lab for lab in labels])
    return input_ids, mask, labels_t


def chat_letter_ids(model, n: int) -> list[int]:
    """The first `n` answer letters' tokens as the model's template writes them in an assistant turn after
    `model.chat_text` (`model.answered_text`), found once and kept on the model."""
    if n > len(LETTERS):
        raise ValueError(f"{n} choices: at most {len(LETTERS)} letters")
    if not hasattr(model, "_letters"):
        letters = list(LETTERS)
        ids = getattr(model, "text_ids", None) or (lambda text: chat_ids(model.tokenizer, text))
        model._letters = answer_ids(ids, model.chat_text("x"),
                                    [model.answered_text("x", a) for a in letters], letters)
    return model._letters[:n]
