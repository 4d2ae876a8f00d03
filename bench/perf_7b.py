"""Throughput and memory on the LLaVA-1.5-7B shape, for the performance issue's targets (one device call).

    PYTHONPATH=src python bench/perf_7b.py OUT.json [--parts main,scaling] [--small]

Random bf16 weights (built and saved by `hf_7b_check.save_llava_7b`, loaded through `hf:DIR`), ShapesQA questions
with a fixed 54-word context before each question, so a sequence is 576 image tokens + ~85 text tokens, the
issue's shape. 50 Adam steps per question, early stop off, end to end through `run_optimization` (rows, artifacts
and, for pixels, the PNG re-check included).

main:    per-question features and pixels one question at a time against batches, eager and with `--compile`
         (each decoder and ViT layer compiled); the batched rows compared with the one-at-a-time rows; letter-scored
         condition evaluation at batch 32 and 64.
syncs:   where one per-question features step waits for the GPU (`torch.cuda.set_sync_debug_mode`): the frames of
         mirage and transformers that asked for each synchronizing operation.
scaling: compiled features at batch 16 on 16, 32 and 64 questions (is the cost per question constant?), and
         universal features: seconds per step for train sets of 32, 128 and 512 questions at batch 16.
padding: compiled features and pixels at batch 16, left-padded rows with an attention mask (as before) against
         right-aligned rows with none (`causal_scoring`), in the same call.
profile: where the GPU time of compiled batch-16 features and pixels steps goes (torch.profiler): kernels by kind (matrix
         products, attention, fused Triton, other), their share of the wall time, and the matrix products' TFLOP/s.
Results are written to OUT.json after every part (a run cut short keeps what it measured). `--small`: a 1/16-size
model on the CPU, to check the script. No numbers are asserted.
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

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.benchmarks.question import letter_prompt  # noqa: E402
from mirage.conditions import parse_conditions  # noqa: E402
from mirage.evaluate import evaluate_conditions  # noqa: E402
from mirage.experiments import OptimizeSpec, apply_switches, run_optimization  # noqa: E402
from mirage.inputs import Reference, build_input, default_lr  # noqa: E402
from mirage.models import load_model  # noqa: E402
from mirage.objectives import OBJECTIVES  # noqa: E402
from mirage.optimize import OptimizeConfig, optimize_universal  # noqa: E402
from mirage.runs import RunDir  # noqa: E402

CONTEXT = ("Context: the picture was taken in a classroom where students sort coloured paper shapes on a table "
           "before a lesson about geometry and counting ; each shape was cut by hand from card so the sizes differ a "
           "little and the edges are not perfectly straight , and the teacher asks questions about what is shown")


def context_prompt(q) -> str:
    return f"{CONTEXT}\n{letter_prompt(q)}"


def sync_census(model, bench, ref) -> list[dict]:
    """Each distinct call site (innermost mirage/transformers frames) of a synchronizing CUDA operation during two
    batched features steps, with its count."""
    import collections
    import traceback
    import warnings

    from mirage.optimize import optimize_questions

    sites: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "/mirage/" in f.filename or "transformers" in f.filename]
        sites[" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[::-1][:3])] += 1

    inp = build_input("features", model, 4, ref)
    old = warnings.showwarning
    warnings.showwarning = record
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            optimize_questions(model, bench.subset(4), inp, OBJECTIVES.get("ce"),
                               OptimizeConfig(steps=2, batch_size=4, early_stop=0), "f", None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = old
    return [{"site": k, "count": v} for k, v in sites.most_common()]


KINDS = (("attention", ("flash", "fmha", "attention", "sdpa", "cudnn", "attn")),  # before matmul: cuDNN's are sm90_
         ("matmul", ("nvjet", "gemm", "cutlass", "xmma", "cublas", "sm90_")),
         ("triton (fused element-wise)", ("triton",)))


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    return next((k for k, keys in KINDS if any(key in name for key in keys)), "other (aten element-wise, copies)")


def kernel_ms_by_kind(events) -> dict[str, float]:
    """GPU milliseconds of profiler events (`prof.key_averages()`) summed by `kind_of` their kernel."""
    out: dict[str, float] = {}
    for e in events:
        if e.self_device_time_total > 0:
            out[kind_of(e.key)] = out.get(kind_of(e.key), 0.0) + e.self_device_time_total / 1e3
    return out


def step_profile(model, bench, ref, batch: int, work: Path, steps: int = 4, source: str = "features") -> dict:
    """GPU time of `steps` compiled `source` steps at `batch` (one `run_optimization`, rows and artifacts included)
    by kernel kind, against the wall time; the matrix products' rate from the LM's parameters and tokens."""
    from torch.profiler import ProfilerActivity, profile

    qs = bench.subset(batch)
    lengths = model.sequences([bench.prompt(q) for q in qs.questions])[1].sum(1).tolist()
    lm_params = sum(p.numel() for k, p in model.inner.language_model.named_parameters() if "embed_tokens" not in k)
    cfg = OptimizeConfig(steps=steps, batch_size=batch, early_stop=0)
    run_optimization(model, qs, OptimizeSpec(source), cfg, RunDir.open(work / f"prof-warm-{source}", {}), ref)  # warm
    base.sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        run_optimization(model, qs, OptimizeSpec(source), cfg, RunDir.open(work / f"prof-{source}", {}), ref)
        base.sync()
        wall = time.perf_counter() - t0
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    by_kind = kernel_ms_by_kind(events)
    gpu = sum(by_kind.values())
    tokens = max(lengths) * batch  # the padded batch the kernels see
    # steps forward+backward (4 x params x tokens) and the last forward of the row (2 x params x tokens)
    flop = (4 * steps + 2) * lm_params * tokens
    top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:20]
    return {"batch": batch, "steps": steps, "wall_ms": round(wall * 1e3, 1), "gpu_ms": round(gpu, 1),
            "gpu_busy": round(gpu / (wall * 1e3), 3), "tokens_per_forward": tokens,
            "categories": {k: {"ms": round(v, 1), "share_of_gpu": round(v / gpu, 3)} for k, v in
                           sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "matmul_tflops": round(flop / (by_kind.get("matmul", 0.0) / 1e3) / 1e12, 1) if by_kind.get("matmul") else None,
            "per_question_step_ms": round(wall * 1e3 / (batch * (steps + 0.5)), 2),
            "top_kernels": [{"name": e.key[:100], "kind": kind_of(e.key), "calls": e.count,
                             "ms": round(e.self_device_time_total / 1e3, 2)} for e in top]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--parts", default="main,scaling")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    base.DEVICE = dev = "cpu" if args.small else "cuda"
    work = Path(tempfile.mkdtemp())
    shapes = load_benchmark("shapes", split="test", limit=576)
    bench = dataclasses.replace(shapes, prompt_style=context_prompt)
    words = [w for q in bench.questions[:64] for w in bench.prompt(q).split()]
    t = time.time()
    base.save_llava_7b(work / "m", words, args.small)
    model = load_model(f"hf:{work / 'm'}", device=dev, dtype=torch.bfloat16)
    ref = Reference.from_benchmark(model, bench)
    lengths = model.sequences([bench.prompt(q) for q in bench.questions[:16]])[1].sum(1).tolist()
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "date": time.strftime("%Y-%m-%d"),
           "torch": torch.__version__, "steps": args.steps, "attn_implementation": model.attn_implementation,
           "setup_s": round(time.time() - t, 1), "sequence_lengths": [min(lengths), max(lengths)], "parts": {},
           "agreement": {}}
    out = Path(args.out)
    n = 4 if args.small else 16
    rows: dict[str, list[dict]] = {}

    def measure(name: str, fn, count: int) -> None:
        base.sync()
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        try:
            got = fn()
            r = {"ok": True}
            if isinstance(got, list):
                rows[name] = got
        except torch.OutOfMemoryError:
            r = {"ok": False, "error": "out of memory"}
        base.sync()
        s = time.time() - t0
        r.update(seconds=round(s, 2), questions=count, per_s=round(count / s, 3), peak_gb=base.peak_gb())
        res["parts"][name] = r
        print(name, r, flush=True)
        out.write_text(json.dumps(res, indent=2))

    def opt(source: str, batch: int, count: int, tag: str):
        cfg = OptimizeConfig(steps=args.steps, batch_size=batch, early_stop=0)
        run = RunDir.open(work / tag, {"tag": tag})
        spec = OptimizeSpec(source)
        return lambda: [r for r in run_optimization(model, bench.subset(count), spec, cfg, run, ref)
                        if r["source"] == spec.source]

    def agree(a: str, b: str) -> None:
        """Per-question rows of run `a` against run `b` on the questions both have."""
        if a not in rows or b not in rows:
            return
        rb = {r["question_id"]: r for r in rows[b]}
        pairs = [(r, rb[r["question_id"]]) for r in rows[a] if r["question_id"] in rb]
        if not pairs:
            raise ValueError(f"{a} and {b} share no question")
        res["agreement"][f"{a} vs {b}"] = {
            "questions": len(pairs), "same_prediction": sum(x["pred"] == y["pred"] for x, y in pairs),
            "max_prob_diff": max(max(abs(p - q) for p, q in zip(x["probs"], y["probs"])) for x, y in pairs),
            "correct": [sum(x["correct"] for x, _ in pairs), sum(y["correct"] for _, y in pairs)]}
        out.write_text(json.dumps(res, indent=2))

    if "syncs" in parts and dev == "cuda":
        try:
            res["syncs"] = sync_census(model, bench, ref)
        except Exception as e:  # noqa: BLE001 - a diagnostic must not cost the measurements after it
            res["syncs"] = f"{type(e).__name__}: {e}"
        print("syncs", res["syncs"], flush=True)
        out.write_text(json.dumps(res, indent=2))
    if "main" in parts:
        measure("features/batch1", opt("features", 1, n // 4, "f1"), n // 4)
        measure("features/batch8", opt("features", 8, n, "f8"), n)
        agree("features/batch1", "features/batch8")
        measure("pixels/batch1", opt("pixels", 1, n // 4, "p1"), n // 4)
        measure("pixels/batch8", opt("pixels", 8, n, "p8"), n)
        agree("pixels/batch1", "pixels/batch8")
        conds = parse_conditions("real,blank")
        for b in (32, 64):
            run = RunDir.open(work / f"e{b}", {"b": b})
            sub = bench.subset(128)
            measure(f"conditions/batch{b}", lambda: evaluate_conditions(model, sub, conds, batch_size=b, run=run,
                                                                         quiet=True), 2 * len(sub))
    apply_switches(model, OptimizeSpec("pixels"), compile=True)  # decoder and ViT layers
    # compile outside the timed parts: the first shape (static), the second (dynamic from then on), with and without
    # gradients (the last forward of a question needs none)
    warm = ["features"] + (["pixels"] if "main" in parts else [])
    for source in warm:
        for b in (8, 16):
            measure(f"compile/{source}-batch{b}-1step", lambda: run_optimization(
                model, bench.subset(b), OptimizeSpec(source), OptimizeConfig(steps=1, batch_size=b, early_stop=0),
                RunDir.open(work / f"warm-{source}{b}", {}), ref), b)
    if "main" in parts:
        for b in (8, 16, 24):  # two full rounds of the batch at least
            count = max(2 * n, 2 * b)
            measure(f"features/batch{b}-compiled", opt("features", b, count, f"fc{b}"), count)
        agree("features/batch8", "features/batch8-compiled")
        agree("features/batch1", "features/batch16-compiled")
        measure("pixels/batch16-compiled", opt("pixels", 16, 2 * n, "pc16"), 2 * n)
        agree("pixels/batch1", "pixels/batch16-compiled")
    if "padding" in parts:
        keep = model.causal_scoring
        for causal in (False, True):  # each mask variant's shapes compiled outside the timing
            model.causal_scoring = causal
            for source in ("features", "pixels"):
                measure(f"compile/padding-{source}-{causal}", lambda: run_optimization(
                    model, bench.subset(16), OptimizeSpec(source), OptimizeConfig(steps=2, batch_size=16, early_stop=0),
                    RunDir.open(work / f"warm-pad-{source}{causal}", {}), ref), 16)
        for source in ("features", "pixels"):
            for causal in (False, True):
                model.causal_scoring = causal
                tag = "right-aligned-no-mask" if causal else "left-padded-mask"
                measure(f"padding/{source}-batch16-compiled-{tag}", opt(source, 16, n, f"pad-{source}{causal}"), n)
            agree(f"padding/{source}-batch16-compiled-left-padded-mask",
                  f"padding/{source}-batch16-compiled-right-aligned-no-mask")
        model.causal_scoring = keep
    if "profile" in parts and dev == "cuda":
        for source in ("features", "pixels"):
            res[f"profile-{source}"] = got = step_profile(model, bench, ref, 16, work, source=source)
            print(f"profile-{source}", {k: v for k, v in got.items() if k != "top_kernels"}, flush=True)
            out.write_text(json.dumps(res, indent=2))
    if "compiled-features" in parts:  # the compiled features rows alone (a check of a change)
        measure("features/batch16-compiled", opt("features", 16, 2 * n, "fc16"), 2 * n)
    if "scaling" in parts:
        for count in (n, 4 * n):  # and 2n: features/batch16-compiled
            measure(f"scaling/features-batch16-compiled-{count}q", opt("features", 16, count, f"s{count}"), count)
        inp = build_input("features", model, 1, ref)
        for size in (32, 128, 512):
            steps = 3 if args.small else 10
            cfg = OptimizeConfig(steps=steps, batch_size=16)
            train = bench.questions[:size]
            measure(f"scaling/universal-features-train{size}-{steps}steps", lambda: optimize_universal(
                model, bench, train, inp, OBJECTIVES.get("ce"), cfg, "u", None, default_lr("features")), steps)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
