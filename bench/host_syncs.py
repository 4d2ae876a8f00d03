"""Where the seed's optimization step would wait for the GPU: every operator that reads a tensor's values on the host
(`.item()`, `int()`, `bool()`, `.tolist()`) or whose output shape depends on its values (`nonzero`, boolean-mask
indexing, `masked_select`, `unique`, `repeat_interleave` without `output_size`), counted by the source line that
called it. On a GPU each of these drains the launch queue; on any device the count is the same, so the audit runs on
the CPU.

    PYTHONPATH=src python bench/host_syncs.py OUT.json [--fixtures ../shared/fixtures] [--tiny --device cpu]
        [--parts features,pixels] [--steps 3]

On `seed_job.py`'s model and questions: `run_optimization` of `--steps` steps on one batch per part (rows,
artifacts and the PNG re-check included), under a dispatch mode that records those operators. Reported per
part: the calls per step of the loop (the counts over `--steps` steps minus those over 1 step, divided by
`--steps` - 1: what a run pays every step, apart from the once-per-batch setup and closing forward) and per
batch, each by caller (file:line function, the first frame in mirage, else in transformers or torch).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).parent))
from seed_job import build, commit, model_arguments, repeated  # noqa: E402

from mirage.experiments import OptimizeSpec, run_optimization  # noqa: E402
from mirage.optimize import OptimizeConfig  # noqa: E402
from mirage.runs import RunDir  # noqa: E402

aten = torch.ops.aten
# operators whose CUDA kernels copy a value or a count back to the host before they return
SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
           aten.unique_consecutive.default, aten._unique2.default, aten.repeat_interleave.Tensor,
           aten.is_nonzero.default, aten.equal.default, aten.nonzero_static.default}


def caller() -> str:
    """The innermost frame of the stack in mirage and, called from it, the innermost in transformers (the library
    code that reads the value), if any."""
    frames = traceback.extract_stack()[:-2]
    at = max((i for i, f in enumerate(frames) if "/mirage/" in f.filename), default=None)
    if at is None:
        return "?"
    where = [frames[at]] + [f for f in frames[at + 1:] if "/transformers/" in f.filename][-1:]
    return " -> ".join(f"{f.filename.split('/site-packages/')[-1].split('/src/')[-1]}:{f.lineno} {f.name}" for f in where)


class Syncs(TorchDispatchMode):
    """Counts the syncing operators by caller; boolean-mask indexing counts as `index(bool)`."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = None
        if func in SYNCING:
            name = func.__name__.split(".")[0]
        elif func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
            if any(i is not None and i.dtype == torch.bool for i in indices):
                name = f"{func.__name__.split('.')[0]}(bool)"
        if name is not None:
            self.calls[f"{name} <- {caller()}"] += 1
        return func(*args, **kwargs)


def counted(model, bench, spec, cfg, ref, steps: int) -> Counter:
    """The syncing calls of one `run_optimization` of `steps` steps on `bench`'s one batch."""
    work = Path(tempfile.mkdtemp())
    mode = Syncs()
    with mode:
        run_optimization(model, bench, spec, replace(cfg, steps=steps),
                         RunDir.open(work / f"{steps}", {"steps": steps}), ref)
    return mode.calls


def main() -> None:
    ap = argparse.ArgumentParser()
    model_arguments(ap)
    ap.add_argument("--parts", default="features,pixels")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--commit", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    model, fixture, ref = build(args.fixtures, args.tiny, device)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": args.commit or commit(), "torch": torch.__version__,
           "device": str(device), "config": "tiny" if args.tiny else "cambrian-8b shapes (random weights)",
           "batch": args.batch, "steps": args.steps, "parts": {}}
    bench = repeated(fixture, args.batch)
    for part in args.parts.split(","):
        spec = OptimizeSpec(part)  # every encoder, nothing detached, as the seed job
        cfg = OptimizeConfig(steps=args.steps, early_stop=0, batch_size=args.batch)
        once = counted(model, bench, spec, cfg, ref, 1)
        many = counted(model, bench, spec, cfg, ref, args.steps)
        per_step = {k: (many[k] - once.get(k, 0)) / (args.steps - 1) for k in many if many[k] != once.get(k, 0)}
        res["parts"][part] = {
            "per_step": dict(sorted(per_step.items(), key=lambda kv: -kv[1])),
            "per_step_total": sum(per_step.values()),
            "per_batch_setup_and_close": {k: v for k, v in sorted(once.items(), key=lambda kv: -kv[1])},
        }
        print(part, json.dumps(res["parts"][part], indent=1), flush=True)
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
