"""`--batch-size auto`: the largest batch, and the memory switches only where they are needed, that fit the device's
memory for this model, this input and these prompts, found by measuring one optimization step (forward, backward,
Adam) of `optimize`'s own loops at growing sizes on the benchmark's longest prompts.

The switches are tried in the order of what they cost: none; gradient checkpointing (an extra forward per step,
same results); the unused encoders moved to the CPU (same results); the largest encoder detached, as the seed did
on a 24 GB card (ConvNeXt for Cambrian: for features its tensor stays at its start, for pixels the image goes
through the other encoders; this changes the experiment, and the choice says so). The next switch is tried only
while the batch stays under ENOUGH, and kept only where it fits a larger batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from .. import memory
from ..benchmarks.question import Benchmark
from ..errors import UsageError
from ..inputs import Reference, default_lr
from ..models.vlm import VLM
from ..objectives import OBJECTIVES
from ..optimize import OptimizeConfig, optimize_questions, optimize_universal
from .optimization import OptimizeSpec, apply_switches, clear_switches, input_images, spec_input

# Per-question batches past this many questions of ~700 tokens run no faster per question on an H100/H200
# (bench/RESULTS.md: 7B features, 43.7 ms per question-step at batch 4 and at batch 8), so a switch that slows every
# step is not worth a larger batch once the batch has reached it.
ENOUGH = 4
MAX_BATCH = 64  # per question: the largest batch tried
CPU_DEFAULT = 16  # on the CPU without a memory budget, auto keeps the option's former default
AUTO = "auto"


def parse_batch_size(value: str) -> int | str:
    """`--batch-size`: a positive integer or auto."""
    if value.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--batch-size: {value!r} is neither a positive integer nor auto")
    return n


@dataclass
class Fit:
    """The choice: batch size, switches, and the measurements it rests on."""

    batch_size: int
    grad_checkpointing: bool = False
    offload: bool = False
    detach: str | None = None  # the encoder detached (None: every encoder takes part)
    budget_gib: float | None = None
    peak_gib: float | None = None
    # {batch, switches, peak_gib ("oom": the GPU ran out), peak_bytes, fits} in the order measured
    probes: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def switches(self) -> list[str]:
        return [n for n, on in (("grad_checkpointing", self.grad_checkpointing), ("offload", self.offload),
                                (f"detach {self.detach}", self.detach)) if on]

    def spec(self, spec: OptimizeSpec, model: VLM) -> OptimizeSpec:
        """`spec` with the chosen detach (pixels: through the other encoders only; features: its tensor frozen)."""
        return detached(spec, self.detach, [e.name for e in model.encoders]) if self.detach else spec

    def describe(self) -> str:
        if self.budget_gib is None:
            return f"batch size auto: {self.batch_size} (the CPU default; --memory GIB measures a fit on the CPU)"
        why = ", ".join(self.switches) or "no memory switches"
        note = (f"; {self.detach} detached: its input stays at its start (the seed's 24 GB switch; "
                "pass --batch-size N to keep every encoder)" if self.detach else "")
        return (f"batch size auto: {self.batch_size} ({why}; peak {self.peak_gib} of {self.budget_gib} GiB; "
                f"{len(self.probes)} probe steps in {self.seconds:.1f} s){note}")

    def record(self) -> dict:
        return {"batch_size": self.batch_size, "switches": self.switches, "budget_gib": self.budget_gib,
                "peak_gib": self.peak_gib, "probes": self.probes, "probe_s": round(self.seconds, 1)}


def detached(spec: OptimizeSpec, name: str, encoders: list[str]) -> OptimizeSpec:
    """`spec` with encoder `name` detached: pixels go through the other `encoders`; features keep its tensor."""
    if spec.input == "pixels":
        return replace(spec, encoders=[n for n in encoders if n != name])
    return replace(spec, detach=[name])


def detach_candidate(model: VLM, spec: OptimizeSpec) -> str | None:
    """The encoder the last switch detaches: the one with the largest input (Cambrian-1: ConvNeXt at 1024 px); None
    where the user chose encoders or detached ones, where the model has one encoder, or for tokens."""
    encs = getattr(model, "encoders", [])
    if spec.input not in ("features", "pixels") or spec.encoders or spec.detach or len(encs) < 2:
        return None
    return max(encs, key=lambda e: (e.image_size, e.num_tokens)).name


def gib(n: int) -> float:
    return round(n / memory.GIB, 2)


def longest_first(model: VLM, bench: Benchmark) -> list:
    """The benchmark's questions, longest prompt (in the model's tokens) first: the probes' worst case."""
    return sorted(bench.questions, key=lambda q: prompt_length(model, bench.prompt(q)), reverse=True)


def step_peak(model: VLM, bench: Benchmark, spec: OptimizeSpec, cfg: OptimizeConfig, batch: int, ref: Reference,
              grad_checkpointing: bool = False, offload: bool = False, universal: bool = False,
              questions: list | None = None) -> int | None:
    """Peak bytes of one step of `optimize`'s loop (forward, backward, Adam, the closing forward) on `batch` of
    `questions` (default: the longest prompts first) under the given switches; None if the GPU ran out of memory.
    `universal`: one mini-batch of `optimize_universal` instead of per-question slots."""
    qs = questions or longest_first(model, bench)
    qs = [qs[i % len(qs)] for i in range(batch)]
    clear_switches(model)
    apply_switches(model, spec, grad_checkpointing, offload)
    sub = replace(bench, questions=qs)
    step = replace(cfg, steps=1, early_stop=0, batch_size=batch, accum=1)
    objective = OBJECTIVES.get(spec.objective)
    lr = cfg.lr if cfg.lr is not None else default_lr(spec.input, spec.param)

    def work() -> None:
        if universal:
            inp = spec_input(model, spec, step, 1, ref)
            optimize_universal(model, sub, qs, inp, objective, step, spec.source, None, lr)
        else:
            inp = spec_input(model, spec, step, batch, ref, input_images(model, spec, sub))
            optimize_questions(model, sub, inp, objective, step, spec.source, None, lr)

    try:
        return memory.peak(work, model, model.device)
    except memory.OutOfBudget:
        return None


def fit_batch(model: VLM, bench: Benchmark, spec: OptimizeSpec, cfg: OptimizeConfig, ref: Reference | None = None,
              memory_gib: float | None = None, fixed: int | None = None, grad_checkpointing: bool = False,
              offload: bool = False) -> Fit:
    """Measure the largest per-question batch (or, with `fixed`, the switches a batch of that size needs: a
    universal input's batch is part of its experiment) that fits `memory_gib` (default: the GPU's free memory).
    Switches given (`grad_checkpointing`, `offload`) stay on in every step tried. Leaves the model with the chosen
    switches applied. On the CPU with no `memory_gib`: the batch CPU_DEFAULT (or `fixed`), the given switches."""
    limit = memory.budget(model.device, memory_gib)
    if limit is None:
        apply_switches(model, spec, grad_checkpointing, offload)
        return Fit(fixed or CPU_DEFAULT, grad_checkpointing, offload)
    t0 = time.perf_counter()
    bench = bench.for_model(model)
    ref = ref or Reference.from_benchmark(model, bench)
    longest = longest_first(model, bench)
    cap = fixed or min(MAX_BATCH, len(longest))
    fit = Fit(0, budget_gib=gib(limit))
    target = detach_candidate(model, spec)
    names = [e.name for e in getattr(model, "encoders", [])]

    def probe(switches: dict, batch: int) -> int | None:
        """The peak of one step at `batch` under `switches` (None: it did not fit)."""
        top = step_peak(model, bench, detached(spec, target, names) if switches["detach"] else spec, cfg, batch, ref,
                        switches["grad_checkpointing"], switches["offload"], bool(fixed), longest)
        fits = top is not None and top <= limit
        fit.probes.append({"batch": batch, "switches": [k for k, v in switches.items() if v],
                           "peak_gib": gib(top) if top is not None else "oom", "peak_bytes": top, "fits": fits})
        return top if fits else None

    def largest(switches: dict) -> tuple[int, int | None]:
        """(the largest batch that fits under `switches`, its peak); (0, None) if none does. Each question adds about
        the same bytes (activations, gradients, Adam's state), so the next size tried is the one the peaks measured
        so far predict; a size that does not fit halves the interval left."""
        if fixed:
            top = probe(switches, fixed)
            return (fixed, top) if top is not None else (0, None)
        one = probe(switches, 1)
        if one is None:
            return 0, None
        lo, lo_top, hi = 1, one, cap + 1  # lo fits (its peak lo_top); hi does not, or lies past the cap
        guess = 2
        while lo + 1 < hi:
            b = max(lo + 1, min(guess, hi - 1))
            top = probe(switches, b)
            if top is None:
                hi = b
                guess = (lo + hi) // 2
                continue
            lo, lo_top = b, top
            per_question = max(1, (lo_top - one) // (lo - 1))
            if limit - lo_top < per_question:
                break  # the measured growth leaves no room for one more question
            guess = lo + (limit - lo_top) // per_question
        return lo, lo_top

    ladder = [dict(grad_checkpointing=False, offload=False, detach=False),
              dict(grad_checkpointing=True, offload=False, detach=False)]
    if hasattr(model, "vision") and (spec.input != "pixels" or spec.encoders) and model.device.type != "cpu":
        ladder.append(dict(grad_checkpointing=True, offload=True, detach=False))
    if target is not None:
        ladder.append(dict(grad_checkpointing=True, offload=hasattr(model, "vision"), detach=True))
    chosen, tried = None, []
    for switches in ladder:
        switches = dict(switches, grad_checkpointing=switches["grad_checkpointing"] or grad_checkpointing,
                        offload=switches["offload"] or offload)
        if switches in tried:
            continue
        tried.append(switches)
        batch, top = largest(switches)
        if batch > fit.batch_size:
            fit.batch_size, fit.peak_gib, chosen = batch, gib(top), switches
        if fit.batch_size >= min(ENOUGH, cap):
            break
    fit.seconds = time.perf_counter() - t0
    clear_switches(model)
    if chosen is None:
        what = f"a batch of {fixed}" if fixed else "one question"
        raise UsageError(f"--batch-size auto: {what} does not fit in {fit.budget_gib} GiB on {model.device} even with "
                         "every memory switch (peaks: " + ", ".join(str(p["peak_gib"]) for p in fit.probes) + " GiB)")
    fit.grad_checkpointing, fit.offload = chosen["grad_checkpointing"], chosen["offload"]
    fit.detach = target if chosen["detach"] else None
    apply_switches(model, fit.spec(spec, model), fit.grad_checkpointing, fit.offload)
    return fit


def prompt_length(model: VLM, prompt: str) -> int:
    """The prompt's length in the model's tokens (characters for a model with no tokenizer)."""
    tok = getattr(model, "tokenizer", None)
    return len(tok(prompt, add_special_tokens=False).input_ids) if tok is not None else len(prompt)
