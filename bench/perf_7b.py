"""Throughput and memory on the LLaVA-1.5-7B shape, for the performance issue's targets (one device call).

    PYTHONPATH=src python bench/perf_7b.py OUT.json [--fixtures ../shared/fixtures] [--small]

Measures, with random bf16 weights (built and saved by `hf_7b_check.save_llava_7b`, loaded through `hf:DIR`) on
ShapesQA prompts (the image-token count is the model's; the words are `<unk>`-heavy, the lengths realistic):
per-question features and pixels, one question at a time against batches (with and without gradient
checkpointing), 50 steps with early stop off; letter-scored condition evaluation at two batch sizes; and a
torch.profiler table of one batched features step (top CUDA kernels). `--small` runs a 1/16-size model on the CPU
to check the script. No numbers are asserted; results go to OUT.json for `bench/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import hf_7b_check as base  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.conditions import parse_conditions  # noqa: E402
from mirage.evaluate import evaluate_conditions  # noqa: E402
from mirage.experiment import OptimizeSpec, apply_switches, run_optimization  # noqa: E402
from mirage.models import load_model  # noqa: E402
from mirage.optimize import OptimizeConfig  # noqa: E402
from mirage.runs import RunDir  # noqa: E402


def measure(name: str, fn, n: int, results: dict) -> None:
    base.sync()
    if base.DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t = time.time()
    try:
        fn()
        out = {"ok": True}
    except torch.OutOfMemoryError:
        out = {"ok": False, "error": "out of memory"}
    base.sync()
    s = time.time() - t
    out.update(seconds=round(s, 2), questions=n, per_s=round(n / s, 3), peak_gb=base.peak_gb())
    results["parts"][name] = out
    print(name, out, flush=True)


def profile_step(model, bench, batch: int) -> list[dict]:
    """Top CUDA kernels of one batched features forward+backward."""
    from torch.profiler import ProfilerActivity, profile

    from mirage.inputs import Reference, build_input
    from mirage.objectives import answer_ce

    qs = bench.questions[:batch]
    inp = build_input("features", model, batch, Reference.from_benchmark(model, bench))
    for s, q in enumerate(qs):
        inp.reset(s, q.id)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if base.DEVICE == "cuda" else [])
    with profile(activities=acts) as prof:
        loss, _ = answer_ce(model, [bench.prompt(q) for q in qs], inp(torch.arange(batch, device=model.device)), qs)
        loss.sum().backward()
        base.sync()
    def us(e) -> float:  # self time in microseconds on the device that matters
        if base.DEVICE == "cuda":
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0
        return e.self_cpu_time_total

    events = sorted(prof.key_averages(), key=us, reverse=True)
    return [{"name": e.key[:80], "calls": e.count, "ms": round(us(e) / 1e3, 2)} for e in events[:15]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fixtures", default="../shared/fixtures")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    base.DEVICE = "cpu" if args.small else "cuda"
    work = Path(tempfile.mkdtemp())
    fx = Path(args.fixtures)
    words = [w for name in ("mmmu", "scienceqa") for b in [load_benchmark(name, data_dir=str(fx / name))]
             for q in b for w in b.prompt(q).split()]
    base.save_llava_7b(work / "m", words, args.small)
    model = load_model(f"hf:{work / 'm'}", device=base.DEVICE, dtype=torch.bfloat16)
    bench = load_benchmark("shapes", split="test", limit=64)
    results = {"device": torch.cuda.get_device_name() if base.DEVICE == "cuda" else "cpu",
               "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "steps": args.steps,
               "attn_implementation": model.attn_implementation, "parts": {}}
    n = 8 if args.small else 16

    def opt(spec: OptimizeSpec, batch: int, count: int, tag: str):
        run = RunDir.open(work / tag, {"tag": tag})
        cfg = OptimizeConfig(steps=args.steps, batch_size=batch, early_stop=0)
        return lambda: run_optimization(model, bench.subset(count), spec, cfg, run)

    measure("features/batch1", opt(OptimizeSpec("features"), 1, n // 4, "f1"), n // 4, results)
    for b in (4, 8):
        measure(f"features/batch{b}", opt(OptimizeSpec("features"), b, n, f"f{b}"), n, results)
    measure("pixels/batch1", opt(OptimizeSpec("pixels"), 1, n // 4, "p1"), n // 4, results)
    measure("pixels/batch8", opt(OptimizeSpec("pixels"), 8, n, "p8"), n, results)
    conds = parse_conditions("real,blank")
    for b in (32, 64):
        run = RunDir.open(work / f"e{b}", {"b": b})
        measure(f"conditions/batch{b}", lambda: evaluate_conditions(model, bench, conds, batch_size=b, run=run,
                                                                     quiet=True), 2 * len(bench), results)
    results["profile_features_batch8"] = profile_step(model, bench, 8)
    apply_switches(model, OptimizeSpec("features"), grad_checkpointing=True)
    for b in (8, 16):
        measure(f"features/batch{b}-checkpointing", opt(OptimizeSpec("features"), b, n, f"fc{b}"), n, results)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
