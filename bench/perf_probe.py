"""Where the time of one batched optimization step goes on the LLaVA-1.5-7B shape (one device call).

    PYTHONPATH=src python bench/perf_probe.py OUT.json [--small] [--batches 4,8] [--compile]

One features step = forward of the LM over [B, ~620] tokens + backward to the features (the weights are frozen, so
the backward computes input gradients only: about the forward's FLOPs again). Times steps (median of 5 after 2
warm-up) for variants that isolate one suspect each:
  padded     B different ShapesQA prompts (left padding: a [B,1,L,L] boolean mask reaches sdpa)
  uniform    B copies of one prompt (no padding: transformers may drop the mask)
  efficient  padded, with sdpa restricted to the memory-efficient kernel (fails if that kernel cannot take it)
  forward    padded, forward only under no_grad (the floor for the forward half)
  compiled   padded, each decoder layer `torch.compile`d (--compile; compile time recorded separately)
and reports achieved TFLOP/s (2 * LM parameters * tokens per forward, twice that per step), a bf16 matmul ceiling
measured on the same card, peak memory per variant, and the top CUDA kernels of one padded step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import hf_7b_check as base  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.models import Visual, load_model  # noqa: E402
from mirage.objectives import answer_ce  # noqa: E402


def matmul_ceiling() -> float:
    n = 8192
    a, b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.time()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return round(20 * 2 * n**3 / (time.time() - t) / 1e12, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--batches", default="4,8")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    base.DEVICE = dev = "cpu" if args.small else "cuda"
    work = Path(tempfile.mkdtemp())
    bench = load_benchmark("shapes", split="test", limit=64)
    words = [w for q in bench for w in bench.prompt(q).split()]
    t = time.time()
    base.save_llava_7b(work / "m", words, args.small)
    model = load_model(f"hf:{work / 'm'}", device=dev, dtype=torch.bfloat16)
    lm = model.inner.language_model
    lm_params = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n)
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "date": time.strftime("%Y-%m-%d"),
           "torch": torch.__version__, "setup_s": round(time.time() - t, 1), "lm_params": lm_params,
           "matmul_ceiling_tflops": matmul_ceiling() if dev == "cuda" else None, "variants": {}}
    out = Path(args.out)
    print(res, flush=True)
    spec = model.encoders[0]

    def step(qs, prompts, grad=True):
        feats = torch.randn(len(qs), spec.num_tokens, spec.dim, device=dev, requires_grad=grad)
        with torch.set_grad_enabled(grad):
            loss, _ = answer_ce(model, prompts, Visual("features", {spec.name: feats}), qs)
            if grad:
                loss.sum().backward()
        return feats

    def timed(name, b, fn, tokens):
        base.sync()
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            for _ in range(2):
                fn()
            ts = []
            for _ in range(5):
                base.sync()
                t0 = time.perf_counter()
                fn()
                base.sync()
                ts.append(time.perf_counter() - t0)
            ms = statistics.median(ts) * 1e3
            flops = 2 * lm_params * tokens * (1 if name.startswith("forward") else 2)
            r = {"ms": round(ms, 1), "tokens": tokens, "tflops": round(flops / ms / 1e9, 1), "peak_gb": base.peak_gb(),
                 "per_question_ms": round(ms / b, 1)}
        except Exception as e:  # noqa: BLE001 - a variant that cannot run is a result too
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        res["variants"][f"{name}/batch{b}"] = r
        print(name, b, r, flush=True)
        out.write_text(json.dumps(res, indent=2))

    for b in map(int, args.batches.split(",")):
        qs = bench.questions[:b]
        prompts = [bench.prompt(q) for q in qs]
        ids, mask, _ = model.sequences(prompts)
        tokens = int(ids.numel())
        res.setdefault("lengths", {})[str(b)] = mask.sum(1).tolist()
        timed("padded", b, lambda: step(qs, prompts), tokens)
        uni = [prompts[0]] * b
        timed("uniform", b, lambda: step([qs[0]] * b, uni), int(model.sequences(uni)[0].numel()))
        if dev == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def eff():
                with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
                    step(qs, prompts)
            timed("efficient", b, eff, tokens)
        timed("forward", b, lambda: step(qs, prompts, grad=False), tokens)

    if dev == "cuda":
        from torch.profiler import ProfilerActivity, profile
        b = int(args.batches.split(",")[0])
        qs = bench.questions[:b]
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(qs, [bench.prompt(q) for q in qs])
            torch.cuda.synchronize()
        ev = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)
        res["profile"] = [{"name": e.key[:90], "calls": e.count, "ms": round(e.self_device_time_total / 1e3, 2)}
                          for e in ev[:20]]
        res["profile_total_device_ms"] = round(sum(e.self_device_time_total for e in ev) / 1e3, 1)
        out.write_text(json.dumps(res, indent=2))
        for row in res["profile"]:
            print(row)

    if args.compile:
        t = time.time()
        for layer in lm.layers:
            layer.compile()
        for b in map(int, args.batches.split(",")):
            qs = bench.questions[:b]
            prompts = [bench.prompt(q) for q in qs]
            step(qs, prompts)
            res[f"compile_first_step_s/batch{b}"] = round(time.time() - t, 1)
            t = time.time()
            timed("compiled", b, lambda: step(qs, prompts), int(model.sequences(prompts)[0].numel()))
            t = time.time()
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res["variants"].items()}, indent=1))


if __name__ == "__main__":
    main()
