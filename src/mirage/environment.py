"""What a run records about the software it ran under, so that a resume under another one is noticed: library
versions (config.json `libraries`, known before the model loads) and how the model ran (`environment`: device,
dtype, attention kernel, image-processor backend)."""

from __future__ import annotations

import importlib.util
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

from ._version import __version__

# Libraries whose version can change a run's numbers. torchvision: transformers 5 switches an image processor to its
# torchvision backend when it is installed, and the pixel values differ slightly.
LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "pillow", "torchvision", "safetensors", "kornia",
             "diffusers", "captum", "scipy")


# Why an installed torchvision was hidden (hide_broken_torchvision), None when it was not.
HIDDEN_TORCHVISION: str | None = None


def hide_broken_torchvision() -> str | None:
    """Hide an installed torchvision that cannot load beside this torch, so that neither transformers (which picks
    its torchvision image backends whenever torchvision can be found) nor lmms-eval's task code imports it: the
    package index's Linux wheel is a CUDA build (`0.28.0+cu130`), and beside the CPU torch (`2.13.0+cpu`) every
    import of it fails (`operator torchvision::nms does not exist`); a torchvision built for another torch release
    fails alike. Read from the two packages' files without importing either (mirage's import stays free of torch);
    `import torchvision` then raises ImportError and `find_spec` finds nothing. Returns why, or None."""
    global HIDDEN_TORCHVISION
    if "torchvision" in sys.modules:
        return HIDDEN_TORCHVISION
    try:
        tv, torch = importlib.util.find_spec("torchvision"), importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if tv is None or torch is None or not tv.submodule_search_locations or not torch.submodule_search_locations:
        return None
    tv_version = _version_line(Path(tv.submodule_search_locations[0]) / "version.py", "__version__") or ""
    torch_cuda = _version_line(Path(torch.submodule_search_locations[0]) / "version.py", "cuda")
    why = None
    if "+cu" in tv_version and torch_cuda is None:
        why = f"torchvision {tv_version} is a CUDA build and this torch is a CPU build"
    else:
        try:
            pin = next((m.group(1) for r in metadata.requires("torchvision") or []
                        if (m := re.match(r"torch\s*\(?==\s*([^);\s]+)", r))), None)
            have = metadata.version("torch")
        except metadata.PackageNotFoundError:
            pin = have = None
        if pin and pin.split("+")[0] != have.split("+")[0]:
            why = f"torchvision was built for torch {pin}, this torch is {have}"
    if why:
        sys.modules["torchvision"] = None
        HIDDEN_TORCHVISION = why
    return why


def _version_line(path: Path, name: str) -> str | None:
    """A `name = 'value'` (or `name: T = 'value'`) line of a package's version.py; None when absent or None."""
    try:
        m = re.search(rf"^{name}\s*(?::[^=]*)?=\s*['\"]([^'\"]*)['\"]", path.read_text(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def library_versions() -> dict[str, str]:
    """Python, mirage and each of LIBRARIES: its installed version, or "absent" (a hidden torchvision: its
    version and that it was hidden)."""
    out = {"python": platform.python_version(), "mirage": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    if HIDDEN_TORCHVISION and out["torchvision"] != "absent":
        out["torchvision"] += " (hidden: unusable beside this torch)"
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
