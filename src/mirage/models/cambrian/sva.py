"""Cambrian-1's Spatial Vision Aggregator (SVA), in the checkpoint's module layout.

Each query owns one cell of a square grid and cross-attends to the window of every tower's feature map under its
cell (a tower with a g x g map and a q x q query grid gives (g/q)^2 keys per query), concatenated with a global
context (the mean of the first tower's projected features). The connector runs `connector_depth` such layers per
query group and projects to the LM; `connector_only: false` models (the 8B) also run one such layer on the LM's hidden
states at the image positions after every few LM layers (`SamplerInputs` carries their keys).

Verified against cambrian-mllm/cambrian (commit 539ffc3): `cambrian/model/vision_sampler.py` (VisionTokenSampler,
VisionCrossAttentionLayer, MultiKVCrossAttention, MLP: names, biases, 16 heads, pre-norms, residuals, learned
position embeddings only for windows of more than one key) and `cambrian/model/cambrian_arch.py`
(mm_projector_aux_i, vision_query, global context, window rearrangement, key masks from the image's padding,
bilinear resize of smaller query groups, mm_projector). Written anew; attribute names follow the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SVA_HEADS, CambrianConfig
from .processing import image_cells


class MLP(nn.Module):
    """Two bias-free linears with a GELU between (`proj_out` of a sampler layer)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.linear_1 = nn.Linear(d_in, d_hidden, bias=False)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(d_hidden, d_out, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class MultiKVCrossAttention(nn.Module):
    """Queries attend to the concatenated keys of several towers, each with its own pre-normed k/v projections."""

    def __init__(self, q_dim: int, kv_dims: list[int], hidden: int, heads: int = SVA_HEADS):
        super().__init__()
        self.heads, self.hidden, self.n = heads, hidden, len(kv_dims)
        self.q_proj = nn.Sequential(nn.LayerNorm(q_dim), nn.Linear(q_dim, hidden, bias=False))
        for i, d in enumerate(kv_dims):
            setattr(self, f"k_proj_{i}", nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden, bias=False)))
            setattr(self, f"v_proj_{i}", nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden, bias=False)))
        self.o_proj = nn.Linear(hidden, q_dim, bias=False)

    def forward(self, queries: Tensor, keys: list[Tensor], masks: list[Tensor] | None) -> Tensor:
        # queries [N, 1, q_dim]; keys[i] [N, W_i, kv_dim]; masks[i] [N, W_i] bool (True: attend)
        n, lq, _ = queries.shape
        h, hd = self.heads, self.hidden // self.heads
        q = self.q_proj(queries).view(n, lq, h, hd).transpose(1, 2)
        k = torch.cat([getattr(self, f"k_proj_{i}")(x) for i, x in enumerate(keys)], 1)
        v = torch.cat([getattr(self, f"v_proj_{i}")(x) for i, x in enumerate(keys)], 1)
        k, v = (t.view(n, -1, h, hd).transpose(1, 2) for t in (k, v))
        mask = torch.cat(masks, -1)[:, None, None, :] if masks is not None else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [N, h, 1, hd]
        return self.o_proj(out.transpose(1, 2).reshape(n, lq, self.hidden))


class SamplerLayer(nn.Module):
    """One SVA layer (the official VisionCrossAttentionLayer): query + context -> cross-attention -> MLP, residual."""

    def __init__(self, q_dim: int, context_dim: int, kv_dims: list[int], kv_sides: list[int], hidden: int):
        super().__init__()
        self.proj_context = nn.Linear(context_dim, hidden, bias=False)
        self.proj_in = nn.Linear(q_dim + hidden, hidden, bias=False)
        self.proj_out = MLP(hidden, hidden, q_dim)
        self.norm = nn.LayerNorm(hidden)
        self.cross_attn = MultiKVCrossAttention(hidden, kv_dims, hidden)
        for i, s in enumerate(kv_sides):
            if s > 1:  # a window of one key gets no position embedding
                setattr(self, f"pos_embed_{i}", nn.Parameter(torch.randn(s * s, hidden)))

    def forward(self, queries: Tensor, context: Tensor, keys: list[Tensor], masks: list[Tensor] | None) -> Tensor:
        # queries [N, 1, q_dim], context [N, 1, context_dim] -> [N, 1, q_dim]
        x = self.proj_in(torch.cat([queries, self.proj_context(context)], -1))
        keys = [k + getattr(self, f"pos_embed_{i}").to(k.dtype) if k.shape[1] > 1 else k for i, k in enumerate(keys)]
        x = x + self.cross_attn(x, keys, masks)
        return self.proj_out(self.norm(x)) + queries


class TokenSampler(nn.Module):
    """`depth` SVA layers (the official VisionTokenSampler)."""

    def __init__(self, q_dim: int, context_dim: int, kv_dims: list[int], kv_sides: list[int], hidden: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(SamplerLayer(q_dim, context_dim, kv_dims, kv_sides, hidden) for _ in range(depth))

    def forward(self, queries: Tensor, context: Tensor, keys: list[Tensor], masks: list[Tensor] | None) -> Tensor:
        for layer in self.layers:
            queries = layer(queries, context, keys, masks)
        return queries


@dataclass
class SamplerInputs:
    """What the LM's sampler layers read besides its hidden states: every tower's windows under the final token grid,
    their masks (None: no padding), and the global context, one row per (image, grid cell)."""

    keys: list[Tensor]  # [B*Q, W_i, vh] per tower
    masks: list[Tensor] | None  # [B*Q, W_i] bool per tower
    context: Tensor  # [B*Q, 1, vh]


def windows(x: Tensor, side: int) -> Tensor:
    """[B, g*g, C] map -> [B*side*side, r*r, C]: the r x r window under each cell of a side x side grid (r = g/side)."""
    b, t, c = x.shape
    g = math.isqrt(t)
    r = g // side
    return x.view(b, side, r, side, r, c).permute(0, 1, 3, 2, 4, 5).reshape(b * side * side, r * r, c)


def window_masks(sizes: Tensor, g: int, side: int) -> Tensor:
    """Which keys of each window show the image (not expand2square's padding): [B*side*side, r*r] bool. A window
    that is all padding attends to all its keys, as the official code does."""
    valid = torch.stack([image_cells(g, w, h) for w, h in sizes.tolist()])  # [B, g, g]
    m = windows(valid.flatten(1)[..., None], side)[..., 0]
    m[~m.any(-1)] = True
    return m


class SVAConnector(nn.Module):
    """Tower features -> image tokens [B, Q, D_lm] on the final grid, plus the SamplerInputs for the LM's layers."""

    def __init__(self, config: CambrianConfig, tower_dims: list[int], lm_dim: int):
        super().__init__()
        vh, n = config.vision_hidden_size, len(tower_dims)
        self.query_num_list, self.side = list(config.query_num_list), config.side
        self.tower_sides = [math.isqrt(t.token_len) for t in config.towers]
        for i, d in enumerate(tower_dims):
            setattr(self, f"mm_projector_aux_{i}",
                    nn.Sequential(nn.Linear(d, vh), nn.GELU(), nn.Linear(vh, vh), nn.LayerNorm(vh)))
        for g, q in enumerate(self.query_num_list):
            s = math.isqrt(q)
            setattr(self, f"vision_sampler_{g}", TokenSampler(vh, vh, [vh] * n, [t // s for t in self.tower_sides],
                                                              vh, config.connector_depth))
        self.vision_query = nn.Parameter(torch.randn(len(self.query_num_list), vh) * vh**-0.5)
        self.image_newline = nn.Parameter(torch.randn(lm_dim) * lm_dim**-0.5)
        self.mm_projector = nn.Sequential(nn.Linear(vh * len(self.query_num_list), lm_dim), nn.GELU(),
                                          nn.Linear(lm_dim, lm_dim))

    def project(self, features: list[Tensor]) -> list[Tensor]:
        """Each tower's features [B, T_i, D_i] -> [B, T_i, vh] (mm_projector_aux_i)."""
        return [getattr(self, f"mm_projector_aux_{i}")(f) for i, f in enumerate(features)]

    def sampler_inputs(self, aux: list[Tensor], side: int, sizes: Tensor | None) -> SamplerInputs:
        """Windows of the projected features under a side x side grid, their masks, and the global context."""
        context = aux[0].mean(1, keepdim=True).repeat_interleave(side * side, 0)  # [B*Q, 1, vh]
        masks = None
        if sizes is not None:
            masks = [window_masks(sizes, g, side).to(aux[0].device) for g in self.tower_sides]
        return SamplerInputs([windows(a, side) for a in aux], masks, context)

    def forward(self, features: list[Tensor], sizes: Tensor | None = None) -> tuple[Tensor, SamplerInputs]:
        """features[i] [B, T_i, D_i] in tower order; sizes [B, 2] (width, height) of the original images, or None for
        square ones. Returns tokens [B, side*side, D_lm] and the inputs of the LM's sampler layers."""
        aux = self.project(features)
        b = aux[0].shape[0]
        final = None
        groups = []
        for g, q in enumerate(self.query_num_list):
            s = math.isqrt(q)
            inputs = self.sampler_inputs(aux, s, sizes)
            if s == self.side:
                final = inputs
            queries = self.vision_query[g].to(aux[0].dtype).view(1, 1, -1).expand(b * q, 1, -1)
            out = getattr(self, f"vision_sampler_{g}")(queries, inputs.context, inputs.keys, inputs.masks)
            out = out.view(b, q, -1)
            if s != self.side:  # smaller query grids are bilinearly resized to the final grid
                grid = out.transpose(1, 2).reshape(b, -1, s, s).float()
                grid = F.interpolate(grid, size=(self.side, self.side), mode="bilinear", align_corners=False)
                out = grid.to(out.dtype).flatten(2).transpose(1, 2)
            groups.append(out)
        tokens = self.mm_projector(torch.cat(groups, -1))  # [B, side*side, D_lm]
        return tokens, final if final is not None else self.sampler_inputs(aux, self.side, sizes)
