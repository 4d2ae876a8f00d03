"""`CambrianVLM`: Cambrian-1 (4 vision towers -> SVA -> Llama-3 with vision sampler layers) on mirage's stages.

Stages: `pixels` [B, 3, H, W] -> `processed` {tower: [B, 3, s, s]} (pad to square, resize, normalise, per tower)
-> `features` {tower: [B, T, D]} (the checkpoint's shapes: 576 x 1152, 576 x 1024, 576 x 1536, 9216 x 5760 for the
8B) -> `tokens` [B, 576, D_lm] (the connector's 24 x 24 grid; the LM input adds one `image_newline` per row, 600
slots). `processed` and `features` may carry each image's original (width, height) under IMAGE_SIZE; the model then
masks keys under the padding and drops padding-only token rows/columns, as official inference does. Dropping is done
with the attention mask (positions then skip them, exactly as if removed; the official training code does the same).

The 8B is not `connector_only`: after LM layers 0, 3, ..., 27 a sampler layer re-reads the towers' windows into the
hidden states of the image tokens. Those keys come from `connect`, attached to the tokens it returns
(`tokens.cambrian`); a `tokens`-stage input given directly (an optimized token tensor) carries none, and then the
sampler layers are skipped (a warning says so once): the LM sees exactly the given tokens.
Where the official code reads the image at the fixed index `image_position` (91), this locates it from the
placeholders, which agrees whenever the prompt follows the template (checked once, with a warning otherwise).

Verified against cambrian-mllm/cambrian (commit 539ffc3): `cambrian/model/language_model/cambrian_llama.py` (the
sampler layers after LM layers start + k * stride, applied to the hidden states at image_position on the image
tokens minus the newlines, in place, during the prefill only), `cambrian/model/cambrian_arch.py`
(prepare_inputs_labels_for_multimodal: SVA, unpad_image, newline per row, splicing), `cambrian/model/builder.py`
(towers loaded from their own weights, fp16), `cambrian/train/train_fsdp.py` (prepare_image_info: training keeps all
600 slots and masks the padding ones, positions counted over the kept ones), `inference.py` (conv_mode llama_3).
`generate` keeps the LM's key/value cache (the samplers in the prefill only, as the official code runs them).
Not implemented: multi-GPU `device_map` splitting, LLaVA-style projector variants, anyres, and the 3B/13B/34B
models' LMs and templates.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ..spliced import SplicedVLM, cache_argument, cached_forward
from ..square import normalize, pad_square, process_pil, resize_like_pil
from ..vlm import NONE, EncoderSpec, Visual, on_device
from .checkpoint import load_official, load_tower, read_config, save_official, save_towers
from .config import CambrianConfig
from .processing import IMAGE_SIZE, image_cells
from .sva import SamplerInputs, SVAConnector, TokenSampler
from .template import ensure_image_token, llama_3_answered, llama_3_prompt
from .towers import VisionTower


@dataclass
class ImageContext:
    """What image tokens bring beyond their values: original sizes [B, 2] (None: square) and the sampler inputs."""

    sizes: Tensor | None = None
    sampler: SamplerInputs | None = None


@dataclass
class DroppedSlots:
    """`prepare`'s layout where some image slots show only padding and are masked out: positions skip them, so the
    batch keeps its attention mask (letter scoring cannot right-align it and drop the mask)."""


@contextmanager
def building(device: torch.device | str, dtype: torch.dtype):
    """Create modules directly on `device` in `dtype` (an 8B model initialises in seconds on a GPU)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


class CambrianVLM(SplicedVLM):
    """Cambrian-1 with mirage's VLM interface; `vision` (towers by name) and `lm` take the memory switches."""

    # Llama-3 attends by the causal mask alone unless padding-only image slots are dropped (`DroppedSlots`): letter
    # scoring right-aligns such a batch and passes no mask, so sdpa takes its causal (flash) kernel, as for LLaVA
    causal_scoring = True
    # `generate` keeps the LM's cache: the sampler layers run in the prefill only (as the official code does; a
    # generated token is text), so each generated token is a plain cached step of the LM
    cached_generation = True

    def __init__(self, config: CambrianConfig, tokenizer, towers: dict[str, VisionTower] | None = None):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        towers = towers or {}
        self.vision = nn.ModuleDict({t.name: towers[t.name] if t.name in towers else VisionTower(t)
                                     for t in config.towers})
        self.encoders = [EncoderSpec(t.name, t.image_size, t.mean, t.std, t.token_len, self.vision[t.name].dim)
                         for t in config.towers]
        lm_config = LlamaConfig(**config.lm)
        self.connector = SVAConnector(config, [s.dim for s in self.encoders], lm_config.hidden_size)
        self.lm = LlamaForCausalLM(lm_config)
        vh, n, side = config.vision_hidden_size, len(config.towers), config.side
        kv_sides = [math.isqrt(t.token_len) // side for t in config.towers]
        self.lm_samplers = nn.ModuleList(TokenSampler(lm_config.hidden_size, vh, [vh] * n, kv_sides, vh, 1)
                                         for _ in config.sampler_layer_indices())
        self._sampler_after = {i: k for k, i in enumerate(config.sampler_layer_indices())}
        self.image_token_id = ensure_image_token(tokenizer)
        self.num_image_tokens = side * (side + 1)
        self._warned: set[str] = set()

    @classmethod
    def random(cls, config: CambrianConfig, tokenizer, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> "CambrianVLM":
        """Random weights of `config`'s shapes, built on `device` in `dtype`, frozen, in eval mode."""
        with building(device, dtype):
            model = cls(config, tokenizer)
        return model.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.lm.lm_head.weight.device  # towers may be offloaded to the CPU

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.lm_head.weight.dtype

    # --- visual path -------------------------------------------------------------------------------------------
    def checkpointed_parts(self) -> list[nn.Module]:
        return [self.lm, *self.vision.values()]

    def separate_encoders(self) -> dict[str, nn.Module]:
        return dict(self.vision)

    def process_images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        out = {t.name: process_pil(images, t.image_size, t.pad, t.mean, t.std).to(self.device)
               for t in self.config.towers}
        out[IMAGE_SIZE] = torch.tensor([im.size for im in images], dtype=torch.float32, device=self.device)
        return out

    def preprocess(self, pixels: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        out = {}
        for t in self.config.towers:
            if names is None or t.name in names:
                out[t.name] = normalize(resize_like_pil(pad_square(pixels, t.pad), t.image_size), t.mean, t.std)
        h, w = pixels.shape[-2:]
        if h != w:
            out[IMAGE_SIZE] = on_device([[w, h]], pixels.device, torch.float32).expand(len(pixels), 2)
        return out

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        # only the towers given inputs run; an offloaded tower runs where it lives and its features come back
        out = {}
        for name, x in processed.items():
            if name == IMAGE_SIZE:
                out[name] = x
                continue
            p = next(self.vision[name].parameters())
            out[name] = self.vision[name](x.to(p.device, p.dtype)).to(self.device)
        return out

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        missing = [s.name for s in self.encoders if s.name not in features]
        if missing:
            raise ValueError(f"Cambrian's connector needs the features of every tower; missing {missing}")
        feats = [features[s.name].to(self.device, self.dtype) for s in self.encoders]
        sizes = features.get(IMAGE_SIZE)
        tokens, inputs = self.connector(feats, sizes)
        tokens.cambrian = ImageContext(sizes, inputs if len(self.lm_samplers) else None)
        return tokens

    # --- language side -----------------------------------------------------------------------------------------
    def chat_text(self, prompt: str, image: bool = True) -> str:
        return llama_3_prompt(prompt, image)

    def answered_text(self, prompt: str, answer: str) -> str:
        return llama_3_answered(prompt, answer)

    def prepare(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str] | None = None):
        if visual.stage == NONE:  # text only: no image position to check, no slots to mask
            return super().prepare(prompts, visual, targets)
        input_ids, mask, labels, tokens, layout = super().prepare(prompts, visual, targets)
        self._check_position(input_ids, mask)
        ctx = getattr(tokens, "cambrian", None)
        if ctx is not None and ctx.sizes is not None:  # drop the rows/columns that show only padding (unpad_image)
            side = self.config.side
            keep = torch.stack([image_cells(side, w, h) for w, h in ctx.sizes.tolist()])  # [B, side, side]
            keep = torch.cat([keep, keep.any(2, keepdim=True)], 2)  # a kept row keeps its newline: [B, side, side+1]
            if not keep.all():
                mask = mask.clone()
                mask[input_ids == self.image_token_id] = keep.flatten().to(mask.device, mask.dtype)
                layout = DroppedSlots()
        return input_ids, mask, labels, tokens, layout

    def _check_position(self, input_ids: Tensor, mask: Tensor) -> None:
        if "position" in self._warned:
            return
        self._warned.add("position")
        at = int((input_ids[0] == self.image_token_id).nonzero()[0, 0] - (mask[0] == 0).sum())
        if at != self.config.image_position:
            warnings.warn(f"the image starts at token {at}, the checkpoint's image_position is "
                          f"{self.config.image_position}: the prompt does not follow the model's template")

    def embed(self, input_ids: Tensor) -> Tensor:
        # the placeholder's id may lie past the vocabulary; its rows are replaced by image tokens anyway
        return self.lm.get_input_embeddings()(input_ids.masked_fill(input_ids == self.image_token_id, 0))

    def lm_hidden(self, embeds: Tensor, mask: Tensor, position_ids: Tensor) -> Tensor:
        return self.lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).last_hidden_state

    def lm_head_logits(self, hidden: Tensor) -> Tensor:
        return self.lm.lm_head(hidden)

    def _hidden(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None) -> Tensor:
        """Embeddings with the image tokens (and a newline per grid row) at the placeholders; the LM, with the
        sampler layers re-reading the towers' windows where the tokens bring them. `prepare` has already masked
        the padding-only slots, so positions skip them."""
        embeds, position_ids, sampling = self._lm_inputs(input_ids, mask, image_tokens, layout)
        if sampling is None:
            return self.lm_hidden(embeds, mask, position_ids)
        return self.decoder(embeds, mask, position_ids, lambda i, h: self._sample_into(i, h, *sampling))

    def prefill(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None):
        embeds, position_ids, sampling = self._lm_inputs(input_ids, mask, image_tokens, layout)
        if sampling is None:
            hidden, cache = self.lm_cached(embeds, mask, position_ids, None)
        else:
            cache = new_cache(self.lm.config)
            hidden = self.decoder(embeds, mask, position_ids, lambda i, h: self._sample_into(i, h, *sampling), cache)
        return hidden, cache, position_ids[..., -1:]

    def lm_cached(self, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache):
        return cached_forward(self.lm.model, embeds, mask, position_ids, cache)

    def _lm_inputs(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout):
        """The LM's input embeddings, position ids, and what the sampler layers need ((image token positions [B, Q],
        SamplerInputs), or None where they are skipped)."""
        embeds = self.embed(input_ids)
        sampling = None
        if image_tokens is not None:
            b, n, d = image_tokens.shape
            side = self.config.side
            ctx = getattr(image_tokens, "cambrian", None) or ImageContext()
            newline = self.connector.image_newline.to(image_tokens.dtype).view(1, 1, 1, d).expand(b, side, 1, d)
            rows = torch.cat([image_tokens.view(b, side, side, d), newline], 2)  # [B, side, side + 1, D]
            slots = input_ids == self.image_token_id
            embeds = embeds.masked_scatter(slots[..., None], rows.flatten(1, 2).to(embeds.dtype))
            if len(self.lm_samplers):
                if ctx.sampler is None:
                    self._warn_once("samplers", "image tokens without encoder features: the LM's vision sampler "
                                                "layers are skipped (pass features or pixels for the full model)")
                else:
                    # each row's slot positions in order (every row has side * (side + 1)): a stable sort of the
                    # slot flags, not `nonzero`, whose output size the host would have to wait for
                    at = torch.argsort((~slots).to(torch.uint8), dim=1, stable=True)[:, : side * (side + 1)]
                    grid = at.view(b, side, side + 1)[:, :, :side].reshape(b, side * side)
                    sampling = (grid, ctx.sampler)
        return embeds, self.positions(input_ids, mask, layout), sampling

    def decoder(self, embeds: Tensor, mask: Tensor, position_ids: Tensor, after_layer=None, cache=None) -> Tensor:
        """The LM's decoder layer by layer (final norm applied); `after_layer(i, hidden)` may rewrite the hidden
        states after layer i; each layer's keys and values go into `cache` where given (an empty one: a prefill).
        With no callback this equals `lm_hidden`."""
        lm = self.lm.model
        causal = causal_mask(lm.config, embeds, mask, position_ids, cache)
        rope = lm.rotary_emb(embeds, position_ids)
        kept = {cache_argument(lm.layers[0].forward): cache, "use_cache": True} if cache is not None else {}
        h = embeds
        for i, layer in enumerate(lm.layers[: lm.config.num_hidden_layers]):
            h = layer(h, attention_mask=causal, position_ids=position_ids, position_embeddings=rope, **kept)
            h = h[0] if isinstance(h, tuple) else h
            if after_layer is not None:
                h = after_layer(i, h)
        return lm.norm(h)

    def _sample_into(self, i: int, hidden: Tensor, grid: Tensor, inputs: SamplerInputs) -> Tensor:
        """After LM layer i: the image tokens' hidden states [B, Q, D] (at positions `grid`) re-read the windows."""
        k = self._sampler_after.get(i)
        if k is None:
            return hidden
        b, q = grid.shape
        d = hidden.shape[-1]
        index = grid[..., None].expand(b, q, d)
        queries = hidden.gather(1, index).reshape(b * q, 1, d)
        keys = [x.to(hidden.dtype) for x in inputs.keys]
        args = (queries, inputs.context.to(hidden.dtype), keys, inputs.masks)
        sampler = self.lm_samplers[k]
        checkpointed = getattr(self.lm.model.layers[0], "gradient_checkpointing", False)
        if checkpointed and self.training and torch.is_grad_enabled():  # like the LM layers it sits between
            out = checkpoint(sampler, *args, use_reentrant=False)
        else:
            out = sampler(*args)
        return hidden.scatter(1, index, out.view(b, q, d))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message)

    # --- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """An official-layout directory: config.json, model.safetensors (or shards + index) under the official key
        names, the tokenizer, and vision_towers/NAME/ (each tower as a transformers model directory)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config.to_official(), indent=2))
        save_official(self, path, dtype)
        save_towers(self, path)
        self.tokenizer.save_pretrained(path)


def causal_mask(config, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache=None):
    """transformers' causal mask for these embeddings, the first ones of `cache` where given (its signature moved
    between releases)."""
    from transformers.masking_utils import create_causal_mask

    params = inspect.signature(create_causal_mask).parameters
    # no mask: the positions are 0, 1, ... on every row, and transformers would read them on the host (a GPU sync)
    # only to find that no packed sequences restart in them
    kwargs = {"config": config, "attention_mask": mask, "position_ids": position_ids if mask is not None else None,
              ("inputs_embeds" if "inputs_embeds" in params else "input_embeds"): embeds}
    kwargs["cache" if "cache" in params else "past_key_values"] = cache  # 5.2x's name, kept beside the old one
    if "cache_position" in params:
        kwargs["cache_position"] = torch.arange(embeds.shape[1], device=embeds.device)
    return create_causal_mask(**kwargs)


def new_cache(config):
    """An empty transformers key/value cache for an LM of `config` (`DynamicCache`; its config argument is 4.5x+)."""
    from transformers import DynamicCache

    return DynamicCache(config=config) if "config" in inspect.signature(DynamicCache).parameters else DynamicCache()


def resolve(path: str) -> Path:
    """A local directory as is; anything else is a hub id, downloaded (config, tokenizer, safetensors)."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "tokenizer*"]))


def load_cambrian(path: str | Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype | None = None) -> CambrianVLM:
    """Load a Cambrian-1 directory or hub id (bf16 on GPU, fp32 on CPU unless `dtype`): the LM and connector from
    the official checkpoint (strict), the towers from DIR/vision_towers/ or their own hub weights. Frozen, eval."""
    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    root = resolve(str(path))
    config = read_config(root)
    tokenizer = AutoTokenizer.from_pretrained(str(root))
    towers = {t.name: load_tower(t, root, device, dtype) for t in config.towers}
    with building(device, dtype):
        model = CambrianVLM(config, tokenizer, towers)
    load_official(model, root)
    return model.eval().requires_grad_(False)
