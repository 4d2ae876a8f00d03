"""SlotAdam's step before and after the fused update, on the per-question features of Cambrian-1's four towers.

    PYTHONPATH=src python bench/slot_adam.py OUT.json [--slots 2] [--device cpu|cuda] [--reps 3]

Parameters as `FeatureInput` holds them for `--slots` questions (SigLIP 576 x 1152, CLIP 576 x 1024, DINOv2
576 x 1536, ConvNeXt 9216 x 5760; float32), a random gradient, all slots active but the last (the masked path).
"before": the element-wise update SlotAdam ran until c4fe4a4 (torch.where per moment, bias corrections broadcast per
slot), kept here as the measured reference; "after": `mirage.slot_adam.SlotAdam` (torch's fused Adam over each
active slot's rows). Per variant: median wall ms of a step, and the peak bytes the step allocates beyond the
parameters, gradients and moments (CPU: every storage an operator creates, `mirage.memory`; GPU: the allocator's
peak). Also the largest difference between the two updates' parameters after 3 steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mirage import memory
from mirage.slot_adam import SlotAdam

SHAPES = {"siglip": (576, 1152), "clip": (576, 1024), "dino": (576, 1536), "convnext": (9216, 5760)}


class Before(SlotAdam):
    """The unfused update of SlotAdam before c4fe4a4 (its step, verbatim in its arithmetic)."""

    @torch.no_grad()
    def step(self, active):
        b1, b2 = self.betas
        self.t += active.long()
        t = self.t.clamp(min=1).double()
        bc1, bc2 = (1 - b1**t).float(), (1 - b2**t).float()
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.to(p.device, non_blocking=True).view(shape)
            g = p.grad
            m.copy_(torch.where(on, b1 * m + (1 - b1) * g, m))
            v.copy_(torch.where(on, b2 * v + (1 - b2) * g * g, v))
            mhat = m / bc1.to(p.device, non_blocking=True).view(shape)
            vhat = v / bc2.to(p.device, non_blocking=True).view(shape)
            p.sub_(torch.where(on, self.lr * mhat / (vhat.sqrt() + self.eps), torch.zeros_like(p)))


def setup(cls, slots: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(slots, *s, generator=g).to(device)) for s in SHAPES.values()]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=g) * 1e-2).to(device)
    return params, cls(params, slots, 0.1)


def measure(cls, slots: int, device: torch.device, reps: int) -> dict:
    params, opt = setup(cls, slots, device)
    active = torch.ones(slots, dtype=torch.bool)
    active[-1] = slots == 1
    opt.step(active)  # warm-up
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        opt.step(active)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t) * 1e3)
    held = torch.nn.Module()  # the parameters, gradients and moments: resident, not the step's
    for i, x in enumerate([*params, *(p.grad for p in params), *opt.m, *opt.v]):
        held.register_buffer(f"t{i}", x, persistent=False)
    top = memory.peak(lambda: opt.step(active), held, device)
    return {"ms": round(statistics.median(times), 1), "step_bytes": top - memory.resident(held, device),
            "resident_bytes": memory.resident(held, device)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": torch.cuda.get_device_name(device)
           if device.type == "cuda" else "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
           "slots": args.slots, "values_per_slot": sum(a * b for a, b in SHAPES.values())}
    for name, cls in (("before", Before), ("after", SlotAdam)):
        res[name] = measure(cls, args.slots, device, args.reps)
        print(name, res[name], flush=True)
    a, b = (setup(cls, args.slots, device) for cls in (Before, SlotAdam))
    active = torch.ones(args.slots, dtype=torch.bool)
    for _ in range(3):
        a[1].step(active)
        b[1].step(active)
    res["max_abs_difference_after_3_steps"] = max((x - y).abs().max().item() for x, y in zip(a[0], b[0]))
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(res)


if __name__ == "__main__":
    main()
