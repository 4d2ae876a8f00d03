"""Qwen2-VL and Qwen2.5-VL (transformers) behind mirage's VLM interface.

Two ways in:

* **Native resolution** (`visual_from_images`, used by the image conditions and by evaluation): each image goes
  through the model's own image processor, which resizes it so both sides are multiples of 28 within the
  processor's pixel bounds and keeps its aspect ratio; images in a batch give different numbers of tokens, and
  each prompt gets as many image placeholders as its image gives tokens. This is the setting published numbers use.
* **Fixed resolution** (`image_size`, default 448; the stages `pixels`, `processed`, `features`, `tokens` that
  optimization uses): every image is an `image_size` x `image_size` square, so every question has the same
  (image_size / 14)^2 patches and (image_size / 28)^2 image tokens, and inputs can be batched and optimized.

How the dynamic-resolution patching is made differentiable: the processor's only non-differentiable steps are
the choice of the output size (`smart_resize`) and PIL resampling. At a fixed size the choice is made once;
`preprocess` then does the rest with tensor operations: bicubic resize with antialiasing to the square,
normalisation with the processor's mean and std, and the processor's patch layout as a reshape/permute (patches
of 14 x 14 ordered by 2 x 2 merge window, each repeated over the 2 frames of the temporal patch), so gradients flow
from the LM back to the pixels. On an image already at the fixed size it equals the processor's output.

Stages: `processed` = the patch rows [B, P, 3 * 2 * 14 * 14]; `features` = the vision transformer's last hidden
states before the patch merger [B, P, D_vision], in the processor's patch order (Qwen2.5-VL's window-attention
order is undone); `tokens` = the merger's output [B, P / 4, D_lm], what the LM reads.

Positions: the LM uses multimodal rotary positions (M-RoPE: temporal, height, width). Text tokens count up as
usual; the image block of h x w tokens starting at position s gets (s, s + row, s + column); text after it
continues from s + max(h, w). `positions` computes this for left-padded batches, with one grid per row.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .spliced import TransformersSpliced, cached_forward, several_images
from .vlm import IMAGES, NONE, EncoderSpec, Visual, on_device

ENCODER = "vision"
DEFAULT_IMAGE_SIZE = 448


def patchify(x: Tensor, patch: int, merge: int, temporal: int) -> Tensor:
    """Normalised images [B, C, H, W] -> patch rows [B, (H/p)(W/p), C * temporal * p * p] in the Qwen2-VL
    processor's order: merge windows row by row, the patches of a window row by row, each patch flattened as
    (channel, frame, y, x) with the image repeated over the `temporal` frames."""
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(b, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # [B, gh/m, gw/m, m, m, C, p, p]
    x = x.unsqueeze(-3).expand(*x.shape[:6], temporal, patch, patch)
    return x.reshape(b, gh * gw, c * temporal * patch * patch)


def window_order(grids: Sequence[Sequence[int]], merge: int, window: int, patch: int) -> Tensor:
    """Qwen2.5-VL's window-attention order of merge units (groups of merge x merge patches): per image, units in
    windows of (window / merge / patch)^2 units, windows row by row; the grid is padded by whole windows first."""
    size = window // merge // patch
    out, offset = [], 0
    for t, h, w in grids:
        gh, gw = h // merge, w // merge
        index = torch.arange(t * gh * gw).reshape(t, gh, gw)
        ph, pw = size - gh % size, size - gw % size
        padded = F.pad(index, (0, pw, 0, ph), value=-1)
        nh, nw = (gh + ph) // size, (gw + pw) // size
        padded = padded.reshape(t, nh, size, nw, size).permute(0, 1, 3, 2, 4).reshape(-1)
        out.append(padded[padded >= 0] + offset)
        offset += t * gh * gw
    return torch.cat(out)


def mrope_positions(input_ids: Tensor, mask: Tensor, image_token_id: int,
                    grids: Sequence[Sequence[int] | Sequence[Sequence[int]] | None], merge: int) -> Tensor:
    """M-RoPE position ids [3, B, L] of a left-padded batch whose row b holds the image blocks of `grids[b]` in
    order (one grid t, h, w in patches, a list of them for several images, or None for a text-only row), as
    transformers' `get_rope_index` gives them: text counts on from the last position on all three axes; a block of
    t x h x w tokens starting at position s gets (s + frame, s + row, s + column), and the text after it continues
    from the block's largest position + 1."""
    b_, l_ = input_ids.shape
    pos = torch.zeros(3, b_, l_, dtype=torch.long, device=input_ids.device)
    for b in range(b_):
        valid = mask[b].bool()
        ids = input_ids[b, valid]
        n = ids.numel()
        row = grids[b]
        blocks = [] if row is None else [row] if isinstance(row[0], int) else list(row)
        where = (ids == image_token_id).nonzero().flatten().tolist()
        parts, at, start, seen = [], 0, 0, 0  # at: next token; start: next position
        for t, h, w in blocks:
            gh, gw = h // merge, w // merge
            count = t * gh * gw
            if seen + count > len(where):
                raise ValueError(f"row {b}: {len(where)} image placeholders, the grids {blocks} give more")
            s0 = where[seen]
            if where[seen + count - 1] != s0 + count - 1:
                raise ValueError(f"row {b}: the image block at {s0} is not {count} placeholders in a row")
            parts.append(torch.arange(s0 - at, device=ids.device).expand(3, -1) + start)
            tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij")
            block = torch.stack([tt, hh, ww]).reshape(3, -1).to(ids.device) + start + (s0 - at)
            parts.append(block)
            start, at, seen = int(block.max()) + 1, s0 + count, seen + count
        if seen != len(where):
            raise ValueError(f"row {b}: {len(where)} image placeholders, the grids {blocks} give {seen}")
        parts.append(torch.arange(n - at, device=ids.device).expand(3, -1) + start)
        pos[:, b, valid] = torch.cat(parts, 1)
    return pos


class HFQwen2VL(TransformersSpliced):
    """A transformers Qwen2-VL or Qwen2.5-VL model, its image processor and tokenizer (with the chat template)."""

    max_images = 64  # images per question at native resolution (the `images` stage), each where its text says
    # `generate` keeps the LM's key/value cache: a generated token's M-RoPE position is the last one + 1 on all three
    # axes (transformers' rope_deltas give the same: text after the image counts on from its largest position)
    cached_generation = True
    prompt_family = "qwen"  # `--prompt model`: the Qwen-VL prompts lmms-eval publishes (mmstar_qwen, mmmu_val_qwen)

    def __init__(self, model, image_processor, tokenizer, image_size: int | None = None):
        super().__init__()
        self.model, self.image_processor, self.tokenizer = model, image_processor, tokenizer
        self.tokenizer.padding_side = "left"
        self.inner = model.model  # Qwen2VLModel: visual, language_model
        self.visual = self.inner.visual
        cfg = model.config
        vc = cfg.vision_config
        self.patch, self.merge, self.temporal = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
        self.window = getattr(vc, "window_size", None) if cfg.model_type == "qwen2_5_vl" else None
        self.image_token_id = cfg.image_token_id
        size = image_size or DEFAULT_IMAGE_SIZE
        unit = self.patch * self.merge
        if size % unit:
            raise ValueError(f"image_size {size}: the Qwen2-VL family needs a multiple of {unit} "
                             f"(e.g. {max(unit, size // unit * unit)} or {(size // unit + 1) * unit})")
        self.image_size, self.grid = size, size // self.patch
        n = self.grid * self.grid
        dim = self.visual.patch_embed.proj.out_channels
        ip = image_processor
        self.encoders = [EncoderSpec(ENCODER, size, tuple(ip.image_mean), tuple(ip.image_std), n, dim)]
        self.num_image_tokens = n // self.merge**2

    # --- visual path ---------------------------------------------------------------------------
    def visual_from_images(self, images: Sequence[Image.Image]) -> Visual:
        return Visual(IMAGES, list(images))  # native resolution, through the processor

    def _processor(self, images: Sequence[Image.Image]) -> tuple[Tensor, Tensor]:
        out = self.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        return out["pixel_values"].to(self.device), out["image_grid_thw"]

    def process_images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        """The real processor on images resized (PIL bicubic) to the fixed `image_size` square."""
        s = self.image_size
        pv, grids = self._processor([im.convert("RGB").resize((s, s), Image.BICUBIC) for im in images])
        if (grids != torch.tensor([1, self.grid, self.grid])).any():
            raise ValueError(f"image_size {s}: the image processor resizes a {s}x{s} image to a grid of "
                             f"{grids[0].tolist()} patches; choose a size within its pixel bounds ({self._bounds()})")
        return {ENCODER: pv.view(len(images), -1, pv.shape[-1])}

    def _bounds(self) -> str:
        ip = self.image_processor
        size = getattr(ip, "size", None) or {}
        lo = size.get("shortest_edge", getattr(ip, "min_pixels", None))
        hi = size.get("longest_edge", getattr(ip, "max_pixels", None))
        return f"{lo} to {hi} pixels"

    def preprocess(self, pixels: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        s = self.image_size
        x = pixels
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        ip = self.image_processor
        mean = on_device(ip.image_mean, x.device, x.dtype).view(1, 3, 1, 1)
        std = on_device(ip.image_std, x.device, x.dtype).view(1, 3, 1, 1)
        return {ENCODER: patchify((x - mean) / std, self.patch, self.merge, self.temporal)}

    def _vision(self, rows: Tensor, grids: Sequence[Sequence[int]]) -> Tensor:
        """Patch rows [sum P, 1176] of images with `grids` -> last hidden states [sum P, D_vision], processor order."""
        thw = on_device([list(g) for g in grids], rows.device)
        h = self.visual(rows.to(self.visual.patch_embed.proj.weight.dtype), grid_thw=thw).last_hidden_state
        if self.window:  # undo the window-attention order, merge unit by merge unit
            unit = self.merge**2
            back = torch.argsort(window_order(grids, self.merge, self.window, self.patch)).to(h.device)
            h = h.view(-1, unit, h.shape[-1])[back].reshape(h.shape)
        return h

    def _native_tokens(self, rows: Tensor, grids: Sequence[Sequence[int]]) -> Tensor:
        """The tower and merger on the processor's patch rows of images with `grids`: [sum N_i, D_lm]."""
        return self.visual.merger(self._vision(rows, grids))

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        x = processed[ENCODER]  # [B, P, 1176]
        h = self._vision(x.reshape(-1, x.shape[-1]), [(1, self.grid, self.grid)] * x.shape[0])
        return {ENCODER: h.view(x.shape[0], x.shape[1], -1)}

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        f = features[ENCODER]  # [B, P, D_vision]
        merged = self.visual.merger(f.reshape(-1, f.shape[-1]).to(self.visual.patch_embed.proj.weight.dtype))
        return merged.view(f.shape[0], -1, merged.shape[-1])

    def prepare(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str] | None = None):
        if visual.stage == NONE:  # text only: plain positions on all three M-RoPE axes (layout None)
            return super().prepare(prompts, visual, targets)
        visual = several_images(visual)  # several images per row: one flat list and each row's count
        if visual.stage == IMAGES:  # native resolution: a grid and a token count per image
            pv, thw = self._processor(visual.value)
            flat = [tuple(g) for g in thw.tolist()]
            tokens = self._native_tokens(pv, flat)  # [sum N_i, D_lm], row by row, image by image
        else:  # fixed resolution: the same grid for every image
            tokens = self.to_tokens(replace(visual, counts=None))
            flat = [(1, self.grid, self.grid)] * len(tokens)
            tokens = tokens.reshape(-1, tokens.shape[-1]) if visual.counts is not None else tokens
        counts = [t * h * w // self.merge**2 for t, h, w in flat]
        if visual.counts is None:
            input_ids, mask, labels = self.sequences(prompts, targets, counts)
            return input_ids, mask, labels, tokens, flat
        ends = torch.tensor(visual.counts).cumsum(0).tolist()
        by_row = [list(range(e - k, e)) for e, k in zip(ends, visual.counts)]
        input_ids, mask, labels = self.sequences(prompts, targets, [[counts[i] for i in r] for r in by_row],
                                                 images=visual.counts)
        return input_ids, mask, labels, tokens, [[flat[i] for i in r] for r in by_row]

    # --- language side -------------------------------------------------------------------------
    def positions(self, input_ids: Tensor, mask: Tensor, layout) -> Tensor:
        grids = layout if layout is not None else [None] * len(input_ids)
        return mrope_positions(input_ids, mask, self.image_token_id, grids, self.merge)


class HFQwen3VL(HFQwen2VL):
    """Qwen3-VL: the Qwen2-VL layout with 16 px patches (32 px merge units, so `image_size` is a multiple of 32) and
    DeepStack: the hidden states of some vision layers (`deepstack_visual_indexes`), each through its own merger,
    are added to the LM's hidden states at the image positions after its first layers.

    Stages: `features` = the last hidden states (`vision`) and one encoder per DeepStack layer (`deepstack<i>`, the
    hidden state after vision block i), all [B, P, D_vision]; `tokens` = the merger's output and the DeepStack
    mergers' outputs side by side, [B, N, D_lm * (1 + layers)]: everything visual the LM reads."""

    max_images = 1  # several images per question: built and tested on Qwen2-VL and Qwen2.5-VL only

    def __init__(self, model, image_processor, tokenizer, image_size: int | None = None):
        super().__init__(model, image_processor, tokenizer, image_size)
        self.deep = list(self.visual.deepstack_visual_indexes)
        (spec,) = self.encoders
        self.encoders = [spec] + [replace(spec, name=f"deepstack{i}") for i in self.deep]
        self.lm_dim = model.config.text_config.hidden_size

    def _tower(self, rows: Tensor, grids: Sequence[Sequence[int]]):
        thw = on_device([list(g) for g in grids], rows.device)
        out = self.visual(rows.to(self.visual.patch_embed.proj.weight.dtype), grid_thw=thw, output_hidden_states=True)
        return out, [out.hidden_states[i + 1] for i in self.deep]  # hidden_states[0] is the patch embedding

    def _native_tokens(self, rows: Tensor, grids: Sequence[Sequence[int]]) -> Tensor:
        out, _ = self._tower(rows, grids)
        return torch.cat([out.pooler_output, *out.deepstack_features], -1)  # [sum N_i, D_lm * (1 + layers)]

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        x = processed[ENCODER]  # [B, P, 1536]
        out, deep = self._tower(x.reshape(-1, x.shape[-1]), [(1, self.grid, self.grid)] * x.shape[0])
        hs = [out.last_hidden_state, *deep]
        return {s.name: h.view(x.shape[0], x.shape[1], -1) for s, h in zip(self.encoders, hs)}

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        dtype = self.visual.patch_embed.proj.weight.dtype
        flat = {k: v.reshape(-1, v.shape[-1]).to(dtype) for k, v in features.items()}  # [B * P, D_vision]
        parts = [self.visual.merger(flat[ENCODER])]
        parts += [m(flat[f"deepstack{i}"]) for m, i in zip(self.visual.deepstack_merger_list, self.deep)]
        b = features[ENCODER].shape[0]
        return torch.cat(parts, -1).view(b, -1, self.lm_dim * len(parts))

    def _deepstack(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout
                   ) -> tuple[Tensor, Tensor, dict]:
        """The LM's input embeddings, positions, and the DeepStack inputs its first layers add at the image slots."""
        embeds = self.embed(input_ids)
        positions = self.positions(input_ids, mask, layout)
        extra = {}
        if image_tokens is not None:
            d = self.lm_dim
            flat = image_tokens.reshape(-1, image_tokens.shape[-1]).to(embeds.dtype)  # [sum N, D_lm * (1 + layers)]
            slots = input_ids == self.image_token_id
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), flat[:, :d])
            extra = dict(visual_pos_masks=slots, deepstack_visual_embeds=list(flat[:, d:].split(d, -1)))
        return embeds, positions, extra

    def _hidden(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None) -> Tensor:
        embeds, positions, extra = self._deepstack(input_ids, mask, image_tokens, layout)
        return self.inner.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                         use_cache=False, **extra).last_hidden_state

    def prefill(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None):
        # DeepStack adds to the prompt's image slots only: the generated tokens are plain `lm_cached` steps
        embeds, positions, extra = self._deepstack(input_ids, mask, image_tokens, layout)
        hidden, cache = cached_forward(self.inner.language_model, embeds, mask, positions, None, **extra)
        return hidden, cache, positions[..., -1:]
