"""Check mirage on CUDA in fp32 and bf16: condition evaluation and optimized inputs on the demo model.

Run on a GPU machine:  PYTHONPATH=src python bench/cuda_check.py OUT.json
Writes accuracy and questions/second per (dtype, part); no numbers are asserted here.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import torch

from mirage.benchmarks import Benchmark
from mirage.benchmarks.shapes import generate_questions
from mirage.conditions import parse_conditions
from mirage.evaluate import evaluate_conditions
from mirage.experiments import OptimizeSpec, apply_switches, run_optimization
from mirage.models import load_model
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir
from mirage.stats import summarize


def timed(fn):
    torch.cuda.synchronize()
    t = time.time()
    out = fn()
    torch.cuda.synchronize()
    return out, time.time() - t


def main(out_path: str) -> None:
    bench = Benchmark("shapes", "test", generate_questions("test", 0, 1000))  # no parquet cache needed
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).split(".")[-1]
        model = load_model("demo", device="cuda", dtype=dtype)
        tmp = tempfile.mkdtemp()
        run = RunDir.open(f"{tmp}/cond", {"x": 1})
        rows, s = timed(lambda: evaluate_conditions(model, bench, parse_conditions("real,blank"), batch_size=128,
                                                    run=run, quiet=True))
        acc = summarize(rows)["accuracy"]
        results[f"{name}/conditions"] = {"accuracy": acc, "questions_per_s": round(2000 / s, 1)}
        for spec, n, cfg, switches in [
            (OptimizeSpec("features"), 200, OptimizeConfig(batch_size=32), {}),
            (OptimizeSpec("pixels"), 200, OptimizeConfig(batch_size=32), {}),
            (OptimizeSpec("pixels"), 200, OptimizeConfig(batch_size=32), {"grad_checkpointing": True}),
            (OptimizeSpec("features", encoders=["clip"]), 100, OptimizeConfig(batch_size=32), {}),
            (OptimizeSpec("pixels", scope="universal", train=500), 1000, OptimizeConfig(batch_size=64), {}),
        ]:
            m = load_model("demo", device="cuda", dtype=dtype)
            apply_switches(m, spec, **switches)
            torch.cuda.reset_peak_memory_stats()
            run = RunDir.open(f"{tmp}/{spec.source}-{len(switches)}", {"x": 1})
            rows, s = timed(lambda: run_optimization(m, bench.subset(n), spec, cfg, run))
            key = f"{name}/{spec.source}" + ("+ckpt" if switches else "")
            steps = [r["steps"] for r in rows if "steps" in r]
            results[key] = {"accuracy": summarize(rows)["accuracy"], "seconds": round(s, 1),
                            "questions_per_s": round(n / s, 2), "mean_steps": round(sum(steps) / len(steps), 1) if steps else None,
                            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}
            print(key, results[key], flush=True)
    with open(out_path, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
