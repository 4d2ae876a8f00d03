"""Loading transformers VLMs (`hf:<hub id or directory>`): dtype, device map and attention by the hardware."""

from __future__ import annotations

import importlib.util

import torch

from ..registry import did_you_mean
from .vlm import VLM

SUPPORTED = {"llava": "LLaVA-1.5 (LlavaForConditionalGeneration)"}


def attention_implementation(device: torch.device) -> str:
    """flash-attention 2 where installed and the GPU's compute capability is >= 8.0, else sdpa (the seed's Pascal
    GPUs, compute 6.1, could not use flash attention)."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0) \
            and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_hf(path: str, device: torch.device, dtype: torch.dtype | None = None, device_map: str | None = None) -> VLM:
    """Load a transformers VLM from a hub id or directory; bf16 on GPU and fp32 on CPU unless `dtype` is given."""
    from transformers import AutoConfig, AutoProcessor

    config = AutoConfig.from_pretrained(path)
    if config.model_type not in SUPPORTED:
        raise ValueError(f"hf:{path}: model type {config.model_type!r} is not supported yet "
                         f"({did_you_mean('model type', config.model_type, list(SUPPORTED))}); it needs a backend "
                         "that maps its vision tower, connector and LM onto mirage's stages")
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    if device_map is None and device.type == "cuda" and torch.cuda.device_count() > 1:
        device_map = "auto"  # split the model over the visible GPUs, as the seed did
    attn = attention_implementation(device)
    kwargs = dict(dtype=dtype, attn_implementation=attn)
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(path, device_map=device_map, **kwargs)
    if device_map is None:
        model = model.to(device)
    from .hf_llava import HFLlava

    vlm = HFLlava(model.eval(), AutoProcessor.from_pretrained(path))
    vlm.attn_implementation = attn
    return vlm
