"""What a run records about the software it ran under, so that a resume under another one is noticed: library
versions (config.json `libraries`, known before the model loads) and how the model ran (`environment`: device,
dtype, attention kernel, image-processor backend)."""

from __future__ import annotations

import platform
from importlib import metadata

from ._version import __version__

# Libraries whose version can change a run's numbers. torchvision: transformers 5 switches an image processor to its
# torchvision backend when it is installed, and the pixel values differ slightly.
LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "pillow", "torchvision", "safetensors", "kornia",
             "diffusers", "captum", "scipy")


def library_versions() -> dict[str, str]:
    """Python, mirage and each of LIBRARIES: its installed version, or "absent"."""
    out = {"python": platform.python_version(), "mirage": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def library_changes(old: dict, new: dict) -> list[str]:
    """`name old -> new` for each library whose recorded version differs."""
    return [f"{k} {old.get(k, 'unrecorded')} -> {new.get(k, 'unrecorded')}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def image_processor_backend(model) -> dict[str, str]:
    """The class of the model's transformers image processor and its backend (pil or torchvision); {} when the
    model preprocesses images itself (demo, Cambrian)."""
    proc = getattr(model, "image_processor", None) or getattr(model, "processor", None)
    proc = getattr(proc, "image_processor", proc)
    if proc is None:
        return {}
    bases = {c.__name__ for c in type(proc).__mro__}
    backend = "torchvision" if "TorchvisionBackend" in bases else "pil" if "PilBackend" in bases else "unknown"
    return {"image_processor": type(proc).__name__, "image_processor_backend": backend}


def model_environment(model) -> dict:
    """How the model ran: device, dtype, attention kernel, device map and image-processor backend."""
    env = {"device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
           "attn_implementation": getattr(model, "attn_implementation", "sdpa"), **library_versions(),
           **image_processor_backend(model)}
    if getattr(model, "device_map", None):
        env["device_map"] = model.device_map
    if getattr(model, "image_aspect_ratio", None):  # LLaVA-1.5's preprocessing: pad (official) or crop
        env["image_aspect_ratio"] = model.image_aspect_ratio
    if getattr(model, "run_facts", None):  # e.g. the generic path's prompt format and fixed-size layout
        env.update(model.run_facts())
    return env
