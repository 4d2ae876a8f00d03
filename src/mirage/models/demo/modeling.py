"""The demo VLM: Cambrian-style four-encoder model on a transformers Llama LM, with the full VLM interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ...benchmarks.question import LETTERS
from ..vlm import EncoderSpec, Visual, VLM
from .aggregator import SpatialAggregator
from .config import DemoConfig
from .encoders import VisionEncoder, align_keys
from .tokenizer import IMAGE_TOKEN, chat_prompt

WEIGHTS = "model.safetensors"


def build_sequences(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], targets: Sequence[str] | None,
                    num_image_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """Chat-formatted, left-padded token ids with `<image>` repeated `num_image_tokens` times; mask; labels.

    With `num_image_tokens == 0` the prompts carry no image at all (text-only training).
    """
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    with_image = num_image_tokens > 0
    ids = tokenizer([chat_prompt(tokenizer, p, with_image) for p in prompts], add_special_tokens=False).input_ids
    tgt = tokenizer(list(targets), add_special_tokens=False).input_ids if targets is not None else [[]] * len(ids)
    seqs, labels = [], []
    for prompt, t in zip(ids, tgt):
        if with_image:
            p = prompt.index(image_id)
            prompt = prompt[:p] + [image_id] * num_image_tokens + prompt[p + 1 :]
        s = prompt + t
        seqs.append(s)
        labels.append([-100] * (len(s) - len(t)) + t)
    n = max(map(len, seqs))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (n - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
    labels_t = torch.tensor([[-100] * (n - len(lab)) + lab for lab in labels])
    return input_ids, mask, labels_t


class DemoVLM(VLM):
    """Four vision encoders -> SVA-style aggregator -> image tokens spliced into a LlamaForCausalLM."""

    def __init__(self, config: DemoConfig, tokenizer: PreTrainedTokenizerFast):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        self.vision = nn.ModuleDict({n: VisionEncoder(e["arch"], e["config"]) for n, e in config.encoders.items()})
        self.encoders = self._specs()
        self.aggregator = SpatialAggregator(
            {s.name: s.dim for s in self.encoders}, {s.name: s.num_tokens for s in self.encoders},
            grid=config.grid, dim=config.sva_dim, out_dim=config.lm["hidden_size"], layers=config.sva_layers,
            heads=config.sva_heads)
        self.lm = LlamaForCausalLM(LlamaConfig(
            vocab_size=config.vocab_size, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, **config.lm))
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self._letter_ids = tokenizer.convert_tokens_to_ids(list(LETTERS[:10]))
        self.num_image_tokens = config.grid**2

    def _specs(self) -> list[EncoderSpec]:
        specs = []
        with torch.no_grad():
            for name, e in self.config.encoders.items():
                s = e["image_size"]
                t, d = self.vision[name](torch.zeros(1, 3, s, s)).shape[1:]
                specs.append(EncoderSpec(name, s, tuple(e["mean"]), tuple(e["std"]), t, d))
        return specs

    # --- visual path ---------------------------------------------------------------------------
    def process_images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        out = {}
        for spec in self.encoders:
            arrs = [np.asarray(im.convert("RGB").resize((spec.image_size,) * 2, Image.BICUBIC)) for im in images]
            x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
            out[spec.name] = self._normalize(x, spec).to(self.device)
        return out

    def preprocess(self, pixels: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        out = {}
        for spec in self.encoders:
            if names is not None and spec.name not in names:
                continue
            x = pixels
            if x.shape[-2:] != (spec.image_size, spec.image_size):
                # antialiased bicubic matches PIL's resize; the clamp matches its uint8 output range
                x = F.interpolate(x, size=(spec.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
                x = x.clamp(0, 1)
            out[spec.name] = self._normalize(x, spec)
        return out

    @staticmethod
    def _normalize(x: Tensor, spec: EncoderSpec) -> Tensor:
        mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        # only the encoders given inputs run: single-encoder experiments and offloaded encoders skip the rest
        return {name: self.vision[name](x.to(self.dtype)) for name, x in processed.items()}

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device  # encoders may be offloaded to the CPU

    @property
    def dtype(self) -> torch.dtype:
        return next(self.lm.parameters()).dtype

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        return self.aggregator({n: f.to(self.dtype) for n, f in features.items()})

    # --- language side -----------------------------------------------------------------------
    def sequences(self, prompts: Sequence[str], targets: Sequence[str] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Left-padded ids with the image placeholder expanded, attention mask, labels (-100 off target)."""
        out = build_sequences(self.tokenizer, prompts, targets, self.num_image_tokens)
        return tuple(t.to(self.device) for t in out)

    def lm_logits(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None) -> Tensor:
        """LM logits [B, L, V] with the image tokens [B, N, D] placed at the placeholder positions."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        if image_tokens is not None:
            slots = (input_ids == self.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, image_tokens.to(embeds.dtype))
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).logits

    def letter_ids(self, n: int) -> list[int]:
        if n > len(self._letter_ids):
            raise ValueError(f"the demo tokenizer has letters A-{LETTERS[len(self._letter_ids) - 1]}; {n} choices asked")
        return self._letter_ids[:n]

    def next_token_logits(self, prompts: Sequence[str], visual: Visual) -> Tensor:
        input_ids, mask, _ = self.sequences(prompts)
        return self.lm_logits(input_ids, mask, self.to_tokens(visual))[:, -1].float()  # left padding: last is last

    def answer_loss(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str]) -> Tensor:
        input_ids, mask, labels = self.sequences(prompts, targets)
        logits = self.lm_logits(input_ids, mask, self.to_tokens(visual))[:, :-1].float()
        labels = labels[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")  # [B, L-1]
        return nll.sum(1) / (labels != -100).sum(1).clamp(min=1)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], visual: Visual, max_new_tokens: int = 8) -> list[str]:
        input_ids, mask, _ = self.sequences(prompts)
        tokens = self.to_tokens(visual)
        eos = self.tokenizer.eos_token_id
        out = torch.empty(len(prompts), 0, dtype=torch.long, device=input_ids.device)
        for _ in range(max_new_tokens):
            nxt = self.lm_logits(input_ids, mask, tokens)[:, -1].argmax(-1, keepdim=True)  # [B, 1]
            out = torch.cat([out, nxt], 1)
            input_ids, mask = torch.cat([input_ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
            if (out == eos).any(1).all():
                break
        texts = []
        for row in out.tolist():
            row = row[: row.index(eos)] if eos in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    # --- persistence -------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """config.json + model.safetensors (+ tokenizer files), like a transformers model directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in self.state_dict().items()
                 if not (k == "lm.lm_head.weight" and self.lm.config.tie_word_embeddings)}
        save_file(state, str(path / WEIGHTS), metadata={"format": "pt"})
        self.tokenizer.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> "DemoVLM":
        """Load a directory written by `save_pretrained`; fails loudly on missing or unexpected weights."""
        path = Path(path)
        for f in ("config.json", WEIGHTS, "tokenizer.json"):
            if not (path / f).exists():
                raise FileNotFoundError(f"demo model directory {str(path)!r} has no {f}")
        config = DemoConfig.from_dict(json.loads((path / "config.json").read_text()))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        model = cls(config, tokenizer)
        state = align_keys(load_file(str(path / WEIGHTS)), set(model.state_dict()))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k == "lm.lm_head.weight" and model.lm.config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"{path / WEIGHTS}: missing keys {missing}, unexpected keys {unexpected}")
        return model.to(device=device, dtype=dtype).eval()
