"""The seed's job, timed on the MMMU fixture and projected to MMMU validation (900 questions): per-question features
and pixels, 50 Adam steps (early stop off), Cambrian-8B shape (random bf16 weights), one GPU, with the memory
switches a 24 GB card needs.

    PYTHONPATH=src python bench/seed_job.py OUT.json [--fixtures ../shared/fixtures] [--tiny --device cpu]

End to end through `run_optimization` (rows, artifacts, pixels' PNG re-check): pixels at `--pixels-batch`
(image through SigLIP, CLIP and DINOv2; ConvNeXt held at its blank-image features; checkpointing; towers kept on
the GPU), then features at `--features-batch` (ConvNeXt's features detached, towers offloaded, checkpointing), the
batch sizes `cambrian_memory.py` found to peak under 22 GiB. The projection scales the seconds by 900 / the
fixture's questions at the same batch (the fixture's last batch is partial, so the projection is pessimistic).
Prompts use a word-level tokenizer over the fixture's words (Llama-3's BPE is not on these machines).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.shapes.questions import vocabulary
from mirage.experiments import OptimizeSpec, apply_switches, run_optimization
from mirage.inputs import Reference
from mirage.models.cambrian import CambrianVLM, config_8b, tiny_config
from mirage.models.cambrian.template import IMAGE_TOKEN, llama_3_prompt, word_level_tokenizer
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

MMMU_VALIDATION = 900


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fixtures", default="../shared/fixtures")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--features-batch", type=int, default=4)
    ap.add_argument("--pixels-batch", type=int, default=3)
    ap.add_argument("--parts", default="pixels,features")
    args = ap.parse_args()
    device = torch.device(args.device)
    bench = load_benchmark("mmmu", split="validation", data_dir=str(Path(args.fixtures) / "mmmu"))
    words = {w for q in bench for w in bench.prompt(q).split()} | set(vocabulary())
    tok = word_level_tokenizer(sorted(words))
    ids = tok(llama_3_prompt("x"), add_special_tokens=False).input_ids
    position = ids.index(tok.convert_tokens_to_ids(IMAGE_TOKEN))
    config = tiny_config(len(tok), position) if args.tiny else config_8b()
    config.image_position = position
    torch.manual_seed(0)
    t = time.perf_counter()
    model = CambrianVLM.random(config, tok, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    with torch.no_grad():
        ref = Reference.from_benchmark(model, bench, n=4)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "config": "tiny" if args.tiny else "cambrian-8b shapes (random weights)", "questions": len(bench),
           "mc_questions": sum(q.kind == "mc" for q in bench), "steps": args.steps,
           "build_s": round(time.perf_counter() - t, 1), "parts": {}}
    names = [s.name for s in model.encoders]
    work = Path(tempfile.mkdtemp())
    # pixels first, towers kept on the GPU: the PNG re-check runs all four towers, and an offloaded ConvNeXt-XXL
    # would run it on the CPU (cambrian_memory.py measures the offloaded peak); features then offload every tower
    parts = {"pixels": (OptimizeSpec("pixels", encoders=[n for n in names if n != "convnext"]), args.pixels_batch,
                        False),
             "features": (OptimizeSpec("features", detach=["convnext"]), args.features_batch, True)}
    for name, (spec, batch, offload) in parts.items():
        if name not in args.parts.split(","):
            continue
        apply_switches(model, spec, grad_checkpointing=True, offload=offload)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        rows = run_optimization(model, bench, spec, OptimizeConfig(steps=args.steps, batch_size=batch, early_stop=0),
                                RunDir.open(work / name, {"part": name}), ref)
        s = time.perf_counter() - t0
        n = len({r["question_id"] for r in rows if r["source"] == spec.source})
        res["parts"][name] = {
            "batch": batch, "offload": offload, "seconds": round(s, 1), "questions": n, "per_s": round(n / s, 4),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
            "projected_900_h": round(s / n * MMMU_VALIDATION / 3600, 2)}
        print(name, res["parts"][name], flush=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    res["projected_900_total_h"] = round(sum(p["projected_900_h"] for p in res["parts"].values()), 2)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(res["projected_900_total_h"])


if __name__ == "__main__":
    main()
