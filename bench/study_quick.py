"""`mirage study --preset quick` on the LLaVA-1.5-7B shape (random bf16 weights), timed part by part (one device call).

    PYTHONPATH=src python bench/study_quick.py OUT_DIR [--small] [--limit N]

Builds the model as `hf_7b_check.save_llava_7b` does (CLIP ViT-L/14 at 336 px, Llama-2-7B sizes, vocabulary 32,064),
loads it through `hf:DIR`, and runs the whole study (`mirage.experiments.study.run_study`) on ShapesQA's test split
at the quick preset. Each part's seconds are printed and appended to OUT_DIR/parts.jsonl as it finishes (a run cut
short keeps what it measured); at the end OUT_DIR/study_quick.json holds the build, load and study times, the peak
GPU memory and the study's timings.json. With random weights the accuracies mean nothing. `--small`: a 1/16-size
model on the CPU, to check the script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import hf_7b_check as base  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.experiments import study  # noqa: E402


def timed(name: str, runner, log: Path):
    """`runner` (one of the study's RUNNERS), printing and logging each part's wall time."""
    def run_part(model, bench, run, *args, **settings):
        base.sync()
        t = time.time()
        runner(model, bench, run, *args, **settings)
        base.sync()
        line = {"benchmark": run.path.name, "experiment": name, "questions": len(bench),
                "seconds": round(time.time() - t, 1), "peak_gb": base.peak_gb()}
        print(line, flush=True)
        with open(log, "a") as f:
            f.write(json.dumps(line) + "\n")
    return run_part


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--small", action="store_true", help="1/16 of the widths and depths, on the CPU")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    base.DEVICE = "cpu" if args.small else "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name() if base.DEVICE == "cuda" else "cpu", "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "preset": "quick"}
    t = time.time()
    bench = load_benchmark("shapes", split="test")
    words = sorted({w for q in bench for w in re.findall(r"\w+|[^\w\s]", bench.prompt(q))})
    results["benchmark_s"] = round(time.time() - t, 1)
    work = Path(tempfile.mkdtemp())
    t = time.time()
    base.save_llava_7b(work / "llava7b", words, args.small)
    results["build_and_save_s"] = round(time.time() - t, 1)
    study.RUNNERS = {k: timed(k, v, out / "parts.jsonl") for k, v in study.RUNNERS.items()}
    t = time.time()
    result = study.run_study(f"hf:{work / 'llava7b'}", "shapes", preset="quick", out=work / "study", limit=args.limit,
                             device=base.DEVICE, load_options={"dtype": "bf16"}, quiet=True)
    base.sync()
    results["study_s"] = round(time.time() - t, 1)  # model loading included
    results["peak_gb"] = base.peak_gb()
    results["timings"] = json.loads((work / "study" / "timings.json").read_text())
    results["accuracy"] = result.summaries["shapes"]["accuracy"]
    (out / "study_quick.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "accuracy"}), flush=True)


if __name__ == "__main__":
    main()
