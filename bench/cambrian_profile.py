"""Where the seed's job spends its time: the Cambrian-8B shape's optimization step taken apart on one GPU.

    PYTHONPATH=src python bench/cambrian_profile.py OUT.json [--fixtures ../shared/fixtures] [--parts features,pixels]
        [--batch features=8,pixels=4] [--steps 4] [--compile]
    CPU dry run: PYTHONPATH=src python bench/cambrian_profile.py /tmp/p.json --tiny --device cpu --batch features=2,pixels=2

Per part, at the given batch (the seed job's auto choices by default), on `seed_job.py`'s model and questions:
1. Components, eager (and with `--compile` again with the blocks compiled), forward + input-gradient backward each,
   median of 3 after a warm-up: the whole objective step;
   the LM with the sampler layers, from fixed image tokens and sampler inputs; the LM without them; the SVA
   connector alone; for pixels also the differentiable preprocessing and the four towers, together and each alone
   (ConvNeXt also in channels-last memory, the layout timm's ConvNeXt favours).
2. torch.profiler over `run_optimization` of `--steps` steps on one batch (eager, then compiled with `--compile`):
   wall, the union of kernel time (GPU busy), kernel time by kind (matrix products, attention, Triton, other
   element-wise, copies) and the 40 kernels that take most, with their counts; host synchronisations.
The JSON is rewritten after every measurement.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from seed_job import build, commit, matmul_tflops, model_arguments, repeated, say  # noqa: E402

from mirage.experiments import OptimizeSpec, apply_switches, run_optimization  # noqa: E402
from mirage.experiments.optimization import clear_switches, spec_input  # noqa: E402
from mirage.models.cambrian.modeling import ImageContext  # noqa: E402
from mirage.models.cambrian.sva import SamplerInputs  # noqa: E402
from mirage.models.vlm import Visual  # noqa: E402
from mirage.objectives import OBJECTIVES  # noqa: E402
from mirage.optimize import OptimizeConfig  # noqa: E402
from mirage.runs import RunDir  # noqa: E402

KINDS = [("matrix", r"gemm|nvjet|cutlass|xmma|cublas|sm90_|sm80_|wgmma|ampere_|hopper"),
         ("attention", r"flash|fmha|attention|sdpa|cudnn"),
         ("triton", r"triton"),
         ("copy", r"memcpy|memset|copy|cat|index|scatter|gather"),
         ("elementwise", r".")]


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps: int = 3) -> float:
    """Median wall ms of `fn` (after one warm-up), synchronised."""
    fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 1)


def backward_all(*tensors) -> None:
    """Backward from every tensor that needs a gradient (a sum of each, in float)."""
    total = sum(t.float().sum() for t in tensors if t is not None and t.requires_grad)
    if isinstance(total, torch.Tensor):
        total.backward()


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def components(model, bench, spec, cfg, ref, batch: int, layouts: bool = True) -> dict:
    """Forward + backward times (ms) of the step and of its parts, for one batch, as the model runs now (eager, or
    its blocks compiled). `layouts`: also ConvNeXt in channels-last memory."""
    device = model.device
    qs = bench.questions[:batch]
    prompts = [bench.prompt(q) for q in qs]
    inp = spec_input(model, spec, cfg, batch, ref)
    for s, q in enumerate(qs):
        inp.start(s, q.id)
    ce = OBJECTIVES.get("ce")
    out: dict = {}

    def step():
        loss, _ = ce(model, prompts, inp.visual(list(range(batch)), device), qs)
        loss.sum().backward()
        for p in inp.parameters():
            p.grad = None

    out["step"] = timed(step, device)
    visual = inp.visual(list(range(batch)), device)
    with torch.no_grad():
        if spec.source == "pixels" or visual.stage == "pixels":
            processed = model.preprocess(visual.value)
            feats = model.encode(processed)
        else:
            feats = visual.value
        feats = {k: v.detach() for k, v in feats.items()}
        tokens = model.connect(feats)
    ctx = tokens.cambrian
    if visual.stage == "pixels":
        pixels = leaf(visual.value)
        out["preprocess"] = timed(lambda: backward_all(*model.preprocess(pixels).values()), device)
        processed = {k: (leaf(v) if v.is_floating_point() and k in model.vision else v) for k, v in processed.items()}
        out["towers"] = timed(lambda: backward_all(*model.encode(processed).values()), device)
        for name, x in processed.items():  # each tower alone, and ConvNeXt's in channels-last memory
            if name in model.vision:
                x = leaf(x.to(next(model.vision[name].parameters()).dtype))
                out[f"tower_{name}"] = timed(lambda: backward_all(model.vision[name](x)), device)
                if layouts and model.vision[name].arch == "convnext":
                    tower = model.vision[name].to(memory_format=torch.channels_last)
                    xl = leaf(x.contiguous(memory_format=torch.channels_last))
                    out[f"tower_{name}_channels_last"] = timed(lambda: backward_all(tower(xl)), device)
                    tower.to(memory_format=torch.contiguous_format)
                out[f"preprocess_{name}"] = timed(lambda: backward_all(*model.preprocess(pixels, [name]).values()),
                                                  device)
    fleaf = {k: (leaf(v) if k in model.vision else v) for k, v in feats.items()}

    def connector():
        t = model.connect(fleaf)
        s = t.cambrian.sampler
        backward_all(t, s.context, *s.keys)

    out["connector"] = timed(connector, device)
    sampler = ctx.sampler

    def lm(with_samplers: bool):
        t = leaf(tokens)
        if with_samplers and sampler is not None:
            t.cambrian = ImageContext(ctx.sizes, SamplerInputs([leaf(k) for k in sampler.keys], sampler.masks,
                                                               leaf(sampler.context)))
        loss, _ = ce(model, prompts, Visual("tokens", t), qs)
        loss.sum().backward()

    out["lm_with_samplers"] = timed(lambda: lm(True), device)
    out["lm_without_samplers"] = timed(lambda: lm(False), device)
    out["samplers_in_lm"] = round(out["lm_with_samplers"] - out["lm_without_samplers"], 1)
    out["tokens"] = int(model.sequences(prompts)[0].shape[1]) if hasattr(model, "sequences") else None
    return out


def kernel_summary(prof, wall_s: float) -> dict:
    """Kernel time by kind, the GPU's busy time (union of kernel intervals), the top kernels, host syncs."""
    kernels, spans, host = {}, [], {}
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            us = getattr(e, "device_time", None) or getattr(e, "cuda_time", 0) or 0
            k = kernels.setdefault(e.name, [0.0, 0])
            k[0] += us
            k[1] += 1
            spans.append((e.time_range.start, e.time_range.end))
        elif re.search(r"Synchronize|_local_scalar_dense|cudaMemcpy(?!Async)|aten::item", e.name):
            h = host.setdefault(e.name, [0.0, 0])
            h[0] += e.cpu_time_total
            h[1] += 1
    busy, end = 0.0, -1.0
    for a, b in sorted(spans):
        if b > end:
            busy += b - max(a, end)
            end = b
    by_kind: dict = {}
    for name, (us, _) in kernels.items():
        kind = next(k for k, pat in KINDS if re.search(pat, name, re.I))
        by_kind[kind] = by_kind.get(kind, 0.0) + us
    total = sum(by_kind.values()) or 1.0
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:40]
    return {"wall_ms": round(wall_s * 1e3, 1), "gpu_busy_ms": round(busy / 1e3, 1),
            "gpu_busy_fraction": round(busy / 1e3 / (wall_s * 1e3), 3) if wall_s else None,
            "kernel_ms_by_kind": {k: {"ms": round(v / 1e3, 1), "share": round(v / total, 3)} for k, v in by_kind.items()},
            "kernels": len(spans),
            "top": [{"name": n[:160], "ms": round(us / 1e3, 2), "count": c} for n, (us, c) in top],
            "host_syncs": {n: {"ms": round(us / 1e3, 2), "count": c} for n, (us, c) in host.items()}}


def profiled_run(model, bench, spec, cfg, ref, work: Path, tag: str, device) -> dict:
    """One `run_optimization` over one batch under torch.profiler (after an unprofiled warm-up run)."""
    run_optimization(model, bench, spec, cfg, RunDir.open(work / f"{tag}-warm", {"p": tag}), ref)
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t = time.perf_counter()
        run_optimization(model, bench, spec, cfg, RunDir.open(work / tag, {"p": tag}), ref)
        sync(device)
        wall = time.perf_counter() - t
    return kernel_summary(prof, wall) | {"steps": cfg.steps, "questions": len(bench.questions)}


def dynamo_health() -> dict:
    """What dynamo did in the compiled runs: graphs, frames compiled (a block's recompiles among them), and graph
    breaks by reason (on the CPU the tiny Cambrian's CLIP tower has one a layer: transformers' output-capturing
    hooks, installed by `output_hidden_states`, call `ContextVar.get`, which dynamo cannot trace)."""
    def reason(text: str) -> str:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith("Explanation:")), "")
        return f"{lines[0] if lines else '?'} {why}"[:200]

    return {"stats": dict(counters["stats"]), "frames": dict(counters["frames"]),
            "graph_breaks": {reason(text): n for text, n in counters["graph_break"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap)
    ap.add_argument("--parts", default="features,pixels")
    ap.add_argument("--batch", default="features=8,pixels=4")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-components", action="store_true")
    ap.add_argument("--commit", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    batches = {k: int(v) for k, v in (kv.split("=") for kv in args.batch.split(","))}
    t = time.perf_counter()
    model, fixture, ref = build(args.fixtures, args.tiny, device)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": args.commit or commit(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "config": "tiny" if args.tiny else "cambrian-8b shapes (random weights)",
           "build_s": round(time.perf_counter() - t, 1), "matmul_tflops": matmul_tflops(device), "parts": {}}
    say(res)
    work = Path(tempfile.mkdtemp())
    out = Path(args.out)
    for name in args.parts.split(","):
        spec, batch = OptimizeSpec(name), batches[name]
        part = res["parts"].setdefault(name, {"batch": batch})
        cfg = OptimizeConfig(steps=args.steps, early_stop=0, batch_size=batch)
        bench = repeated(fixture, batch)
        clear_switches(model)
        if not args.no_components:
            part["components_ms"] = components(model, bench, spec, cfg, ref, batch)
            say(name, part["components_ms"])
            out.write_text(json.dumps(res, indent=2))
        part["eager"] = profiled_run(model, bench, spec, cfg, ref, work, f"{name}-eager", device)
        say(name, "eager", {k: v for k, v in part["eager"].items() if k != "top"})
        out.write_text(json.dumps(res, indent=2))
    if args.compile:
        apply_switches(model, OptimizeSpec("features"), compile=True)
        for name in args.parts.split(","):
            spec, batch = OptimizeSpec(name), batches[name]
            cfg = OptimizeConfig(steps=args.steps, early_stop=0, batch_size=batch)
            part = res["parts"][name]
            counters.clear()
            if not args.no_components:  # each part again with its blocks compiled: what compiling buys where
                part["components_compiled_ms"] = components(model, repeated(fixture, batch), spec, cfg, ref, batch,
                                                            layouts=False)
                say(name, "compiled", part["components_compiled_ms"])
                out.write_text(json.dumps(res, indent=2))
            part["compiled"] = profiled_run(model, repeated(fixture, batch), spec, cfg, ref, work, f"{name}-compiled",
                                            device) | {"dynamo": dynamo_health()}
            say(name, "compiled", {k: v for k, v in part["compiled"].items() if k != "top"})
            out.write_text(json.dumps(res, indent=2))
    say("done")


if __name__ == "__main__":
    main()
