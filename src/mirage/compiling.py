"""`torch.compile` for the repeated blocks of a model (decoder layers, ViT layers, aggregator layers).

Compiling each block rather than the whole VLM keeps graphs small and identical: every decoder layer of an LM
shares one compiled graph (parameters are graph inputs), so a 32-layer LM compiles once per shape family. The
Python around the blocks (prompt building, splicing image tokens, the loss) stays eager. What it buys is fusion of
the element-wise work between the matrix products (RMSNorm in float32, RoPE, SiLU-gating, residual adds) in the
forward and the backward; on a 7B LM that work takes about as long as the matrix products themselves
(bench/RESULTS.md, the performance section).
"""

from __future__ import annotations

import torch
from torch import nn

# Blocks of every class share one code object (`Module._call_impl`), and dynamo's recompile limit counts graphs per
# code object: a VLM's towers and LM layers (different widths and token counts), with and without gradients, and
# the dynamic-shape variants exceed the default 8, after which blocks silently run eagerly.
RECOMPILE_LIMIT = 64


def _repeated(module: nn.Module) -> bool:
    return isinstance(module, nn.ModuleList) and len(module) >= 2 and len({type(m) for m in module}) == 1


def _holds_blocks(block: nn.Module) -> bool:
    """Whether `block` holds a list of repeated blocks of its own (lists of repeated leaves, such as heads, are
    traced with it)."""
    return any(_repeated(m) and any(True for _ in m[0].children()) for m in block.modules() if m is not block)


def compile_blocks(model: nn.Module, backend: str = "inductor") -> int:
    """Compile, in place, every element of each `nn.ModuleList` whose elements are ≥ 2 modules of one class: the
    outermost such lists, unless their blocks hold such lists of blocks themselves, and then those. A decoder
    layer's inner modules are traced with it; ConvNeXt's stages hold its repeated layers, and a tower that runs
    the layers one by one (Cambrian's, to read every stage and checkpoint a layer at a time) never calls a stage
    as a module, so the layers are the blocks. Returns the number of blocks."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6's name
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    count = 0

    def walk(module: nn.Module) -> None:
        nonlocal count
        for child in module.children():
            if _repeated(child) and not any(_holds_blocks(block) for block in child):
                for block in child:
                    block.compile(backend=backend)
                count += len(child)
            else:
                walk(child)

    walk(model)
    return count
