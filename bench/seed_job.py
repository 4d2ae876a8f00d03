"""The seed's job at the card's settings, timed end to end and set against its FLOP floor: per-question features and
pixels through all four encoders of the Cambrian-8B shape (random bf16 weights), 50 Adam steps, early stop off, on
questions of MMMU's prompt lengths, projected to MMMU validation (900 questions).

    PYTHONPATH=src python bench/seed_job.py OUT.json [--fixtures ../shared/fixtures] [--compile] [--seed-card 22]
    CPU dry run: PYTHONPATH=src python bench/seed_job.py /tmp/s.json --tiny --device cpu --steps 2 --questions 4

Questions: the MMMU validation fixture's questions (all multiple choice, with their images), repeated under new ids
up to a whole number of batches of at least `--questions`, so every round of the loop is full and has the fixture's
mix of prompt lengths. Prompts use a word-level tokenizer over the fixture's words (Llama-3's BPE is not on these
machines).

Per part: the batch and switches `--batch-size auto` chooses on this card (`experiments.fit.fit_batch`; with
`--seed-card GIB` also what it chooses within that budget, the seed's 24 GB card, without running it); with
`--compile`, a warm-up run of 2 steps on one batch first (the compiles, timed apart); then `run_optimization` end to
end (rows, artifacts, the PNG re-check for pixels). Projection: the seconds per round (one batch through 50 steps)
times the rounds 900 questions take.

Floor: the FLOPs one question needs (torch's FlopCounterMode over one eager step at batch 1 of each distinct
fixture question: the forward, the input-gradient backward; pixels add the four towers and the differentiable
preprocessing), times 50 steps plus the closing forward (and the PNG re-check's forward for pixels), over the
bf16 matrix rate measured in the same call (an 8192^3 product on random data).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.shapes.questions import vocabulary
from mirage.experiments import OptimizeSpec, apply_switches, run_optimization
from mirage.experiments.fit import fit_batch
from mirage.experiments.optimization import clear_switches, spec_input
from mirage.inputs import Reference
from mirage.models.cambrian import CambrianVLM, config_8b, tiny_config
from mirage.models.cambrian.template import IMAGE_TOKEN, llama_3_prompt, word_level_tokenizer
from mirage.models.vlm import on_device
from mirage.objectives import OBJECTIVES
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir

MMMU_VALIDATION = 900
T0 = time.perf_counter()


def say(*parts) -> None:
    """Print with the seconds since the start (a device call's log shows where its time went)."""
    print(f"[{time.perf_counter() - T0:6.1f} s]", *parts, flush=True)


def matmul_tflops(device: torch.device) -> float | None:
    """The bf16 matrix rate of this card: median of 20 products of random 8192^3 matrices, after 5 warm-ups."""
    if device.type != "cuda":
        return None
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(5):
        a @ b
    times = []
    for _ in range(20):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        a @ b
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) / 1e3)
    return round(2 * n**3 / sorted(times)[len(times) // 2] / 1e12, 1)


def gqa_flop_counts() -> None:
    """torch's sdpa FLOP formulas assert equal query and key heads; Llama-3's grouped-query attention has 32 query
    heads over 8 key/value heads: count it as the kernels compute it, every query head against its group's keys."""
    import torch.utils.flop_counter as fc

    if getattr(fc, "_mirage_gqa", False):
        return
    fwd, bwd = fc.sdpa_flop_count, fc.sdpa_backward_flop_count

    def heads(q, *kv):
        return [(*s[:1], q[1], *s[2:]) for s in kv]

    fc.sdpa_flop_count = lambda q, k, v: fwd(q, *heads(q, k, v))
    fc.sdpa_backward_flop_count = lambda g, q, k, v: bwd(g, q, *heads(q, k, v))
    fc._mirage_gqa = True


def question_flops(model, bench, spec: OptimizeSpec, ref: Reference) -> dict:
    """FLOPs of one question's forward and input-gradient backward (mean over the distinct questions, batch 1,
    eager, no switches), and its sequence length."""
    gqa_flop_counts()
    clear_switches(model)
    cfg = OptimizeConfig()
    fwd, bwd, tokens = [], [], []
    for q in bench.questions:
        inp = spec_input(model, spec, cfg, 1, ref)
        inp.reset(0, q.id)
        with FlopCounterMode(display=False) as fc:
            loss, _ = OBJECTIVES.get("ce")(model, [bench.prompt(q)], inp(on_device([0], model.device)), [q])
        fwd.append(fc.get_total_flops())
        with FlopCounterMode(display=False) as fc:
            loss.sum().backward()
        bwd.append(fc.get_total_flops())
        tokens.append(int(model.sequences([bench.prompt(q)])[0].shape[1]))
        del inp, loss
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"forward_tflop": round(mean(fwd) / 1e12, 3), "backward_tflop": round(mean(bwd) / 1e12, 3),
            "tokens_mean": round(mean(tokens), 1), "tokens": tokens}


def repeated(bench, n: int):
    """`n` questions: the benchmark's, repeated in order under new ids."""
    qs = [replace(q, id=f"{q.id}#{k // len(bench.questions)}") if k >= len(bench.questions) else q
          for k, q in ((k, bench.questions[k % len(bench.questions)]) for k in range(n))]
    return replace(bench, questions=qs)


def write_result(args, part: dict, res: dict, name: str, done: int, s: float) -> None:
    """The part's floor and its ratio from the rounds so far; the JSON rewritten."""
    if "flops" in part and res["matmul_tflops"]:
        f = part["flops"]
        forwards = args.steps + 1 + (name == "pixels")  # the closing forward; pixels' PNG re-check
        per_q = args.steps * (f["forward_tflop"] + f["backward_tflop"]) + (forwards - args.steps) * f["forward_tflop"]
        part["floor_900_h"] = round(MMMU_VALIDATION * per_q / res["matmul_tflops"] / 3600, 3)
        part["over_floor"] = round(part["projected_900_h"] / part["floor_900_h"], 2)
        part["achieved_tflops"] = round(done * per_q / s, 1)
    Path(args.out).write_text(json.dumps(res, indent=2))


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def build(fixtures: str, tiny: bool, device: torch.device):
    """The Cambrian-8B shape (or the tiny one) with random weights on `device`, the MMMU validation fixture in its
    prompts, and the optimization's reference images."""
    fixture = load_benchmark("mmmu", split="validation", data_dir=str(Path(fixtures) / "mmmu"))
    words = {w for q in fixture for w in fixture.prompt(q).split()} | set(vocabulary())
    tok = word_level_tokenizer(sorted(words))
    ids = tok(llama_3_prompt("x"), add_special_tokens=False).input_ids
    position = ids.index(tok.convert_tokens_to_ids(IMAGE_TOKEN))
    config = tiny_config(len(tok), position) if tiny else config_8b()
    config.image_position = position
    torch.manual_seed(0)
    model = CambrianVLM.random(config, tok, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    fixture = fixture.for_model(model)
    with torch.no_grad():
        ref = Reference.from_benchmark(model, fixture, n=4)
    return model, fixture, ref


def model_arguments(ap: argparse.ArgumentParser) -> None:
    """OUT and the options of `build` (this script's and cambrian_profile.py's)."""
    ap.add_argument("out")
    ap.add_argument("--fixtures", default="../shared/fixtures")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cuda")


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--questions", type=int, default=32, help="at least this many (whole batches)")
    ap.add_argument("--parts", default="features,pixels")
    ap.add_argument("--batch", type=int, default=None, help="a fixed batch instead of auto (no switches)")
    ap.add_argument("--memory", type=float, default=None, help="auto's budget in GiB (default: the card's)")
    ap.add_argument("--seed-card", type=float, default=None, help="also record auto's choice within this budget")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-flops", action="store_true")
    ap.add_argument("--flops-from", default=None,
                    help="take each part's FLOPs from an earlier output of this script (same model and fixture)")
    ap.add_argument("--fit-only", action="store_true", help="the FLOPs and auto's choices, no timed runs")
    ap.add_argument("--commit", default=None, help="the commit measured (default: git's HEAD here)")
    args = ap.parse_args()
    device = torch.device(args.device)
    t = time.perf_counter()
    model, fixture, ref = build(args.fixtures, args.tiny, device)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": args.commit or commit(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "config": "tiny" if args.tiny else "cambrian-8b shapes (random weights)", "steps": args.steps,
           "compile": args.compile, "build_s": round(time.perf_counter() - t, 1),
           "matmul_tflops": matmul_tflops(device), "parts": {}}
    say(res)
    work = Path(tempfile.mkdtemp())
    plans = {}
    for name in args.parts.split(","):  # the FLOPs: eager (FlopCounterMode does not see into compiled blocks)
        part: dict = {}
        res["parts"][name] = part
        if args.flops_from:
            earlier = json.loads(Path(args.flops_from).read_text())
            part["flops"] = earlier["parts"][name]["flops"] | {"from": f"{args.flops_from} (commit {earlier['commit']})"}
            say(name, "FLOPs from", part["flops"]["from"])
        elif not args.no_flops:
            part["flops"] = question_flops(model, fixture, OptimizeSpec(name), ref)
            say(name, part["flops"])
    if args.compile:  # before the probes, as `mirage optimize --compile` does: auto measures the compiled step
        apply_switches(model, OptimizeSpec("features"), compile=True)
    for name in args.parts.split(","):
        spec = OptimizeSpec(name)  # every encoder, nothing detached
        part = res["parts"][name]
        cfg = OptimizeConfig(steps=args.steps, early_stop=0)
        probe_bench = repeated(fixture, max(args.questions, 64))
        if args.seed_card:
            seed = fit_batch(model, probe_bench, spec, cfg, ref, memory_gib=args.seed_card)
            part["seed_card"] = seed.record() | {"detach": seed.detach}
            say(name, "seed card:", seed.describe())
        clear_switches(model)
        if args.batch:
            plans[name] = (spec, args.batch, False, False)
        else:
            fit = fit_batch(model, probe_bench, spec, cfg, ref, memory_gib=args.memory)
            say(name, fit.describe())
            part["auto"] = fit.record() | {"detach": fit.detach}
            plans[name] = (fit.spec(spec, model), fit.batch_size, fit.grad_checkpointing, fit.offload)
        clear_switches(model)
        Path(args.out).write_text(json.dumps(res, indent=2))
    if args.fit_only:
        plans = {}
    for name, (spec, batch, ckpt, offload) in plans.items():
        part = res["parts"][name]
        clear_switches(model)
        apply_switches(model, spec, ckpt, offload)
        cfg = OptimizeConfig(steps=args.steps, early_stop=0, batch_size=batch)
        n = batch * math.ceil(args.questions / batch)
        bench = repeated(fixture, n)
        if args.compile and res["compile"]:
            t0 = time.perf_counter()
            try:
                run_optimization(model, repeated(fixture, batch), spec, replace(cfg, steps=2),
                                 RunDir.open(work / f"{name}-warmup", {"part": name}), ref)
            except Exception as e:  # noqa: BLE001 -- a bench call must still measure the eager job
                res["compile"] = f"failed, eager instead: {type(e).__name__}: {str(e)[:300]}"
                say(res["compile"])
                for m in model.modules():
                    m._compiled_call_impl = None
                torch._dynamo.reset()
            part["warmup_s"] = round(time.perf_counter() - t0, 1)
            say(name, f"compile warm-up (2 steps, batch {batch}): {part['warmup_s']} s")
            Path(args.out).write_text(json.dumps(res, indent=2))
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        rounds = n // batch
        part.update(batch=batch, questions=0, rounds=rounds, round_s=[])
        done, s = 0, 0.0
        for k in range(rounds):  # one batch per call: each round's seconds land in the JSON as they come
            t0 = time.perf_counter()
            sub = replace(bench, questions=bench.questions[k * batch : (k + 1) * batch])
            rows = run_optimization(model, sub, spec, cfg, RunDir.open(work / name / f"round{k}", {"part": name}), ref)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            s += dt
            done += len({r["question_id"] for r in rows if r["source"] == spec.source})
            per_round = s / (k + 1)
            part.update(questions=done, rounds_done=k + 1, seconds=round(s, 1), per_s=round(done / s, 4),
                        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
                        projected_900_h=round(math.ceil(MMMU_VALIDATION / batch) * per_round / 3600, 3))
            part["round_s"].append(round(dt, 2))
            say(name, f"round {k + 1}/{rounds}: {dt:.1f} s, {done} questions")
            write_result(args, part, res, name, done, s)
        say(name, {k: v for k, v in part.items() if k not in ("flops", "auto", "seed_card")})
    res["projected_900_total_h"] = round(sum(p.get("projected_900_h", 0) for p in res["parts"].values()), 3)
    floors = [p.get("floor_900_h") for p in res["parts"].values()]
    if all(floors):
        res["floor_900_total_h"] = round(sum(floors), 3)
    Path(args.out).write_text(json.dumps(res, indent=2))
    say("total", res.get("projected_900_total_h"), "floor", res.get("floor_900_total_h"))


if __name__ == "__main__":
    main()
