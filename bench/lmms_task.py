"""An `lmms:` task (lmms-eval 0.7.3's own task objects) timed on the LLaVA-1.5-7B shape, on one GPU, in one call.

    PYTHONPATH=src python bench/lmms_task.py OUT.json [--small] [--task scienceqa_img] [--questions 128]

Data: the task's hub-layout copy made by tests/lmms_hub.py's builder for it, its rows repeated to `--questions`
(the doc index cycles over the builder's rows) and every image replaced by a distinct PNG of a real ScienceQA-IMG
test image's size (the 12 sizes of the shared ScienceQA fixture, 518x80 to 760x506, cycled; a drawn diagram:
background gradient, shapes, a little noise), so decoding and the processor cost what they cost on the real set.
Loaded through mirage's `lmms:` loader exactly as `mirage eval --benchmark lmms:TASK --data-dir DIR --limit N`
does (the CLI's `benchmark_options`, then `load_benchmark`), HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set: the first
load (lmms-eval's import, its index of the task's folder, `datasets` building its Arrow cache, mirage's questions)
and a second in the same process are timed.

Model: random bf16 weights of the LLaVA-1.5-7B shape (`hf_7b_check.save_llava_7b`, loaded through `hf:DIR`),
eager (mirage eval's default). Timed: `evaluate_conditions` (letter scoring, batch 32, a run directory as `mirage
eval` writes, the default prefetch workers) for real,blank together and for each alone, after an untimed warm-up.
Anchor: lmms-eval's llava_hf loop (`new_parts.lmms_loop`) on the same questions' real images, one question at a
time, the image decoded inside the timing (lmms-eval calls doc_to_visual per request), `generate` with the task's
`generation_kwargs.max_new_tokens` (scienceqa_img: 16; lmms-eval's default 1024 where the task gives none; the random
weights never emit the end token, so every call runs them all). Recorded: load seconds, forwards/s per condition,
the anchor's questions/s, mirage/anchor, date, device, commit, versions; OUT.json is written after every part.
`--small`: a 1/16-size model on the CPU and 16 questions, to check the script end to end.

The device (torch 2.11, transformers 5.17, pyarrow, pandas, accelerate; no datasets, no lmms-eval, no network) needs
these wheels in .whl/ (`python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation
cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl ...`):
lmms_eval==0.7.3 datasets==5.2.0 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19 loguru==0.8.0 tenacity==9.2.1
pytz==2026.6 (5.6 MiB in all; lmms_eval.utils imports pytz, absent from the device's list). One call, 600 s,
carry [".whl"]:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 || exit; python3 -m pip list 2>/dev/null | grep -iE \
      '^(torch|transformers|datasets|lmms.eval|pyarrow|pandas|fsspec|huggingface.hub) '; timeout 540 python3 \
      bench/lmms_task.py $OUT/lmms_task.json --commit COMMIT 2>&1 | tee $OUT/lmms_task.log
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
import hf_7b_check as base  # noqa: E402
import lmms_hub  # noqa: E402
from new_parts import lmms_loop, say, timed  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.cli.common import benchmark_options  # noqa: E402
from mirage.conditions import parse_conditions  # noqa: E402
from mirage.evaluate import evaluate_conditions  # noqa: E402
from mirage.models import load_model  # noqa: E402
from mirage.runs import RunDir  # noqa: E402

BUILDERS = {**lmms_hub.SINGLE_IMAGE, "scienceqa_img": lmms_hub.scienceqa_img, "muirbench": lmms_hub.muirbench}
# the shared ScienceQA fixture's 12 test images (real ScienceQA-IMG items), width x height
SIZES = [(302, 232), (452, 595), (760, 506), (236, 241), (556, 208), (575, 171), (750, 429), (426, 283),
         (760, 506), (518, 80), (312, 237), (750, 429)]
LLAVA_HF_MAX_NEW_TOKENS = 1024  # lmms-eval's llava_hf when a task's generation_kwargs give none


def diagram(k: int) -> dict:
    """Row k's image: a PNG of SIZES[k % 12], a gradient with shapes and mild noise (distinct per k), as the hub's
    {bytes, path} struct."""
    from PIL import Image, ImageDraw

    w, h = SIZES[k % len(SIZES)]
    rng = np.random.default_rng(k)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w)[None, :, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((h, 1, 1))
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        box = (x0, y0, x0 + int(rng.integers(8, max(9, w // 3))), y0 + int(rng.integers(8, max(9, h // 3))))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill, outline=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def grow(root: Path, n: int) -> dict:
    """Every parquet file under `root` (a builder's rows) rewritten with `n` rows, row i a copy of row i % rows, its
    images (image structs and lists of them) replaced by `diagram`s. Returns the images' count and mean bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes = []
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        rows = table.to_pylist()
        images = [f.name for f in table.schema if f.type.equals(lmms_hub.IMAGE)]
        lists = [f.name for f in table.schema if pa.types.is_list(f.type) and f.type.value_type.equals(lmms_hub.IMAGE)]
        out = []
        for i in range(n):
            row = dict(rows[i % len(rows)])
            for col in images:
                if row[col] is not None:
                    row[col] = diagram(len(sizes))
                    sizes.append(len(row[col]["bytes"]))
            for col in lists:
                row[col] = [diagram(len(sizes) + j) for j in range(len(row[col] or []))]
                sizes += [len(x["bytes"]) for x in row[col]]
            out.append(row)
        pq.write_table(pa.Table.from_pylist(out, schema=table.schema), path)  # the schema keeps the hub metadata
    return {"images": len(sizes), "png_kb_mean": round(sum(sizes) / max(1, len(sizes)) / 1024, 1)}


def max_new_tokens(task: str) -> int:
    """The task's generation_kwargs.max_new_tokens from its YAML (lmms-eval's llava_hf default where it gives none)."""
    from lmms_eval import utils

    from mirage.benchmarks.lmms import task_manager

    entry = task_manager(task).task_index.get(task, {})
    if entry.get("type") != "task":
        return LLAVA_HF_MAX_NEW_TOKENS
    config = utils.load_yaml_config(entry["yaml_path"], mode="simple")
    return int((config.get("generation_kwargs") or {}).get("max_new_tokens") or LLAVA_HF_MAX_NEW_TOKENS)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "lmms_eval", "datasets", "pyarrow", "huggingface_hub", "fsspec"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    from mirage._version import __version__

    return out | {"mirage": __version__}


def commit(given: str | None) -> str | None:
    """--commit, else git's HEAD (on the device the copy of .git may be stale: pass --commit there)."""
    if given:
        return given
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--small", action="store_true", help="1/16-size model on the CPU, 16 questions: a check")
    ap.add_argument("--task", default="scienceqa_img", choices=sorted(BUILDERS))
    ap.add_argument("--questions", type=int, default=None, help="questions (rows) of the task (128; --small: 16)")
    ap.add_argument("--anchor-questions", type=int, default=None, help="of them in the batch-1 loop (all; --small 4)")
    ap.add_argument("--anchor-tokens", type=int, default=None, help="max_new_tokens of the loop (the task's own)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--commit", default=None, help="the tree's commit (read with git where there is a .git)")
    ap.add_argument("--build", default=None, help=argparse.SUPPRESS)  # the child: make the data in DIR, print
    args = ap.parse_args()
    if args.build:
        print(json.dumps(grow(BUILDERS[args.task](Path(args.build)), args.questions)))
        return
    small = args.small
    base.DEVICE = dev = "cpu" if small else "cuda"
    n = args.questions or (16 if small else 128)
    na = min(n, args.anchor_questions or (4 if small else n))
    work = Path(tempfile.mkdtemp(prefix="lmms_task-"))
    out = Path(args.out)
    res = {"task": args.task, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit(args.commit),
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "versions": versions(),
           "small": small, "questions": n, "batch_size": args.batch_size,
           "preloaded": [m for m in ("datasets", "lmms_eval") if m in sys.modules], "parts": {}}

    def record(name, r):
        res["parts"][name] = r
        say(name, r)
        out.write_text(json.dumps(res, indent=2))

    # the data are made in a child process, so that this one's first load imports datasets and lmms-eval itself
    t = time.perf_counter()
    data = work / "hub" / args.task
    child = [sys.executable, *(["-S"] if sys.flags.no_site else []), __file__, "-", "--build", str(data)]
    made = subprocess.run([*child, "--task", args.task, "--questions", str(n)], check=True, capture_output=True,
                          text=True).stdout
    res["data"] = {"builder": f"tests/lmms_hub.py:{BUILDERS[args.task].__name__}",
                   **json.loads(made.strip().splitlines()[-1]), "build_s": round(time.perf_counter() - t, 1)}
    name = f"lmms:{args.task}"

    def load():  # as `mirage eval --benchmark lmms:TASK --data-dir DIR --limit N`
        return load_benchmark(name, split=None, limit=n, **benchmark_options(name, data, None, False))

    bench, s = timed(load)
    _, s2 = timed(load)
    res["task_load_s"], res["task_reload_s"] = round(s, 2), round(s2, 2)
    res["questions_loaded"] = len(bench)
    say("loaded", len(bench), "questions in", round(s, 2), "s; again in", round(s2, 2), "s")

    prompts = [p for q in bench for p in (bench.prompt(q), *q.meta.get("prompts", {}).values())]
    words = [w for p in prompts for w in re.findall(r"\w+|[^\w\s]+", p)]  # the tokenizer's Whitespace pre-tokenizer
    t = time.perf_counter()
    base.save_llava_7b(work / "m", words, small)
    model = load_model(f"hf:{work / 'm'}", device=dev, dtype=torch.bfloat16)
    res["model_setup_s"] = round(time.perf_counter() - t, 1)
    asked = bench.for_model(model)  # what evaluate_conditions asks (lmms-eval's kwargs for the llava family)
    k = [len(q.images) for q in asked]  # tokens with every image's, as the model sees them
    lengths = model.sequences([asked.prompt(q) for q in asked], counts=[[model.num_image_tokens] * i for i in k],
                              images=k)[1].sum(1).tolist()
    res["prompt_tokens"] = {"min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1), "max": max(lengths)}
    out.write_text(json.dumps(res, indent=2))

    def evaluate(names, count, tag):
        run = RunDir.open(work / f"run-{tag}", {"bench": "lmms_task", "conditions": names})
        return timed(lambda: evaluate_conditions(model, bench.subset(count), parse_conditions(names),
                                                 batch_size=args.batch_size, run=run, quiet=True))

    evaluate("real,blank", min(n, args.batch_size), "warm")  # CUDA context, kernels' plans, the processor: untimed
    per_s = {}
    for names in ("real,blank", "real", "blank"):
        rows, s = evaluate(names, n, names.replace(",", "+"))
        per_s[names] = len(rows) / s
        record(f"mirage/{names}", {"seconds": round(s, 2), "forwards": len(rows), "per_s": round(per_s[names], 1),
                                   "peak_gb": base.peak_gb()})

    tokens = args.anchor_tokens or max_new_tokens(args.task)
    calls = [(model.chat_text(asked.prompt(q), image=len(q.images) if len(q.images) > 1 else True),
              (lambda q=q: [q.image(k) for k in range(len(q.images))] if len(q.images) > 1 else q.image(0)))
             for q in asked.questions[:na]]
    _, sa = lmms_loop(model, calls, tokens)
    anchor = na / sa
    record("anchor/lmms_llava_hf_batch1", {"questions": na, "seconds": round(sa, 2), "per_s": round(anchor, 3),
                                           "max_new_tokens": tokens, "peak_gb": base.peak_gb()})
    res["mirage_over_anchor"] = {names: round(v / anchor, 1) for names, v in per_s.items()}
    out.write_text(json.dumps(res, indent=2))
    say("done", res["mirage_over_anchor"])


if __name__ == "__main__":
    main()
