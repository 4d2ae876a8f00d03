"""Peak GPU memory and seconds per Adam step of per-question optimization on Cambrian-1-8B's shapes, per memory switch.

Builds the 8B (Llama-3-8B, SigLIP/CLIP/DINOv2-g/ConvNeXt-XXL towers, SVA with 10 sampler layers in the LM) with random
weights in bf16 directly on the GPU (no download), generates a few ShapesQA questions, and for `features` and `pixels`
inputs runs a handful of Adam steps on one batch under every combination of: gradient checkpointing (LM, towers,
sampler layers), offloading unused towers to the CPU, and a detached ConvNeXt (features: its tensor frozen, the seed's
workaround; pixels: the image goes through SigLIP/CLIP/DINOv2 only, ConvNeXt held at its blank-image features, which
is how mirage spells it: `--encoders siglip,clip,dino`). Weights are random, so the numbers are memory and time only.
Prompts use a word-level tokenizer (Llama-3's is not on these machines): sequences are somewhat shorter than with
the real BPE tokenizer (the 600 image slots dominate either way).

GPU:        PYTHONPATH=src python bench/cambrian_memory.py bench/results/cambrian-memory.json
CPU check:  PYTHONPATH=src python bench/cambrian_memory.py /tmp/cambrian-memory.json --tiny --device cpu

Measured on one H100 80GB (torch 2.11, transformers 5.17, batch 2, 715-token sequences, 4 steps):
bench/results/2026-11-25-h100-cambrian-memory.json. Built in 1.2 s; 20.7 GiB resident (15.7 GiB with the towers
offloaded). Peak GiB / s per step: features 31.1 / 0.20 with no switch, 24.4 / 0.26 with checkpointing, 17.6 / 0.35
with all three (detaching ConvNeXt alone saves 1.3-1.7 GiB); pixels at 1024 px 41.2 / 0.35 with no switch, 24.3 /
0.62 with checkpointing, 21.1 / 0.58 with all three. Checkpointing and offloading leave the first step's loss as is.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import resource
import statistics
import time

import torch
import transformers

from mirage.benchmarks.question import Benchmark
from mirage.benchmarks.shapes import generate_questions
from mirage.benchmarks.shapes.questions import vocabulary
from mirage.experiments import OptimizeSpec, apply_switches
from mirage.experiments.optimization import clear_switches
from mirage.inputs import Reference, build_input, default_lr
from mirage.models.cambrian import CambrianVLM, config_8b, tiny_config
from mirage.models.cambrian.template import IMAGE_TOKEN, llama_3_prompt, word_level_tokenizer
from mirage.objectives import OBJECTIVES
from mirage.slot_adam import SlotAdam


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gib(n: int) -> float:
    return round(n / 2**30, 3)


def spec_for(kind: str, detach: bool, names: list[str]) -> OptimizeSpec:
    if kind == "features":
        return OptimizeSpec("features", detach=["convnext"] if detach else None)
    return OptimizeSpec("pixels", encoders=[n for n in names if n != "convnext"] if detach else None)


def measure(model: CambrianVLM, bench: Benchmark, ref: Reference, kind: str, grad_ckpt: bool, offload: bool,
            detach: bool, steps: int, batch: int, device: torch.device) -> dict:
    """A few Adam steps on one batch of questions; peak memory over them and seconds per step."""
    names = [s.name for s in model.encoders]
    spec = spec_for(kind, detach, names)
    row = {"input": kind, "grad_checkpointing": grad_ckpt, "offload_unused": offload, "detach_convnext": detach,
           "encoders": spec.encoders, "detach": spec.detach, "batch_size": batch, "steps": steps}
    clear_switches(model)
    apply_switches(model, spec, grad_checkpointing=grad_ckpt, offload=offload)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        row["resident_gib"] = gib(torch.cuda.memory_allocated(device))  # weights on the GPU after the switches
    qs = bench.questions[:batch]
    prompts = [bench.prompt(q) for q in qs]
    inp = opt = loss = None
    try:
        inp = build_input(kind, model, batch, ref, encoders=spec.encoders, detach=spec.detach)
        for s, q in enumerate(qs):
            inp.reset(s, q.id)
        opt = SlotAdam(list(inp.parameters()), batch, default_lr(kind))
        slots = torch.arange(batch, device=device)
        active = torch.ones(batch, dtype=torch.bool)
        times, losses = [], []
        for _ in range(steps):
            sync(device)
            t = time.perf_counter()
            loss, _ = OBJECTIVES.get("ce")(model, prompts, inp(slots), qs)
            losses.append([round(float(x), 4) for x in loss.detach()])
            loss.sum().backward()
            opt.step(active)
            opt.zero_grad()
            inp.project_()
            sync(device)
            times.append(time.perf_counter() - t)
        # the first loss is the same under every switch (same start); later ones drift with bf16 nondeterminism
        row.update(oom=False, sequence_length=int(model.sequences(prompts)[0].shape[1]), first_loss=losses[0],
                   last_loss=losses[-1], first_step_s=round(times[0], 3),
                   seconds_per_step=round(statistics.median(times[1:] or times), 3))
    except torch.cuda.OutOfMemoryError as e:
        row.update(oom=True, error=str(e).splitlines()[0])
    finally:
        del inp, opt, loss
        if device.type == "cuda":
            row["peak_gib"] = gib(torch.cuda.max_memory_allocated(device))
            torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="JSON file to write")
    ap.add_argument("--tiny", action="store_true", help="the tiny test config instead of the 8B (a CPU check)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=2, help="questions optimized together (one step = one batch)")
    ap.add_argument("--steps", type=int, default=4, help="Adam steps per combination (the first is reported apart)")
    ap.add_argument("--inputs", default="features,pixels")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tok = word_level_tokenizer(vocabulary())  # over ShapesQA's words
    ids = tok(llama_3_prompt("x"), add_special_tokens=False).input_ids
    image_position = ids.index(tok.convert_tokens_to_ids(IMAGE_TOKEN))
    config = tiny_config(len(tok), image_position) if args.tiny else config_8b()
    config.image_position = image_position  # the word-level template puts the image elsewhere than Llama-3's 91

    torch.manual_seed(0)
    sync(device)
    t = time.perf_counter()
    model = CambrianVLM.random(config, tok, device, dtype)
    sync(device)
    build_s = time.perf_counter() - t
    params = {"lm": sum(p.numel() for p in model.lm.parameters()),
              "lm_samplers": sum(p.numel() for p in model.lm_samplers.parameters()),
              "connector": sum(p.numel() for p in model.connector.parameters()),
              **{f"tower_{n}": sum(p.numel() for p in t.parameters()) for n, t in model.vision.items()}}
    bench = Benchmark("shapes", "test", generate_questions("test", 0, max(args.batch_size, 4)))
    with torch.no_grad():
        ref = Reference.from_benchmark(model, bench, n=4)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": name, "torch": torch.__version__,
               "transformers": transformers.__version__,
               "config": "tiny" if args.tiny else "cambrian-8b shapes (random weights)", "dtype": str(dtype),
               "build_s": round(build_s, 2), "params": params, "rows": []}
    for kind in args.inputs.split(","):
        for grad_ckpt, offload, detach in itertools.product((False, True), repeat=3):
            row = measure(model, bench, ref, kind, grad_ckpt, offload, detach, args.steps, args.batch_size, device)
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            with open(args.out, "w") as f:  # rewritten after every row: a killed run keeps what it measured
                json.dump(results, f, indent=2)
    results["max_rss_gib"] = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
