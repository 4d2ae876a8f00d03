"""Greedy generation with the LM's key/value cache against recomputing the prefix each step, on Cambrian (the seed's
model: its sampler layers run in the prefill only) with the MMMU validation fixture's questions and images: what
`caption:self` (128 tokens a caption) costs per question each way, and that both give the same text.

    PYTHONPATH=src python bench/cached_generation.py OUT.json [--fixtures ../shared/fixtures] [--tiny --device cpu]

The model is `seed_job.build`'s (the Cambrian-8B shape with random weights, or `--tiny`); the prompts are the
fixture's questions behind the caption instruction (the condition's own words), ~790 tokens with the 600 image
slots, a batch of `--batch`. Each way runs `generate(max_new_tokens=--tokens)` once after a 2-token warm-up; the
steps are counted at the LM head (a tiny random model may stop early at its end token, and then both ways stop at
the same step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from seed_job import build, commit, model_arguments  # noqa: E402

from mirage.conditions import CAPTION_PROMPT, CAPTION_TOKENS  # noqa: E402


def timed_generate(model, prompts, visual, tokens: int, cached: bool) -> dict:
    """`generate` one way: seconds, LM-head steps, the texts."""
    model.cached_generation = cached
    steps = []
    head = model.lm_head_logits
    model.lm_head_logits = lambda h: steps.append(h.shape[1]) or head(h)
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
    return {"seconds": round(seconds, 3), "steps": len(steps), "texts": texts}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=CAPTION_TOKENS)
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
            print(name, {k: v for k, v in res[name].items() if k != "texts"}, flush=True)
    res["same_texts"] = res["cached"]["texts"] == res["recompute"]["texts"]
    res["speedup"] = round(res["recompute"]["seconds"] / res["cached"]["seconds"], 1)
    res["seconds_per_question"] = {k: round(res[k]["seconds"] / len(qs), 3) for k in ("recompute", "cached")}
    print({k: res[k] for k in ("same_texts", "speedup", "seconds_per_question")}, flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
