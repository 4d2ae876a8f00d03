"""A LLaVA-1.5-7B-shaped model with random weights through `hf:DIR`, in bf16 on CUDA, on the benchmark fixtures.

    PYTHONPATH=src python bench/hf_7b_check.py OUT.json [--fixtures ../shared/fixtures] [--workdir /tmp/llava7b]

Builds the model from configs (CLIP ViT-L/14 at 336 px, 576 image tokens; Llama-2-7B sizes; vocabulary 32,064),
saves it with `save_pretrained`, loads it back through mirage's loader, then runs the six image conditions and
50 steps (early stop off) of per-question features and pixels on the MMMU and ScienceQA fixtures. Records wall
time, questions/second and peak GPU memory per part, and the attention implementation chosen. Also runs the
tiny Qwen2-VL and Qwen2.5-VL test models in bf16 on CUDA (conditions and a few feature steps) to check that path.
With random weights the accuracies mean nothing; the timings and memory are the point.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from mirage.benchmarks import load_benchmark
from mirage.conditions import parse_conditions
from mirage.evaluate import evaluate_conditions
from mirage.experiments import OptimizeSpec, run_optimization
from mirage.models import load_model
from mirage.optimize import OptimizeConfig
from mirage.runs import RunDir
from mirage.stats import summarize

# llava-hf/llava-1.5-7b-hf's chat template (mirage reads the answer letters from its assistant turn)
CHAT = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
        "{% endif %}"
        "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
        "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
        "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
        "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
VOCAB = 32064
DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None


def llava_7b_parts(words: list[str], small: bool = False):
    """LLaVA-1.5-7B's processor (a word-level tokenizer over `words`, padded to the real vocabulary size, so the LM
    head costs what it costs; CLIP's image processor) and model config (1/16 of each width and depth: `small`)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor,
                              PreTrainedTokenizerFast)

    tokens = ["<unk>", "<s>", "</s>", "<pad>", *sorted(set(words) | set("ABCDEFGHIJ") | {"USER", "ASSISTANT", ":"})]
    tokens += [f"<extra_{i}>" for i in range(32000 - len(tokens))] + ["<image>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    ip = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                            image_mean=[0.48145466, 0.4578275, 0.40821073],
                            image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, chat_template=CHAT,
                               vision_feature_select_strategy="default", image_token="<image>",
                               num_additional_image_tokens=1)
    k = 16 if small else 1  # --small: a CPU smoke run of the scripts
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024 // k, intermediate_size=4096 // k, num_hidden_layers=24 // k,
                                       num_attention_heads=16 // k, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(vocab_size=VOCAB, hidden_size=4096 // k, intermediate_size=11008 // k,
                                num_hidden_layers=32 // k, num_attention_heads=32 // k, num_key_value_heads=32 // k,
                                max_position_embeddings=4096, pad_token_id=3),
        image_token_id=vocab["<image>"], vision_feature_layer=-2, vision_feature_select_strategy="default")
    return processor, config


def save_llava_7b(d: Path, words: list[str], small: bool = False) -> None:
    """LLaVA-1.5-7B's shapes with random bf16 weights, initialised on the GPU (`llava_7b_parts`), saved to `d`."""
    from transformers import LlavaForConditionalGeneration

    processor, config = llava_7b_parts(words, small)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(DEVICE):
        model = LlavaForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(d)
    processor.save_pretrained(d)
    del model
    torch.cuda.empty_cache()


def part(name: str, fn, n: int, results: dict) -> None:
    sync()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.time()
    rows = fn()
    sync()
    s = time.time() - t
    summary = summarize(rows) if rows else {}
    results["parts"][name] = {"seconds": round(s, 1), "questions": n, "questions_per_s": round(n / s, 3),
                              "peak_gb": peak_gb(),
                              "accuracy": summary.get("accuracy")}
    print(name, results["parts"][name], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fixtures", default="../shared/fixtures")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--small", action="store_true", help="1/16 of the widths and depths, on the CPU: a smoke run")
    ap.add_argument("--only", default=None, help="one fixture benchmark: mmmu or scienceqa")
    ap.add_argument("--no-qwen", action="store_true", help="skip the tiny Qwen checks")
    ap.add_argument("--save-only", action="store_true", help="build and save the model to WORKDIR/llava7b, then stop")
    ap.add_argument("--model-dir", default=None, help="an already saved 7B-shaped model: skip building")
    args = ap.parse_args()
    global DEVICE
    DEVICE = "cpu" if args.small else "cuda"
    fx = Path(args.fixtures)
    benches = {"mmmu": load_benchmark("mmmu", data_dir=str(fx / "mmmu")),
               "scienceqa": load_benchmark("scienceqa", data_dir=str(fx / "scienceqa"))}
    words = [w for b in benches.values() for q in b for w in re.findall(r"\w+|[^\w\s]", b.prompt(q))]
    if args.only:
        benches = {args.only: benches[args.only]}
    results = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "parts": {}}
    import transformers
    results["transformers"] = transformers.__version__
    work = Path(args.workdir or tempfile.mkdtemp())
    model_dir = Path(args.model_dir) if args.model_dir else work / "llava7b"
    if not args.model_dir:
        t = time.time()
        save_llava_7b(model_dir, words, args.small)
        results["build_and_save_s"] = round(time.time() - t, 1)
    if args.save_only:
        return
    t = time.time()
    model = load_model(f"hf:{model_dir}", device=DEVICE, dtype=torch.bfloat16)
    sync()
    results["load_s"] = round(time.time() - t, 1)
    results["attn_implementation"] = model.attn_implementation
    results["dtype"] = str(model.dtype)
    results["weights_gb"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30, 2)
    print({k: v for k, v in results.items() if k != "parts"}, flush=True)
    conds = parse_conditions("real,blank,noise,wrong,blur,shuffle")
    cfg = OptimizeConfig(steps=args.steps, batch_size=4, early_stop=0)
    for name, bench in benches.items():
        run = RunDir.open(work / f"run-{name}", {"bench": name})
        part(f"{name}/conditions", lambda: evaluate_conditions(model, bench, conds, run=run, quiet=True,
                                                                batch_size=8), len(bench) * len(conds), results)
        part(f"{name}/conditions-generate", lambda: evaluate_conditions(
            model, bench, parse_conditions("real"), run=RunDir.open(work / f"gen-{name}", {"b": name}), quiet=True,
            scoring="generate", batch_size=8), len(bench), results)
        for spec in (OptimizeSpec("features"), OptimizeSpec("pixels")):
            part(f"{name}/{spec.source}-{args.steps}steps",
                 lambda: [r for r in run_optimization(model, bench, spec, cfg, run) if r["source"] == spec.source],
                 len(bench), results)
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    if args.no_qwen:
        Path(args.out).write_text(json.dumps(results, indent=2))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_hf_qwen import save_tiny_qwen  # the tiny test models, now in bf16 on CUDA

    for kind in ("qwen2_vl", "qwen2_5_vl"):
        d = save_tiny_qwen(work / kind, kind)
        qwen = load_model(f"hf:{d}", device=DEVICE, dtype=torch.bfloat16, image_size=112)
        bench = benches["scienceqa"]
        run = RunDir.open(work / f"run-{kind}", {"kind": kind})
        part(f"tiny-{kind}/conditions", lambda: evaluate_conditions(qwen, bench, conds, run=run, quiet=True),
             len(bench) * len(conds), results)
        part(f"tiny-{kind}/features-question-5steps", lambda: run_optimization(
            qwen, bench, OptimizeSpec("features"), OptimizeConfig(steps=5, batch_size=4), run), len(bench), results)
        results["parts"][f"tiny-{kind}/conditions"]["dtype"] = str(qwen.dtype)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
