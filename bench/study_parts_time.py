"""Time some parts of the demo study (the demo preset's sizes) on this machine, in one process, each into a fresh
run directory, with its accuracy: the time a part adds to `mirage study`.

    PYTHONPATH=src python bench/study_parts_time.py soft-prompt-question,soft-prompt-universal [OUT.json]

Part names are `study_parts`' (features-question, pixels-universal, soft-prompt-question, ...). Results go to
bench/RESULTS.md by hand (date, machine, load, commit); on a shared machine say how loaded it was (`uptime`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

from mirage.benchmarks import load_benchmark
from mirage.experiments.study import StudyPlan, run_parts, study_parts
from mirage.models import load_model
from mirage.runs import RunDir


def main(names: list[str], out: str | None) -> None:
    model = load_model("demo")
    bench = load_benchmark("shapes", split="test")
    parts = {p.name: p for p in study_parts(StudyPlan.from_preset("demo"), [s.name for s in model.encoders])}
    run = RunDir.open(tempfile.mkdtemp(), {"bench": "study_parts_time"})
    result = {"threads": torch.get_num_threads(), "load_before": os.getloadavg(), "parts": {}}
    for name in names:
        t = time.time()
        run_parts(model, bench, run, [parts[name]], quiet=True)
        rows = [r for r in run.rows() if r["source"] == name]
        result["parts"][name] = {"seconds": round(time.time() - t, 1), "n": len(rows),
                                 "accuracy": round(sum(r["correct"] for r in rows) / max(1, len(rows)), 4)}
        print(name, result["parts"][name], flush=True)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result))
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1].split(","), sys.argv[2] if len(sys.argv) > 2 else None)
