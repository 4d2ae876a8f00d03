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


def parse_device(device: str | torch.device | None) -> torch.device:
    """`--device`: a device torch knows and this machine has (None: cuda if available, else cpu); refused in one
    line otherwise (`gpu`, `cuda` on a CPU-only torch, `cuda:3` with two GPUs)."""
    from ..errors import UsageError

    if device is None:
        return default_device()
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {device!r}: not a device torch knows (cpu, cuda, cuda:1, mps ...)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "torch sees no GPU (CUDA_VISIBLE_DEVICES, the driver)")
            raise UsageError(f"--device {device}: {why} (torch {torch.__version__}); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: torch sees {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: this machine or torch has no MPS; use --device cpu")
    return d


@MODELS.register("demo")
def _demo(path: str | None, device: torch.device, dtype: torch.dtype | None, **options) -> VLM:
    from .demo.modeling import DemoVLM

    refuse_options("demo", options)
    return DemoVLM.from_pretrained(path or DEMO_WEIGHTS, device=device, dtype=dtype or torch.float32)


@MODELS.register("hf")
def _hf(path: str | None, device: torch.device, dtype: torch.dtype | None, **options) -> VLM:
    if not path:
        raise ValueError("model 'hf' needs a hub id or a directory: hf:llava-hf/llava-1.5-7b-hf or hf:DIR")
    from .hf import load_hf

    return load_hf(path, device, dtype, **options)


@MODELS.register("cambrian")
def _cambrian(path: str | None, device: torch.device, dtype: torch.dtype | None, **options) -> VLM:
    if not path:
        raise ValueError("model 'cambrian' needs a hub id or a directory: cambrian:nyu-visionx/cambrian-8b or "
                         "cambrian:DIR")
    from .cambrian import load_cambrian

    refuse_options("cambrian", options)
    return load_cambrian(path, device, dtype)


def refuse_options(backend: str, options: dict) -> None:
    """Model options (`device_map`, `image_size` ...) a backend has no use for are refused, naming them."""
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ValueError(f"model {backend!r} takes no option {', '.join(given)}")


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """`--dtype`: float32/fp32, bfloat16/bf16, float16/fp16 (None: the backend's default)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"--dtype: {did_you_mean('dtype', name, list(DTYPES))}")
    return DTYPES[name]


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def own_model(module: str, rest: str):
    """`--model module:Class[:PATH]`: a `VLM` subclass of one's own, loaded by its classmethod
    `load(path, device, dtype, **options)` (the README's "Your own model")."""
    import importlib

    from ..errors import MirageError

    cls_name = rest.partition(":")[0]
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except ModuleNotFoundError as e:
        raise MirageError(f"--model {module}:{rest}: no module {e.name!r} (is it on PYTHONPATH?)") from None
    except AttributeError:
        raise MirageError(f"--model {module}:{rest}: module {module!r} has no {cls_name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, VLM) and hasattr(cls, "load")):
        raise MirageError(f"--model {module}:{cls_name}: not a mirage.VLM subclass with a classmethod "
                          "load(path, device, dtype, **options)")
    return cls.load


def load_model(spec: str = "demo", device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
               **options) -> VLM:
    """Load a model by spec: `demo` (the bundled weights), `demo:DIR` (from `mirage train-demo`), `hf:ID_OR_DIR`
    (a transformers VLM; bf16 on GPU, fp32 on CPU unless `dtype`), or `module:Class[:PATH]` (one's own `VLM`
    subclass, by its classmethod `load(path, device, dtype, **options)`). `options` go to the backend (hf: `device_map`,
    `image_size` for the Qwen2-VL family's fixed-resolution path); one it does not take is refused."""
    name, _, path = spec.partition(":")
    if name not in MODELS and "." not in name and not _importable(name):
        raise UnknownNameError(did_you_mean("model", spec, MODELS.names()) + " (or module:Class[:PATH] of your own)")
    device = parse_device(device)
    loader = MODELS.get(name) if name in MODELS else own_model(name, path)
    if name not in MODELS:
        path = path.partition(":")[2]
    model = loader(path or None, device, parse_dtype(dtype), **options)
    # mirage optimizes inputs, never the model: no weight gradients (on a 7B model they cost ~13 GB and a third
    # of each backward pass)
    model.requires_grad_(False)
    model.name_or_path = spec
    return model


__all__ = ["MODELS", "STAGES", "VLM", "EncoderSpec", "Visual", "load_model"]
