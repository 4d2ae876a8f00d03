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

from ...benchmarks.question import letter_prompt
from ..spliced import SplicedVLM, cached_forward
from ..spliced import build_sequences as spliced_sequences
from ..vlm import EncoderSpec, on_device
from .aggregator import SpatialAggregator
from .config import DemoConfig
from .encoders import VisionEncoder, align_keys
from .tokenizer import IMAGE_TOKEN, chat_prompt

WEIGHTS = "model.safetensors"


def build_sequences(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str], targets: Sequence[str] | None,
                    num_image_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """Demo chat prompts, tokenized and left-padded (see `spliced.build_sequences`); no image when n is 0."""
    texts = [chat_prompt(tokenizer, p, num_image_tokens > 0) for p in prompts]
    return spliced_sequences(tokenizer, texts, targets, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), num_image_tokens)


class DemoVLM(SplicedVLM):
    """Four vision encoders -> SVA-style aggregator -> image tokens spliced into a LlamaForCausalLM."""

    prompt_style = staticmethod(letter_prompt)  # ShapesQA's prompt, the only one it was trained on
    causal_scoring = True  # a Llama LM: the causal mask is its only attention rule
    cached_generation = True  # `generate` keeps the LM's key/value cache (captions by `caption:demo`)
    soft_prompts = True  # the text-only turn takes free vectors (the soft-prompt control)

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
        mean = on_device(spec.mean, x.device, x.dtype).view(1, 3, 1, 1)
        std = on_device(spec.std, x.device, x.dtype).view(1, 3, 1, 1)
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
    def chat_text(self, prompt: str, image: bool = True) -> str:
        return chat_prompt(self.tokenizer, prompt, image)

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.lm.get_input_embeddings()(input_ids)

    def lm_hidden(self, embeds: Tensor, mask: Tensor, position_ids: Tensor) -> Tensor:
        return self.lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).last_hidden_state

    def lm_cached(self, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache):
        return cached_forward(self.lm.model, embeds, mask, position_ids, cache)

    def lm_head_logits(self, hidden: Tensor) -> Tensor:
        return self.lm.lm_head(hidden)

    def unknown_words(self, prompt: str) -> list[str]:
        """The prompt's words outside the word-level vocabulary (each becomes `<unk>`)."""
        vocab = self.tokenizer.get_vocab()
        words = self.tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(prompt)
        return [w for w, _ in words if w not in vocab]

    def checkpointed_parts(self) -> list[nn.Module]:
        return [self.lm, *self.vision.values()]

    def separate_encoders(self) -> dict[str, nn.Module]:
        return dict(self.vision)

    def letter_ids(self, n: int) -> list[int]:
        if n > 10:
            raise ValueError(f"the demo tokenizer has letters A-J; {n} choices asked")
        return super().letter_ids(n)

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
