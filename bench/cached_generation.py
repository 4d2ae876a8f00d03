"""Greedy generation with the LM's key/value cache against recomputing the prefix each step, on Cambrian (the seed's
model: its sampler layers run in the prefill only) with the MMMU validation fixture's questions and images: what
`caption:self` (128 tokens a caption) costs per question each way, and that both give the same text.

    PYTHONPATH=src python bench/cached_generation.py OUT.json [--fixtures ../shared/fixtures] [--tiny --device cpu]

The model is `seed_job.build`'s (the Cambrian-8B shape with random weights, or `--tiny`); the prompts are the
fixture's questions behind the caption instruction (the condition's own words), ~790 tokens with the 600 image
slots, a batch of `--batch`. Each way runs `generate(max_new_tokens=--tokens)` once after a 2-token warm-up; the
steps are counted at the LM head (a tiny random model may stop early at its end token, and then both ways stop at
the same step). Per row, the first step whose greedy token differs between the ways, and there the recomputing
way's top logit and its gap to the second (bf16 rounds a logit near 10 to 1/16: a smaller gap is a tie that kernel
order may break either way); the texts of the word-level tokenizer are often empty for random weights, so the
tokens are compared too. The cached way is also taken apart: its prefill alone (a 1-token generate), the seconds a
step after it, and torch.profiler over a `--profile-tokens` generate (GPU busy time against wall: a host-bound step
leaves the GPU idle).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from cambrian_profile import kernel_summary  # noqa: E402
from seed_job import build, commit, model_arguments  # noqa: E402

from mirage.conditions import CAPTION_PROMPT, CAPTION_TOKENS  # noqa: E402


def timed_generate(model, prompts, visual, tokens: int, cached: bool) -> dict:
    """`generate` one way: seconds, LM-head steps, the texts, and per step each row's greedy token and the gap
    between its two largest logits (what decides whether a rounding difference can change the token)."""
    model.cached_generation = cached
    steps = []
    head = model.lm_head_logits

    def counted(h):
        logits = head(h)
        top = logits[:, -1].float().topk(2, -1)
        steps.append((top.indices[:, 0], top.values[:, 0], top.values[:, 0] - top.values[:, 1]))
        return logits

    model.lm_head_logits = counted
    try:
        model.generate(prompts, visual, 2)  # warm-up
        steps.clear()
        sync(model.device)
        t = time.perf_counter()
        texts = model.generate(prompts, visual, tokens)
        sync(model.device)
        seconds = time.perf_counter() - t
    finally:
        del model.lm_head_logits
        del model.cached_generation
    picks, tops, gaps = (torch.stack(t, 1).tolist() for t in zip(*steps))  # [B, steps] each
    return {"seconds": round(seconds, 3), "steps": len(steps), "texts": texts, "tokens": picks, "top_logit": tops,
            "gap": gaps}


def agreement(recompute: dict, cached: dict) -> list[dict]:
    """Per row: the first step whose greedy token differs between the two ways (None: none does), and there the
    recomputing way's top logit and the gap to its second; the smallest gap of the steps before."""
    out = []
    for r, (a, b) in enumerate(zip(recompute["tokens"], cached["tokens"])):
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        before = recompute["gap"][r][:at] if at is not None else recompute["gap"][r]
        out.append({"first_difference": at, "top_logit": None if at is None else round(recompute["top_logit"][r][at], 3),
                    "gap": None if at is None else round(recompute["gap"][r][at], 4),
                    "smallest_gap_before": round(min(before), 4) if before else None})
    return out


def profiled_generate(model, prompts, visual, tokens: int) -> dict:
    """torch.profiler over one cached `generate` of `tokens` tokens (prefill included): GPU busy time against wall
    (host-bound steps leave the GPU idle), kernel time by kind, the top kernels, host synchronisations."""
    device = model.device
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t = time.perf_counter()
        model.generate(prompts, visual, tokens)
        sync(device)
        wall = time.perf_counter() - t
    return kernel_summary(prof, wall) | {"tokens": tokens}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=CAPTION_TOKENS)
    ap.add_argument("--profile-tokens", type=int, default=8, help="the profiled cached generate's tokens")
    ap.add_argument("--commit", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    model, fixture, _ = build(args.fixtures, args.tiny, device)
    qs = [q for q in fixture.questions if q.images][: args.batch]
    prompts = [CAPTION_PROMPT] * len(qs)
    with torch.no_grad():
        visual = model.visual_from_images([q.image() for q in qs])
        lengths = model.prepare(prompts, visual)[1].sum(1).tolist()
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": args.commit or commit(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads",
           "config": "tiny" if args.tiny else "cambrian-8b shapes (random weights)", "batch": len(qs),
           "prompt_tokens": lengths, "max_new_tokens": args.tokens}
    with torch.no_grad():
        for name, cached in (("recompute", False), ("cached", True)):
            res[name] = timed_generate(model, prompts, visual, args.tokens, cached)
            print(name, {k: v for k, v in res[name].items() if k in ("seconds", "steps")}, flush=True)
    res["same_texts"] = res["cached"]["texts"] == res["recompute"]["texts"]
    res["same_tokens"] = res["cached"]["tokens"] == res["recompute"]["tokens"]
    res["rows"] = agreement(res["recompute"], res["cached"])
    res["speedup"] = round(res["recompute"]["seconds"] / res["cached"]["seconds"], 1)
    res["seconds_per_question"] = {k: round(res[k]["seconds"] / len(qs), 3) for k in ("recompute", "cached")}
    with torch.no_grad():  # the cached way taken apart: the prefill alone, then a profile of a few steps
        prefill = timed_generate(model, prompts, visual, 1, True)["seconds"]
        res["cached"]["prefill_s"] = prefill
        res["cached"]["step_ms"] = round((res["cached"]["seconds"] - prefill) / max(res["cached"]["steps"] - 1, 1)
                                         * 1e3, 2)
        res["cached"]["profile"] = profiled_generate(model, prompts, visual, args.profile_tokens)
    print({k: res["cached"][k] for k in ("prefill_s", "step_ms")},
          {k: v for k, v in res["cached"]["profile"].items() if k != "top"}, flush=True)
    print({k: res[k] for k in ("same_texts", "same_tokens", "rows", "speedup", "seconds_per_question")}, flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
