"""A roofline estimate of one optimization step, operator by operator, at the real model's shapes, without a GPU:
where the seed's job (the Cambrian-8B shape) spends the time its FLOP floor does not account for, calibrated on the
LLaVA-1.5-7B shape whose step was measured at 90 % of its floor.

    PYTHONPATH=src python bench/roofline.py OUT.json [--fixtures ../shared/fixtures] [--model cambrian,llava]
        [--parts features,pixels] [--batch 8] [--peak-tflops 780] [--bandwidth-tbs 3.35]

The model is built on the meta device (shapes, no storage: the 8B in a second, on any machine). One step of the
seed job's objective (`ce`: a forward of every question's prompt with its input, then the backward to the input) runs
under a dispatch mode that sees every operator the GPU would run eagerly. For each: its FLOPs (torch's FLOP
formulas; grouped-query attention counted per query head) and the bytes it reads and writes (its tensor arguments and
results; views move nothing). Its time on the card is at least max(FLOPs / peak, bytes / bandwidth) (defaults: the
bf16 rate of an 8192^3 product measured on the H100 and H200, 780 TFLOP/s, and the H100's 3.35 TB/s; the H200 has
4.8). The sum, by kind (matrix products, attention, element-wise and reductions, copies) and, for the forward, by
component (the LM's decoder layers, the sampler layers, the SVA connector, each tower, the rest: the Python around
them), estimates the eager step (`--parts tokens` and `connector` isolate the LM and the connector, backward too); the element-wise time inside the blocks that `--compile` compiles shrinks when they are fused, the rest's
does not. Operators: `count` is the number of kernels the step launches eagerly.

Not modelled: kernel efficiency (a product runs below peak, smaller ones more so), launch gaps, the optimizer (fused
Adam: about 28 bytes per optimized value a step, added as its own line).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from torch.utils.module_tracker import ModuleTracker

sys.path.insert(0, str(Path(__file__).parent))
from seed_job import commit, gqa_flop_counts, repeated  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.models.vlm import Visual  # noqa: E402
from mirage.objectives import OBJECTIVES  # noqa: E402

aten = torch.ops.aten
MATRIX = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten.convolution_backward}
COPY = {aten._to_copy, aten.copy_, aten.cat, aten.clone, aten.index, aten.index_put, aten.index_put_, aten.gather,
        aten.scatter, aten.masked_scatter, aten.masked_fill, aten.constant_pad_nd, aten.stack, aten.repeat,
        aten.new_zeros, aten.zeros_like, aten.fill_, aten.zero_, aten.slice_backward, aten.select_backward,
        aten.index_select, aten.embedding, aten.embedding_dense_backward, aten.masked_scatter_backward,
        aten.scatter_add, aten.index_add, aten.expand_copy, aten._unsafe_view, aten.empty_like, aten.new_empty}
FREE = {aten.empty, aten.empty_like, aten.new_empty, aten.empty_strided, aten.new_empty_strided, aten.detach,
        aten.lift_fresh, aten._unsafe_view, aten.alias}


def kind_of(packet) -> str:
    name = str(packet)
    if packet in MATRIX:
        return "matrix"
    if "attention" in name:
        return "attention"
    if packet in COPY:
        return "copy"
    return "elementwise"


def nbytes(x) -> int:
    return x.numel() * x.element_size() if isinstance(x, torch.Tensor) else 0


def tensors(tree) -> list:
    out = []
    for x in tree if isinstance(tree, (list, tuple)) else [tree]:
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            out += tensors(x)
    return out


class Roofline(TorchDispatchMode):
    """Records (component, phase, kind) -> FLOPs, bytes, kernels; `component(parents)` names the component."""

    def __init__(self, tracker: ModuleTracker, component):
        super().__init__()
        self.tracker, self.component = tracker, component
        self.cells: dict[tuple, list] = defaultdict(lambda: [0, 0, 0])
        self.ops: dict[tuple, list] = defaultdict(lambda: [0, 0, 0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if func.is_view or packet in FREE or torch.Tag.pointwise not in func.tags and not tensors(out):
            return out
        flops = flop_registry[packet](*args, **kwargs, out_val=out) if packet in flop_registry else 0
        seen, moved = set(), 0
        for t in tensors(list(args) + list(kwargs.values())) + tensors(out):
            key = (t.untyped_storage()._cdata if t.device.type != "meta" else id(t), t.storage_offset())
            if key not in seen:
                seen.add(key)
                moved += nbytes(t)
        where = (self.component(self.tracker.parents), "backward" if self.tracker.is_bw else "forward",
                 kind_of(packet))
        for cell in (self.cells[where], self.ops[(str(packet), where[0])]):
            cell[0] += flops
            cell[1] += moved
            cell[2] += 1
        return out


CAMBRIAN_PARTS = (("lm_samplers", "LM sampler layers"), ("connector", "SVA connector"),
                  ("lm.model.layers", "LM decoder layers"), ("lm.lm_head", "LM head"), ("vision.", "tower"))
LLAVA_PARTS = (("language_model.layers", "LM decoder layers"), ("vision_tower", "tower clip"),
               ("multi_modal_projector", "projector"), ("lm_head", "LM head"))


def component(parts, parents: set[str]) -> str:
    """The first of `parts` ((name fragment, component)) that a running module's name holds; "tower" takes the
    tower's own name (Cambrian's `vision.NAME`)."""
    for key, name in parts:
        hit = next((p for p in parents if key in p), None)
        if hit is not None:
            return f"tower {hit.split(key, 1)[1].split('.')[0]}" if name == "tower" else name
    return "rest (eager glue)"


COMPILED = {"LM decoder layers", "LM sampler layers", "SVA connector", "tower siglip", "tower clip", "tower dino",
            "tower convnext"}


def build_cambrian(fixtures: str):
    from mirage.benchmarks.shapes.questions import vocabulary
    from mirage.models.cambrian import CambrianVLM, config_8b
    from mirage.models.cambrian.template import IMAGE_TOKEN, llama_3_prompt, word_level_tokenizer

    fixture = load_benchmark("mmmu", split="validation", data_dir=str(Path(fixtures) / "mmmu"))
    words = {w for q in fixture for w in fixture.prompt(q).split()} | set(vocabulary())
    tok = word_level_tokenizer(sorted(words))
    ids = tok(llama_3_prompt("x"), add_special_tokens=False).input_ids
    config = config_8b()
    config.image_position = ids.index(tok.convert_tokens_to_ids(IMAGE_TOKEN))
    model = CambrianVLM.random(config, tok, "meta", torch.bfloat16)
    model._warned.add("position")  # its check reads token ids, which meta tensors do not hold
    return model, fixture.for_model(model), functools.partial(component, CAMBRIAN_PARTS)


def build_llava(fixtures: str):
    """LLaVA-1.5-7B's shapes (`hf_7b_check.llava_7b_parts`) on the meta device, ShapesQA behind perf_7b.py's
    54-word context, as measured there."""
    import dataclasses

    import hf_7b_check as base
    from perf_7b import context_prompt
    from transformers import LlavaForConditionalGeneration

    from mirage.models.hf_llava import HFLlava

    bench = dataclasses.replace(load_benchmark("shapes", split="test", limit=576), prompt_style=context_prompt)
    processor, config = base.llava_7b_parts([w for q in bench.questions[:64] for w in bench.prompt(q).split()])
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    return HFLlava(model.eval().requires_grad_(False), processor), bench, functools.partial(component, LLAVA_PARTS)


def fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """`F.scaled_dot_product_attention` as the GPU runs it with a mask: one memory-efficient attention kernel (the
    meta device would otherwise take the math path, whose score matrices no GPU kernel writes); a boolean mask
    becomes an additive bias first, as torch does."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        r = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(r, -3), value.repeat_interleave(r, -3)
    bias = attn_mask
    if bias is not None:
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=query.dtype, device=query.device).masked_fill(~bias, float("-inf"))
        bias = bias.expand(*query.shape[:-1], key.shape[-2])
    return aten._scaled_dot_product_efficient_attention(query, key, value, bias, True, dropout_p, is_causal,
                                                        scale=scale)[0]


def meta_input(model, part: str, batch: int):
    """A `part` input of `batch` questions on the meta device that requires grad."""
    if part == "features":
        return {s.name: torch.empty(batch, s.num_tokens, s.dim, device="meta", requires_grad=True)
                for s in model.encoders}
    if part == "tokens":
        return torch.empty(batch, model.num_image_tokens if not hasattr(model, "connector") else model.config.side ** 2,
                           model.lm.config.hidden_size if hasattr(model, "lm") else model.model.config.text_config.hidden_size,
                           device="meta", dtype=torch.bfloat16, requires_grad=True)
    side = max(s.image_size for s in model.encoders)
    return torch.empty(batch, 3, side, side, device="meta", requires_grad=True)


def step(model, bench, part: str, batch: int) -> None:
    """One `ce` objective forward of `batch` questions with a `part` input that requires grad, and its backward;
    `connector`: the connector alone on features (forward and backward)."""
    qs = repeated(bench, batch).questions  # the fixture's questions in turn
    if part == "connector":
        model.connect(meta_input(model, "features", batch)).float().sum().backward()
        return
    loss, _ = OBJECTIVES.get("ce")(model, [bench.prompt(q) for q in qs], Visual(part, meta_input(model, part, batch)), qs)
    loss.sum().backward()


def estimate(cells: dict, peak: float, bandwidth: float) -> dict:
    rows = []
    for (component, phase, kind), (flops, moved, count) in sorted(cells.items()):
        ms = max(flops / peak, moved / bandwidth) * 1e3
        rows.append({"component": component, "phase": phase, "kind": kind, "tflop": round(flops / 1e12, 4),
                     "gb": round(moved / 1e9, 3), "kernels": count, "ms": round(ms, 3),
                     "bound": "compute" if flops / peak >= moved / bandwidth else "memory"})
    return rows


def summary(rows: list[dict], batch: int) -> dict:
    """Per question: the whole step's time, FLOPs and kernels; by kind; by component for the forward only (autograd
    runs a module's backward operators outside the module's hooks, so their attribution is not reliable); the
    element-wise time inside the blocks `--compile` compiles."""
    def by(key, rows=rows):
        return {k: round(sum(r["ms"] for r in rows if r[key] == k) / batch, 2) for k in sorted({r[key] for r in rows})}

    total = sum(r["ms"] for r in rows) / batch
    floor = sum(r["tflop"] for r in rows) / batch
    fusable = sum(r["ms"] for r in rows if r["kind"] == "elementwise" and r["component"] in COMPILED) / batch
    forward = [r for r in rows if r["phase"] == "forward"]
    return {"ms_per_question_step": round(total, 2), "tflop_per_question_step": round(floor, 3),
            "by_kind": by("kind"), "by_phase": by("phase"), "forward_by_component": by("component", forward),
            "elementwise_inside_compiled_blocks_ms": round(fusable, 2),
            "kernels_per_question_step": round(sum(r["kernels"] for r in rows) / batch, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fixtures", default="../shared/fixtures")
    ap.add_argument("--model", default="cambrian,llava")
    ap.add_argument("--parts", default="features,pixels")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--peak-tflops", type=float, default=780.0)
    ap.add_argument("--bandwidth-tbs", type=float, default=3.35)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--commit", default=None)
    args = ap.parse_args()
    gqa_flop_counts()
    import transformers.masking_utils as masking

    masking._ignore_causal_mask_sdpa = lambda *a, **k: False  # reads the mask's values; a padded batch keeps it
    masking.find_packed_sequence_indices = lambda position_ids: None  # reads positions; mirage packs none
    torch.nn.functional.scaled_dot_product_attention = fused_sdpa
    warnings.filterwarnings("ignore", message="image tokens without encoder features")
    peak, bandwidth = args.peak_tflops * 1e12, args.bandwidth_tbs * 1e12
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": args.commit or commit(), "torch": torch.__version__,
           "batch": args.batch, "peak_tflops": args.peak_tflops, "bandwidth_tbs": args.bandwidth_tbs, "models": {}}
    builders = {"cambrian": build_cambrian, "llava": build_llava}
    for name in args.model.split(","):
        model, bench, component = builders[name](args.fixtures)
        res["models"][name] = {}
        for part in args.parts.split(","):
            tracker = ModuleTracker()
            for key, module in model.named_modules():  # names from the model's root, not the first caller's
                tracker._known_modules[module] = key or "model"
            mode = Roofline(tracker, component)
            with tracker, mode:
                step(model, bench, part, args.batch)
            rows = estimate(mode.cells, peak, bandwidth)
            ops = sorted(((max(f / peak, b / bandwidth) * 1e3 / args.batch, op, comp, f, b, n)
                          for (op, comp), (f, b, n) in mode.ops.items()), reverse=True)[: args.top]
            res["models"][name][part] = {
                "summary": summary(rows, args.batch), "cells": rows,
                "top_ops_per_question_step": [{"op": op, "component": comp, "ms": round(ms, 3),
                                               "tflop": round(f / 1e12 / args.batch, 4),
                                               "gb": round(b / 1e9 / args.batch, 3), "kernels": n / args.batch}
                                              for ms, op, comp, f, b, n in ops]}
            print(name, part, json.dumps(res["models"][name][part]["summary"], indent=1), flush=True)
            Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
