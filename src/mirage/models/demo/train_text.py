"""The demo's base LM (`S_t`'s model for the demo): its Llama architecture and tokenizer trained on the demo recipe's
text phase alone (letter drills and the text-prior facts, no image in any prompt), i.e. the demo's LM as it was
before vision joined. The demo itself was trained jointly and kept no checkpoint of that stage, so this retrains it.
Written as a plain transformers causal-LM directory (fp16), loadable as `hf:DIR` by `--text-model`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .config import DemoConfig
from .train import TrainBatches, TrainConfig, lr_factor

TEXT_LM_DIR = Path(__file__).parent / "weights" / "text-lm"


def text_lm_config(config: DemoConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The demo VLM's LM configuration (as `DemoVLM` builds it) for `tokenizer`."""
    return LlamaConfig(vocab_size=config.vocab_size, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **config.lm)


def train_text_lm(out: str | Path, demo_dir: str | Path, steps: int = 800, batch_size: int = 64, lr: float = 5e-4,
                  seed: int = 0, device: str | None = None, on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train the text-only LM with the demo's tokenizer and LM shape (read from `demo_dir`) on the text phase of
    `mirage train-demo` (drills, text-prior facts) for `steps`; writes a transformers directory to `out`."""
    out, demo_dir = Path(out), Path(demo_dir)
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    config = DemoConfig.from_dict(json.loads((demo_dir / "config.json").read_text()))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(demo_dir))
    lm = LlamaForCausalLM(text_lm_config(config, tokenizer)).to(device).train()
    # every step in the text phase: text_steps = steps, so no step shows an image
    cfg = TrainConfig(steps=steps, text_steps=steps, vision_steps=0, batch_size=batch_size, lr=lr, seed=seed,
                      workers=0, warmup=min(200, max(1, steps // 4)), text_only=True)
    decay = [p for p in lm.parameters() if p.dim() >= 2]
    no_decay = [p for p in lm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    t0 = time.time()
    for step, _, (ids, mask, labels) in TrainBatches(tokenizer, cfg, 0, num_image_tokens=0):
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step, cfg)
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions (as the VLM's LM)
        logits = lm(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        if on_step:
            on_step(step + 1, loss.item())
    out.mkdir(parents=True, exist_ok=True)
    lm.eval().to(torch.float16).save_pretrained(out)  # fp16 storage, as the demo's weights; loaded in fp32
    tokenizer.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(
        {"recipe": "mirage train-demo's text phase only (drills + text-prior facts, no image)", "steps": steps,
         "batch_size": batch_size, "lr": lr, "seed": seed, "device": str(device),
         "seconds": round(time.time() - t0, 1)}, indent=2))
    return out

