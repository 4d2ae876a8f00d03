"""Models: a registry of backends, each loading a `VLM`."""

from __future__ import annotations

from pathlib import Path

import torch

from ..registry import Registry, UnknownNameError, did_you_mean
from .vlm import STAGES, VLM, EncoderSpec, Visual

MODELS: Registry = Registry("model")
DEMO_WEIGHTS = Path(__file__).parent / "demo" / "weights"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@MODELS.register("demo")
def _demo(path: str | None, device: torch.device, dtype: torch.dtype) -> VLM:
    from .demo.modeling import DemoVLM

    return DemoVLM.from_pretrained(path or DEMO_WEIGHTS, device=device, dtype=dtype)


@MODELS.register("hf")
def _hf(path: str | None, device: torch.device, dtype: torch.dtype | None) -> VLM:
    if not path:
        raise ValueError("model 'hf' needs a hub id or a directory: hf:llava-hf/llava-1.5-7b-hf or hf:DIR")
    from .hf import load_hf

    return load_hf(path, device, dtype)


def load_model(spec: str = "demo", device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> VLM:
    """Load a model by spec: `demo` (the bundled weights), `demo:DIR` (from `mirage train-demo`), or `hf:ID_OR_DIR`
    (a transformers VLM; bf16 on GPU, fp32 on CPU unless `dtype`)."""
    name, _, path = spec.partition(":")
    if name not in MODELS:
        raise UnknownNameError(did_you_mean("model", spec, MODELS.names()))
    device = torch.device(device) if device is not None else default_device()
    model = MODELS.get(name)(path or None, device, dtype if name == "hf" else dtype or torch.float32)
    model.name_or_path = spec
    return model


__all__ = ["MODELS", "STAGES", "VLM", "EncoderSpec", "Visual", "load_model"]
