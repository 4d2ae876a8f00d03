"""This round's new parts timed on the LLaVA-1.5-7B shape in one device call, each beside its floor or its nearest
anchor: the shuffle conditions (`shuffle`, `wrong`, `image-only`, `both`, with `real,blank` as the known mark),
`caption:self`, and the soft prompt (question and universal).

    PYTHONPATH=src python bench/new_parts.py OUT.json [--small] [--questions 128]

Model and questions as perf_eval.py: random bf16 weights (`hf_7b_check.save_llava_7b`, loaded through `hf:DIR`),
ShapesQA questions behind a fixed 54-word context (~660 tokens with the image), 224-px PNGs, eager (mirage eval's
default), batch 32, the default prefetch workers.

Anchors for conditions: lmms-eval's `llava_hf` loop on the same calls: one question at a time, the condition's
question and image through the processor, `model.generate(do_sample=False, num_beams=1, max_new_tokens=M)` with
lmms-eval's M for the task (16: ScienceQA's `generation_kwargs`; the random weights never emit the end token, so
every call runs its M tokens, as a real model that answers at length would). `caption:self`'s anchor: the same loop
generating the caption (the image and CAPTION_PROMPT, `max_new_tokens` CAPTION_TOKENS = 128) and then the answer
from it (text only, 16 new tokens). mirage scores the letters with one forward per question and generates captions
in batches.

Soft prompt: `run_optimization` end to end (50 Adam steps, early stop off, batch 16 for question scope; universal:
`--universal-steps` steps of batch 32 on 64 training questions, 32 held out, then the held-out and training rows),
on a GPU at the batch and switches `mirage optimize --batch-size auto` takes (`fit_batch`, recorded under "auto": the
question scope's largest batch up to 16; the universal batch of 32 kept, with the switches it needs: on an H100 it
ran out of memory without them).
Floor: the LM's matrix FLOPs (a forward and the input-gradient backward per step, 4 x parameters x tokens, plus
attention 12 x tokens^2 x hidden x layers) and the closing forward, over the bf16 rate of an 8192^3 product measured
in the same call. Written to OUT.json after every part. `--small`: a 1/16-size model on the CPU, to check the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import hf_7b_check as base  # noqa: E402
from perf_7b import context_prompt  # noqa: E402
from seed_job import matmul_tflops  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.conditions import CAPTION_PROMPT, CAPTION_TOKENS, ConditionContext, parse_conditions, with_caption  # noqa: E402,E501
from mirage.evaluate import evaluate_conditions  # noqa: E402
from mirage.experiments import OptimizeSpec, run_optimization  # noqa: E402
from mirage.experiments.fit import fit_batch  # noqa: E402
from mirage.models import load_model  # noqa: E402
from mirage.optimize import OptimizeConfig  # noqa: E402
from mirage.runs import RunDir  # noqa: E402

T0 = time.perf_counter()
ANSWER_TOKENS = 16  # lmms-eval's scienceqa / scienceqa_img generation_kwargs.max_new_tokens
SHUFFLES = ("shuffle", "wrong", "image-only", "both")


def say(*parts) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s]", *parts, flush=True)


def timed(fn):
    """(fn(), its seconds): the device synchronised before and after, its peak-memory counter reset first."""
    base.sync()
    if base.DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    got = fn()
    base.sync()
    return got, time.perf_counter() - t0


def lmms_loop(model, calls, new_tokens):
    """lmms-eval's llava_hf generate_until, one call at a time: (prompt text, image) each, the image None (text
    only), a PIL image or a list of them, or a callable giving those when the call runs (decoded inside the timing,
    as lmms-eval's generate_until calls doc_to_visual per request). The first call runs once untimed (warm).
    Returns (responses, seconds)."""
    hf, proc, dev = model.model, model.processor, base.DEVICE

    def one(text, image):
        if callable(image):
            image = image()
        if image is None:
            inputs = proc.tokenizer(text, return_tensors="pt").to(dev)
        else:
            inputs = proc(images=image, text=text, return_tensors="pt").to(dev)
            inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
        cont = hf.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=new_tokens, use_cache=True,
                           pad_token_id=proc.tokenizer.eos_token_id, eos_token_id=proc.tokenizer.eos_token_id)
        return proc.tokenizer.batch_decode(cont[:, inputs["input_ids"].shape[-1]:], skip_special_tokens=True)[0]

    with torch.inference_mode():
        one(*calls[0])  # warm
        return timed(lambda: [one(*c) for c in calls])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--questions", type=int, default=128, help="per condition")
    ap.add_argument("--caption-questions", type=int, default=64)
    ap.add_argument("--anchor-questions", type=int, default=16, help="per condition in the batch-1 loops")
    ap.add_argument("--soft-questions", type=int, default=16)
    ap.add_argument("--universal-steps", type=int, default=10)
    ap.add_argument("--parts", default="conditions,caption,soft-question,soft-universal")
    ap.add_argument("--commit", default=None)
    args = ap.parse_args()
    small = args.small
    base.DEVICE = dev = "cpu" if small else "cuda"
    parts = args.parts.split(",")
    n, nc, na, ns = ((8, 4, 2, 2) if small else
                     (args.questions, args.caption_questions, args.anchor_questions, args.soft_questions))
    steps = 2 if small else 50
    work = Path(tempfile.mkdtemp())
    shapes = load_benchmark("shapes", split="test", limit=max(n, nc, 96))
    bench = dataclasses.replace(shapes, prompt_style=context_prompt)
    words = [w for q in bench.questions for w in bench.prompt(q).split()]
    t = time.perf_counter()
    base.save_llava_7b(work / "m", words, small)
    model = load_model(f"hf:{work / 'm'}", device=dev, dtype=torch.bfloat16)
    proc = model.processor
    lm = model.inner.language_model
    lm_params = sum(p.numel() for k, p in lm.named_parameters() if "embed_tokens" not in k)
    cfg_lm = lm.config
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "date": time.strftime("%Y-%m-%d %H:%M"),
           "torch": torch.__version__, "commit": args.commit, "setup_s": round(time.perf_counter() - t, 1),
           "lm_params": lm_params, "matmul_tflops": matmul_tflops(torch.device(dev)), "parts": {}}
    out = Path(args.out)

    def record(name, r):
        res["parts"][name] = r
        say(name, r)
        out.write_text(json.dumps(res, indent=2))

    def evaluate(names, count, run=None):
        rows, s = timed(lambda: evaluate_conditions(model, bench.subset(count), parse_conditions(names), batch_size=32,
                                                    run=run, quiet=True))
        return rows, s

    # warm-up (CUDA context, cuDNN plans, the processor), not timed
    evaluate("real,blank", 32)
    ctx = ConditionContext(bench)
    if "conditions" in parts:
        rows, s = evaluate("real,blank", n)
        record("conditions/real,blank", {"seconds": round(s, 2), "forwards": len(rows), "per_s": round(len(rows) / s, 1),
                                         "peak_gb": base.peak_gb()})
        for name in SHUFFLES:
            rows, s = evaluate(name, n)
            c = parse_conditions(name)[0]
            qs = bench.questions[:na]
            calls = []
            for q in qs:
                asked = c.ask(q, ctx)
                image = None if c.image_free else c.image(q, ctx)
                calls.append((model.chat_text(bench.prompt(asked), image=image is not None), image))
            _, sa = lmms_loop(model, calls, ANSWER_TOKENS)
            mirage_per_s, anchor_per_s = len(rows) / s, len(calls) / sa
            record(f"conditions/{name}", {
                "seconds": round(s, 2), "forwards": len(rows), "per_s": round(mirage_per_s, 1),
                "peak_gb": base.peak_gb(), "projected_900_s": round(900 / mirage_per_s, 1),
                "anchor_lmms_loop": {"questions": len(calls), "seconds": round(sa, 2), "per_s": round(anchor_per_s, 2),
                                     "max_new_tokens": ANSWER_TOKENS},
                "x_anchor": round(mirage_per_s / anchor_per_s, 1)})
    if "caption" in parts:
        run = RunDir.open(work / "caption", {"bench": "new_parts"})
        rows, s = evaluate("caption:self", nc, run)
        captions = [r["caption"] for r in map(json.loads, (run.path / "captions.jsonl").read_text().splitlines())]
        caption_tokens = [len(proc.tokenizer(c_).input_ids) for c_ in captions]
        qs = bench.questions[:na]
        # the anchor: caption each image at batch 1, then answer from the caption at batch 1 (text only)
        (caps, sc) = lmms_loop(model, [(model.chat_text(CAPTION_PROMPT), q.image(0)) for q in qs], CAPTION_TOKENS)
        asked = [with_caption(q, cap, "self") for q, cap in zip(qs, caps)]
        _, sa = lmms_loop(model, [(model.chat_text(bench.prompt(a), image=False), None) for a in asked],
                          ANSWER_TOKENS)
        mirage_per_s, anchor_per_s = len(rows) / s, len(qs) / (sc + sa)
        record("caption:self", {
            "questions": len(rows), "seconds": round(s, 2), "per_s": round(mirage_per_s, 2), "peak_gb": base.peak_gb(),
            "projected_900_s": round(900 / mirage_per_s, 1), "caption_batch": 32,
            "caption_tokens_mean": round(sum(caption_tokens) / len(caption_tokens), 1),
            "anchor_lmms_loop": {"questions": len(qs), "caption_s": round(sc, 2), "answer_s": round(sa, 2),
                                 "per_s": round(anchor_per_s, 3), "caption_tokens": CAPTION_TOKENS,
                                 "answer_tokens": ANSWER_TOKENS},
            "x_anchor": round(mirage_per_s / anchor_per_s, 1)})

    tokens = {}

    def soft_floor(qs, step_questions, forwards) -> tuple[float, float]:
        """Seconds at the matrix rate: `step_questions` question-steps (forward + input-gradient backward) and
        `forwards` question-forwards, at the soft-prompt sequences' mean length (the image's tokens stand as
        vectors)."""
        lengths = model.sequences([bench.prompt(q) for q in qs])[1].sum(1).tolist()
        t_ = sum(lengths) / len(lengths)
        tokens["mean"] = t_
        fwd = 2 * lm_params * t_ + 4 * t_**2 * cfg_lm.hidden_size * cfg_lm.num_hidden_layers
        per_step = 4 * lm_params * t_ + 12 * t_**2 * cfg_lm.hidden_size * cfg_lm.num_hidden_layers
        flops = step_questions * per_step + forwards * fwd
        return flops, flops / (res["matmul_tflops"] * 1e12) if res["matmul_tflops"] else None

    def fitted(qs, spec, cfg, name):
        """The batch and switches `mirage optimize --batch-size auto` takes on this card (a universal input's batch
        is part of its experiment: only its switches are chosen), said and recorded; the CPU keeps `cfg`'s batch."""
        t0 = time.perf_counter()
        keep = spec.scope == "universal" or base.DEVICE != "cuda"
        fit = fit_batch(model, qs, spec, cfg, fixed=cfg.batch_size if keep else None)
        res.setdefault("auto", {})[name] = {**fit.record(), "seconds": round(time.perf_counter() - t0, 1)}
        say(name, fit.describe())
        return fit.spec(spec, model), dataclasses.replace(cfg, batch_size=fit.batch_size)

    if "soft-question" in parts:
        qs = bench.subset(ns)
        spec, cfg = fitted(qs, OptimizeSpec("soft-prompt"),
                           OptimizeConfig(steps=steps, early_stop=0, batch_size=min(16, ns)), "soft-prompt-question")
        rows, s = timed(lambda: run_optimization(model, qs, spec, cfg, RunDir.open(work / "soft-q", {"p": 1})))
        flops, floor = soft_floor(qs.questions, ns * steps, ns)
        record("soft-prompt-question", {
            "questions": ns, "steps": steps, "batch": cfg.batch_size, "seconds": round(s, 2), "per_s": round(ns / s, 4),
            "peak_gb": base.peak_gb(), "projected_900_h": round(900 / (ns / s) / 3600, 3),
            "tokens_mean": round(tokens["mean"], 1), "floor_s": floor and round(floor, 2),
            "floor_900_h": floor and round(900 / ns * floor / 3600, 3), "over_floor": floor and round(s / floor, 2),
            "achieved_tflops": round(flops / s / 1e12, 1),
            "accuracy": round(sum(r["correct"] for r in rows if r["source"] == "soft-prompt-question") / ns, 3)})
    if "soft-universal" in parts:
        train, held = (4, 2) if small else (64, 32)
        qs = bench.subset(train + held)
        ust = 2 if small else args.universal_steps
        spec, cfg = fitted(qs, OptimizeSpec("soft-prompt", scope="universal", train=train),
                           OptimizeConfig(steps=ust, early_stop=0, batch_size=min(32, train)), "soft-prompt-universal")
        rows, s = timed(lambda: run_optimization(model, qs, spec, cfg, RunDir.open(work / "soft-u", {"p": 1})))
        flops, floor = soft_floor(qs.questions, ust * cfg.batch_size, train + held)
        record("soft-prompt-universal", {
            "train": train, "held_out": held, "steps": ust, "batch": cfg.batch_size, "seconds": round(s, 2),
            "s_per_step_incl_rows": round(s / ust, 3), "peak_gb": base.peak_gb(), "floor_s": floor and round(floor, 2),
            "over_floor": floor and round(s / floor, 2), "achieved_tflops": round(flops / s / 1e12, 1)})
    say("done")


if __name__ == "__main__":
    main()
