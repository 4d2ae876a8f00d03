"""An SVA-style aggregator (Cambrian-1's Spatial Vision Aggregator, simplified): a grid of learnable queries,
each cross-attending to its own local window of every encoder's feature map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def windows(features: Tensor, grid: int) -> Tensor:
    """[B, g*g, D] feature map -> [B, grid*grid, w*w, D]: the w x w window under each query cell (w = g / grid)."""
    b, t, d = features.shape
    g = math.isqrt(t)
    if g * g != t or g % grid:
        raise ValueError(f"feature map of {t} tokens is not a square grid divisible by {grid}")
    w = g // grid
    x = features.view(b, grid, w, grid, w, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, grid * grid, w * w, d)


class CrossAttentionLayer(nn.Module):
    """Queries attend to their window's keys; then an MLP. Pre-norm, residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.o = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, q: Tensor, keys: Tensor) -> Tensor:
        # q: [B, Q, D]; keys: [B, Q, W, D] (each query has its own W keys)
        b, nq, nw, d = keys.shape
        h = self.heads
        qh = self.q(self.norm_q(q)).view(b * nq, 1, h, d // h).transpose(1, 2)  # [BQ, h, 1, d/h]
        k, v = self.kv(self.norm_kv(keys)).view(b * nq, nw, 2, h, d // h).unbind(2)
        att = F.scaled_dot_product_attention(qh, k.transpose(1, 2), v.transpose(1, 2))  # [BQ, h, 1, d/h]
        q = q + self.o(att.transpose(1, 2).reshape(b, nq, d))
        return q + self.mlp(self.norm_mlp(q))


class SpatialAggregator(nn.Module):
    """Encoder features {name: [B, T_e, D_e]} -> image tokens [B, grid*grid, out_dim]."""

    def __init__(self, encoder_dims: dict[str, int], encoder_tokens: dict[str, int], grid: int, dim: int,
                 out_dim: int, layers: int, heads: int):
        super().__init__()
        self.grid = grid
        self.names = list(encoder_dims)
        self.proj = nn.ModuleDict({n: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, dim)) for n, d in encoder_dims.items()})
        n_keys = sum(t // (grid * grid) for t in encoder_tokens.values())
        self.key_pos = nn.Parameter(torch.randn(n_keys, dim) * 0.02)  # which encoder, where in the window
        self.queries = nn.Parameter(torch.randn(grid * grid, dim) * 0.02)
        self.layers = nn.ModuleList(CrossAttentionLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)
        nn.init.normal_(self.out.weight, std=0.02)  # image tokens start at the text embeddings' scale
        nn.init.zeros_(self.out.bias)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        keys = torch.cat([windows(self.proj[n](features[n]), self.grid) for n in self.names], dim=2)  # [B, Q, W, D]
        keys = keys + self.key_pos
        q = self.queries.expand(keys.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, keys)
        return self.out(self.norm(q))
