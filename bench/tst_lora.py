"""tst-lm at scale: 5-fold LoRA cross-fitting of 900 questions on the LLaVA-1.5-7B LM shape (one device call).

    PYTHONPATH=src python bench/tst_lora.py OUT.json [--epochs 5] [--questions 900] [--folds 5] [--batch-size 32]
        [--checkpointing auto|on|off] [--tiny | --layers N --hidden H] [--cpu]

Random bf16 weights of the Llama-2-7B config (LLaVA-1.5-7B's LM: 32 layers, hidden 4096, MLP 11008, vocabulary
32,000), built on the GPU, behind mirage's TextLM with a word-level tokenizer (the demo's, over ShapesQA's words and
1,000 filler words) and its chat template. 900 synthetic four-option questions whose prompts are drawn log-normal in
length (median 100 words, clipped to 20-400: text-only MMMU-like prompts), answers uniform. Then `run_tst(...,
("lm",), folds=5)` end to end: for each fold fresh LoRA adapters on every linear layer (rank 8, alpha 16, dropout 0.1),
AdamW at 2e-4 with the cosine schedule, batch 32 of length-sorted questions (gradient checkpointing as tst-lm
chooses it, `auto`: only for the batches whose step does not fit without it, found by probing steps; each fold's
count of such batches and the probes' seconds are recorded), then the held-out fold scored and its rows written. Wall seconds per fold, steps, seconds per
step, tokens per step and the peak memory (GPU: allocated and reserved by PyTorch; CPU: the process's peak RSS) go
to OUT.json after every fold, with the date, device, versions and commit. No numbers are asserted.

`--tiny` (2 layers, hidden 64) or `--layers`/`--hidden` shrink the model (MLP and heads scale with the hidden size,
the vocabulary stays) to check the whole script on a CPU (`--cpu`, fp32) in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mirage.benchmarks.question import Benchmark, Question, letter_prompt  # noqa: E402
from mirage.benchmarks.shapes.questions import vocabulary  # noqa: E402
from mirage.experiments import tst  # noqa: E402
from mirage.models.demo.tokenizer import build_tokenizer  # noqa: E402
from mirage.models.text_lm import TextLM  # noqa: E402
from mirage.runs import RunDir  # noqa: E402

LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)
FILLER = [f"w{i}" for i in range(1000)]


def questions(n: int, seed: int = 0) -> list[Question]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(100), 0.6, n), 20, 400).astype(int)
    return [Question(f"q{i:04d}", " ".join(rng.choice(FILLER, k)) + " ?",
                     tuple(" ".join(rng.choice(FILLER, 3)) for _ in range(4)), int(rng.integers(4)), type="synthetic")
            for i, k in enumerate(lengths)]


def model_shape(layers: int | None, hidden: int | None) -> dict:
    """The Llama-2-7B config, or a smaller one of `layers` x `hidden` (MLP 2.6875 x hidden as 11008/4096, heads of
    128 dimensions, at least 2)."""
    shape = dict(LLAMA2_7B)
    if layers is not None:
        shape["num_hidden_layers"] = layers
    if hidden is not None:
        heads = max(2, hidden // 128)
        if hidden % heads:
            raise SystemExit(f"--hidden {hidden}: must be a multiple of {heads} (the number of heads)")
        shape |= dict(hidden_size=hidden, intermediate_size=int(hidden * 11008 / 4096), num_attention_heads=heads,
                      num_key_value_heads=heads)
    return shape


def commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def peak_rss_gb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # Linux: KiB


def main() -> None:
    import datetime

    import peft
    import transformers

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--questions", type=int, default=900)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--checkpointing", choices=("auto", "on", "off"), default="auto",
                    help="gradient checkpointing of the decoder; auto: tst-lm's measured choice")
    ap.add_argument("--tiny", action="store_true", help="2 layers, hidden 64: the script's check on a CPU")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--cpu", action="store_true", help="run on the CPU in fp32 even where a GPU is")
    ap.add_argument("--commit", help="the commit to record (default: git rev-parse where the tree has .git)")
    args = ap.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.tiny:
        args.layers, args.hidden = args.layers or 2, args.hidden or 64
    cuda = torch.cuda.is_available() and not args.cpu
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    tok = build_tokenizer(vocabulary() + FILLER)
    shape = model_shape(args.layers, args.hidden)
    settings = tst.LoraSettings(epochs=args.epochs, batch_size=args.batch_size,
                                checkpointing={"auto": None, "on": True, "off": False}[args.checkpointing])
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device(device):
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        model = LlamaForCausalLM(LlamaConfig(**shape, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                             eos_token_id=tok.eos_token_id)).eval().requires_grad_(False)
        torch.set_default_dtype(default)
    lm = TextLM(model, tok, "llama-2-7b-shape" if shape == LLAMA2_7B else "llama-2-shape-small")
    bench = Benchmark("synthetic", "test", questions(args.questions), letter_prompt)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "device": torch.cuda.get_device_name() if cuda else "cpu", "commit": args.commit or commit(),
              "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
              "shape": shape, "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
              "dtype": str(dtype), "questions": args.questions, "folds": args.folds,
              "checkpointing": args.checkpointing,
              "lora": dataclass_dict(settings), "build_s": round(time.time() - t0, 1),
              "prompt_tokens": summary(bench, lm), "per_fold": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lora_rows, checkpointed_batches = tst.lora_rows, tst.checkpointed_batches
    chosen: list[dict] = []  # auto's choice in the fold: how many batches recompute, of how many, probe seconds

    def choosing(model, decoder, params, loss_of, batches, *a, **k):
        t = time.time()
        heavy = checkpointed_batches(model, decoder, params, loss_of, batches, *a, **k)
        chosen.append({"batches": len(heavy), "of": len(batches), "probe_s": round(time.time() - t, 1)})
        return heavy

    def timed(model, bench, train, test, fold, *a, **k):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.time()
        chosen.clear()
        rows = lora_rows(model, bench, train, test, fold, *a, **k)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.time() - t
        n_steps = args.epochs * -(-len(train) // args.batch_size)
        tokens = sum(len(lm.tokenizer(lm.chat_text(bench.prompt(q)))["input_ids"]) for q in train) * args.epochs
        result["per_fold"].append({
            "fold": fold, "train": len(train), "test": len(test), "steps": n_steps, "seconds": round(seconds, 1),
            "checkpointing": chosen[0] if chosen else {"on": "all", "off": "none"}[args.checkpointing],
            "s_per_step": round(seconds / n_steps, 3), "tokens_per_step": round(tokens / n_steps, 1),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
            "peak_rss_gb": peak_rss_gb()})
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(result["per_fold"][-1], flush=True)
        return rows

    tst.lora_rows, tst.checkpointed_batches = timed, choosing
    t = time.time()
    with tempfile.TemporaryDirectory() as d:
        rows = tst.run_tst(None, bench, RunDir.open(d, {"bench": "tst_lora"}), ("lm",), folds=args.folds, lm=lm,
                           lora=settings, quiet=True)
    result["total_s"] = round(time.time() - t, 1)
    result["rows"] = len(rows)
    result["accuracy"] = round(float(np.mean([r["correct"] for r in rows])), 4)  # random answers: chance expected
    result["peak_gb"] = max(f["peak_gb"] for f in result["per_fold"]) if cuda else None
    result["peak_reserved_gb"] = max(f["peak_reserved_gb"] for f in result["per_fold"]) if cuda else None
    result["peak_rss_gb"] = peak_rss_gb()
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_fold"}, indent=1))


def dataclass_dict(x) -> dict:
    import dataclasses

    return dataclasses.asdict(x)


def summary(bench: Benchmark, lm: TextLM) -> dict:
    n = [len(lm.tokenizer(lm.chat_text(bench.prompt(q)))["input_ids"]) for q in bench]
    return {"mean": round(float(np.mean(n)), 1), "median": int(np.median(n)), "max": int(max(n))}


if __name__ == "__main__":
    main()
