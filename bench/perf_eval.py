"""Letter-scored condition evaluation on the LLaVA-1.5-7B shape: mirage's loop before and after prefetching and
length-ordered batches, eager and compiled, against a batch-1 transformers `generate` loop (one device call).

    PYTHONPATH=src python bench/perf_eval.py OUT.json [--small] [--questions 256]

Random bf16 weights (`hf_7b_check.save_llava_7b`, loaded through `hf:DIR`); ShapesQA questions behind a fixed
54-word context (660-665 tokens, as perf_7b.py), shown either with their 224-px PNGs or with distinct 1024x768
JPEGs (quality 90, made at start-up from the question's image, upscaled with texture: MMMU-like sizes, decoded
and processed on the host for every condition image). Conditions real and blank.
Parts:
  host          images/s of decode + the model's processor on one thread (224 px PNG, 1024x768 JPEG)
  before        evaluate_conditions with no worker threads and batches in question order (the loop at c60cc5c)
  prefetch      worker threads preparing images ahead, batches ordered by prompt length
  compiled      the same after `compile_blocks` (shapes compiled outside the timing)
  generate      batch-1 `LlavaForConditionalGeneration.generate(max_new_tokens=1)` on the processor's inputs,
                per question: what lmms-eval's llava_hf runs, at its cheapest (one new token)
  forward       the GPU alone: one batch's `choice_logits` on processed inputs, padded vs one length, eager and
                compiled (median of 5): the ceiling the loop can reach, and its TFLOP/s
Written to OUT.json after every part. `--small`: a 1/16-size model on the CPU, to check the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import hf_7b_check as base  # noqa: E402
from perf_7b import context_prompt, kernel_ms_by_kind  # noqa: E402

import mirage.prefetch as prefetch  # noqa: E402
from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.compiling import compile_blocks  # noqa: E402
from mirage.conditions import parse_conditions  # noqa: E402
from mirage.evaluate import evaluate_conditions  # noqa: E402
from mirage.models import load_model  # noqa: E402


def jpeg_of(q, size=(1024, 768)) -> bytes:
    """The question's image upscaled to `size` with mild per-pixel texture (so JPEG decoding costs what a
    photograph's does), encoded at quality 90."""
    img = np.asarray(q.image(0).resize(size, Image.BICUBIC), dtype=np.float32)
    rng = np.random.default_rng(abs(hash(q.id)) % 2**32)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--questions", type=int, default=256)
    ap.add_argument("--generate-questions", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="the defaults only: eager and compiled with 2 workers, "
                    "and the generate loop (no host, before, forward or profile parts)")
    ap.add_argument("--profile", action="store_true", help="after the compiled runs, one compiled 224-px loop under "
                    "torch.profiler: GPU time by kernel kind against the wall time (how busy the loop keeps the GPU)")
    ap.add_argument("--masked-too", action="store_true", help="the compiled runs also with left-padded rows and an "
                    "attention mask (causal_scoring off, the loop before right-aligned scoring), in the same call")
    args = ap.parse_args()
    base.DEVICE = dev = "cpu" if args.small else "cuda"
    n = 16 if args.small else args.questions
    work = Path(tempfile.mkdtemp())
    shapes = load_benchmark("shapes", split="test", limit=max(n, 64))
    bench224 = dataclasses.replace(shapes, prompt_style=context_prompt)
    words = [w for q in bench224.questions[:64] for w in bench224.prompt(q).split()]
    t = time.time()
    base.save_llava_7b(work / "m", words, args.small)
    model = load_model(f"hf:{work / 'm'}", device=dev, dtype=torch.bfloat16)
    with ThreadPoolExecutor(8) as pool:
        jpegs = list(pool.map(jpeg_of, bench224.questions))
    bench_jpeg = dataclasses.replace(bench224, questions=[dataclasses.replace(q, images=(j,))
                                                          for q, j in zip(bench224.questions, jpegs)])
    benches = {"224px": bench224, "jpeg1024x768": bench_jpeg}
    lm = model.inner.language_model
    lm_params = sum(p.numel() for k, p in lm.named_parameters() if "embed_tokens" not in k)
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "date": time.strftime("%Y-%m-%d"),
           "torch": torch.__version__, "setup_s": round(time.time() - t, 1), "questions": n,
           "jpeg_kb_mean": round(sum(map(len, jpegs)) / len(jpegs) / 1024, 1),
           "image_processor": type(model.processor.image_processor).__name__,
           "workers": prefetch.default_workers(model.device), "lm_params": lm_params, "parts": {}}
    out = Path(args.out)
    conds = parse_conditions("real,blank")

    def save():
        out.write_text(json.dumps(res, indent=2))

    def record(name, r):
        res["parts"][name] = r
        print(name, r, flush=True)
        save()

    # host: decode + processor, one thread
    for name, b in benches.items():
        qs = b.questions[:32]
        t0 = time.perf_counter()
        for q in qs:
            model.processor.image_processor(images=[q.image(0)], return_tensors="pt")
        record(f"host/{name}", {"images_per_s": round(len(qs) / (time.perf_counter() - t0), 1)})

    def graphs():
        return sum(torch._dynamo.utils.counters["stats"].values()) if dev == "cuda" else 0

    def evaluate(name, b, batch, workers, sort=True, side=True, count=n):
        base.sync()
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        keep = prefetch.prompt_lengths
        if not sort:
            prefetch.prompt_lengths = lambda *a: None  # batches in question order, as before
        prefetch.SIDE_STREAM = side
        g = graphs()
        try:
            t0 = time.perf_counter()
            rows = evaluate_conditions(model, b.subset(count), conds, batch_size=batch, quiet=True, workers=workers)
            base.sync()
            s = time.perf_counter() - t0
        finally:
            prefetch.prompt_lengths = keep
            prefetch.SIDE_STREAM = True
        record(name, {"seconds": round(s, 2), "forwards": len(rows), "per_s": round(len(rows) / s, 1),
                      "batch": batch, "workers": workers, "sorted": sort, "side_stream": side,
                      "peak_gb": base.peak_gb(), "correct": sum(r["correct"] for r in rows),
                      "dynamo_stat_delta": graphs() - g})
        return rows

    # warm-up (CUDA context, cuDNN plans, the processor), not timed
    evaluate_conditions(model, bench224.subset(64), conds, batch_size=32, quiet=True, workers=0)
    rows = {}
    variants = [("before", 0, False, True), ("sorted-w0", 0, True, True), ("w2", 2, True, True),
                ("w2-no-side-stream", 2, True, False), ("w8", 8, True, True)]
    for name, b in benches.items():
        chosen = variants if name == "224px" else [variants[0], variants[2], variants[4]]
        for tag, w, srt, side in [variants[2]] if args.quick else chosen:
            rows[f"{tag}/{name}"] = evaluate(f"eager/{tag}/{name}/batch32", b, 32, w, srt, side)
    key = lambda r: (r["source"], r["question_id"])  # noqa: E731
    # same predictions before and after (bf16: batch composition may move the last digit)
    for name in [] if args.quick else benches:
        a, c = sorted(rows[f"before/{name}"], key=key), sorted(rows[f"w2/{name}"], key=key)
        res.setdefault("agreement", {})[name] = {
            "same_pred": sum(x["pred"] == y["pred"] for x, y in zip(a, c)), "rows": len(a),
            "max_prob_diff": max(abs(p - q) for x, y in zip(a, c) for p, q in zip(x["probs"], y["probs"]))}
    save()

    # the batch-1 transformers loop: processor -> generate, one question at a time
    hf, proc = model.model, model.processor
    for name, b in benches.items():
        qs = b.questions[: (4 if args.small else args.generate_questions)]

        def one(q):
            inputs = proc(images=q.image(0), text=model.chat_text(b.prompt(q)), return_tensors="pt").to(dev)
            inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
            return hf.generate(**inputs, max_new_tokens=1, do_sample=False)

        with torch.inference_mode():
            one(qs[0])  # warm
            base.sync()
            t0 = time.perf_counter()
            for q in qs:
                one(q)
            base.sync()
        s = time.perf_counter() - t0
        record(f"generate-batch1/{name}", {"seconds": round(s, 2), "questions": len(qs),
                                           "per_s": round(len(qs) / s, 1)})

    def forward_ms(prompts, visual):
        def f():
            with torch.inference_mode():
                model.choice_logits(prompts, visual, [4] * len(prompts))  # noqa: B023
        for _ in range(2):
            f()
        ts = []
        for _ in range(5):
            base.sync()
            t0 = time.perf_counter()
            f()
            base.sync()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    def forwards(tag, size=32):
        qs = bench224.questions[:size]
        with torch.inference_mode():
            visual = model.visual_from_images([q.image(0) for q in qs])
        padded = [bench224.prompt(q) for q in qs]
        lengths = model.sequences(padded)[1].sum(1).tolist()
        for kind, prompts in (("padded", padded), ("one-length", [padded[0]] * size)):
            ms = forward_ms(prompts, visual)
            tokens = int(model.sequences(prompts)[0].numel())
            record(f"forward/{tag}/{kind}/batch{size}", {
                "ms": round(ms, 1), "per_s": round(size * 1e3 / ms, 1), "tokens": tokens,
                "lm_tflops": round(2 * lm_params * tokens / ms / 1e9, 1), "lengths": [min(lengths), max(lengths)]})

    if not args.quick:
        forwards("eager")
    if dev == "cuda" and not args.quick:  # where the eager forward's GPU time goes
        from torch.profiler import ProfilerActivity, profile
        qs = bench224.questions[:32]
        with torch.inference_mode():
            visual = model.visual_from_images([q.image(0) for q in qs])
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model.choice_logits([bench224.prompt(q) for q in qs], visual, [4] * 32)
                torch.cuda.synchronize()
        ev = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)
        res["profile_eager_batch32"] = [{"name": e.key[:90], "calls": e.count,
                                         "ms": round(e.self_device_time_total / 1e3, 2)} for e in ev[:15]]
        res["profile_eager_batch32_total_ms"] = round(sum(e.self_device_time_total for e in ev) / 1e3, 1)
        save()

    t0 = time.perf_counter()
    compile_blocks(model, backend="aot_eager" if args.small else "inductor")  # --small: the path, quickly
    # every shape family the timed runs meet (padded and one-length batches, batch 32, 64 and a remainder), twice
    masks = (True, False) if args.masked_too else (model.causal_scoring,)
    for causal in masks:
        model.causal_scoring = causal
        for b, count in ((32, n), (32, 40)) if args.quick else ((32, n), (64, n), (32, 40), (32, n), (64, n)):
            evaluate_conditions(model, bench224.subset(count), conds, batch_size=b, quiet=True, workers=0)
    model.causal_scoring = masks[0]
    res["compile_warmup_s"] = round(time.perf_counter() - t0, 1)
    save()
    for name, b in benches.items():
        for causal in masks:
            model.causal_scoring = causal
            tag = "" if len(masks) == 1 else "/right-aligned" if causal else "/left-padded-mask"
            for rep in (1, 2):
                evaluate(f"compiled/w2/{name}/batch32{tag}/run{rep}", b, 32, 2)
        model.causal_scoring = masks[0]
        if not args.quick:
            evaluate(f"compiled/w2/{name}/batch64", b, 64, 2)
            evaluate(f"compiled/w4/{name}/batch64", b, 64, 4)
            evaluate(f"compiled/sorted-w0/{name}/batch64", b, 64, 0)
    if not args.quick:
        forwards("compiled")
        forwards("compiled", 64)
    if args.profile and dev == "cuda":
        from torch.profiler import ProfilerActivity, profile
        base.sync()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            got = evaluate_conditions(model, bench224.subset(n), conds, batch_size=32, quiet=True, workers=2)
            base.sync()
            wall = time.perf_counter() - t0
        kinds = kernel_ms_by_kind(prof.key_averages())
        gpu = sum(kinds.values())
        res["profile_compiled_loop_224px"] = {
            "forwards": len(got), "wall_ms": round(wall * 1e3, 1), "gpu_ms": round(gpu, 1),
            "gpu_busy": round(gpu / (wall * 1e3), 3), "per_s_under_profiler": round(len(got) / wall, 1),
            "kinds_ms": {k: round(v, 1) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "gpu_bound_per_s": round(len(got) / (gpu / 1e3), 1)}
        print("profile", res["profile_compiled_loop_224px"], flush=True)
    save()


if __name__ == "__main__":
    main()
