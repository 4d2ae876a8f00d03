"""Cambrian-1 checkpoints: the official key names and shard layout, loaded strictly, and the vision towers' weights.

The official checkpoint (nyu-visionx/cambrian-8b: model-0000N-of-00007.safetensors + model.safetensors.index.json,
fp32) holds the LM and the connector under CambrianLlamaForCausalLM's names; the towers are not in it (the official
model keeps them in a plain list and loads each from its own hub weights). The mapping, ours <-> official:

    lm.model.{embed_tokens,layers,norm}.*   <->  model.{embed_tokens,layers,norm}.*
    lm.lm_head.*                            <->  lm_head.*
    lm_samplers.K.*                         <->  model.vision_sampler_layers.K.*   (the sampler layers inside the LM)
    connector.mm_projector_aux_I.*          <->  model.mm_projector_aux_I.*        (tower I -> vision_hidden_size)
    connector.vision_sampler_G.*            <->  model.vision_sampler_G.*          (query group G's SVA layers)
    connector.{vision_query,image_newline}  <->  model.{vision_query,image_newline}
    connector.mm_projector.*                <->  model.mm_projector.*
    vision.NAME.model.*                     ---  not in the checkpoint: DIR/vision_towers/NAME/ (a transformers model
                                                 directory, written by `save_pretrained`) or the tower's hub weights
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .config import CambrianConfig, TowerConfig
from .towers import ARCHS, VisionTower, load_open_clip_convnext

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOWERS_DIR = "vision_towers"
CONNECTOR = re.compile(r"(mm_projector_aux_\d+|mm_projector|vision_sampler_\d+|vision_query|image_newline)(\.|$)")


def official_key(ours: str) -> str | None:
    """Our parameter name -> the official checkpoint's (None: a tower weight, stored elsewhere)."""
    if ours.startswith("lm."):
        return ours[len("lm."):]
    if ours.startswith("lm_samplers."):
        return "model.vision_sampler_layers." + ours[len("lm_samplers."):]
    if ours.startswith("connector."):
        return "model." + ours[len("connector."):]
    return None


def our_key(official: str) -> str:
    """The official checkpoint's name -> ours (an unknown name maps under `lm.` and is then reported unexpected)."""
    if official.startswith("model.vision_sampler_layers."):
        return "lm_samplers." + official[len("model.vision_sampler_layers."):]
    if official.startswith("model.") and CONNECTOR.match(official[len("model."):]):
        return "connector." + official[len("model."):]
    return "lm." + official


def official_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's LM and connector weights under the official names (tied heads once)."""
    tied = model.lm.config.tie_word_embeddings
    return {official_key(k): v for k, v in model.state_dict().items()
            if official_key(k) is not None and not (tied and k == "lm.lm_head.weight")}


def save_official(model: nn.Module, path: Path, dtype: torch.dtype | None = None, shard_bytes: int = 5 * 2**30) -> None:
    """Write the official weights: one model.safetensors, or shards and an index past `shard_bytes`."""
    state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in official_state(model).items()}
    shards, size = [{}], 0
    for key, value in state.items():
        n = value.numel() * value.element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += n
    if len(shards) == 1:
        save_file(shards[0], str(path / WEIGHTS), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(v.numel() * v.element_size() for v in state.values())
    (path / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def weight_files(path: Path) -> list[Path]:
    """The checkpoint's safetensors files (sharded via the index, or one file)."""
    if (path / INDEX).exists():
        names = sorted(set(json.loads((path / INDEX).read_text())["weight_map"].values()))
        return [path / n for n in names]
    if (path / WEIGHTS).exists():
        return [path / WEIGHTS]
    raise FileNotFoundError(f"Cambrian directory {str(path)!r} has neither {INDEX} nor {WEIGHTS}")


@torch.no_grad()
def load_official(model: nn.Module, path: Path) -> None:
    """Copy an official checkpoint into the model's LM and connector. Every missing key, unexpected key and shape
    mismatch is listed (by its official name) before anything is copied."""
    targets = {official_key(k): v for k, v in model.state_dict().items() if official_key(k) is not None}
    if model.lm.config.tie_word_embeddings:
        targets.pop("lm_head.weight", None)
    found: dict[str, Path] = {}
    shapes: dict[str, tuple] = {}
    for f in weight_files(path):
        with safe_open(str(f), "pt", device="cpu") as st:
            for key in st.keys():
                found[key] = f
                shapes[key] = tuple(st.get_slice(key).get_shape())
    missing = sorted(set(targets) - set(found))
    unexpected = sorted(set(found) - set(targets))
    wrong = sorted(f"{k}: {shapes[k]} != {tuple(targets[k].shape)}" for k in set(found) & set(targets)
                   if shapes[k] != tuple(targets[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: the checkpoint does not fit its config.json: missing keys {missing}, "
                         f"unexpected keys {unexpected}" + (f", shape mismatches {wrong}" if wrong else ""))
    for f in sorted(set(found.values())):
        with safe_open(str(f), "pt", device="cpu") as st:
            for key in st.keys():
                targets[key].copy_(st.get_tensor(key))


# --- vision towers ---------------------------------------------------------------------------------------------
def save_towers(model: nn.Module, path: Path) -> None:
    """Each tower as a transformers model directory under DIR/vision_towers/NAME."""
    for name, tower in model.vision.items():
        tower.model.save_pretrained(path / TOWERS_DIR / name)


def load_tower(cfg: TowerConfig, path: Path, device: torch.device, dtype: torch.dtype) -> VisionTower:
    """A tower's weights from DIR/vision_towers/NAME (strict), else from its hub source (missing keys refused;
    the text tower and heads of full CLIP/SigLIP checkpoints are ignored)."""
    local = path / TOWERS_DIR / cfg.name
    _, model_cls = ARCHS[cfg.arch]
    if local.is_dir():
        model, info = model_cls.from_pretrained(str(local), dtype=dtype, output_loading_info=True)
        bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise ValueError(f"{local}: vision tower {cfg.name!r} weights do not fit: {bad}")
        return VisionTower(cfg, model).to(device)
    if cfg.source is None:
        raise FileNotFoundError(f"{path}: no weights for vision tower {cfg.name!r}: expected {local} (written by "
                                "save_pretrained) or a hub source in its config")
    if cfg.arch == "convnext":
        return load_open_clip_convnext(cfg, device, dtype)
    # the hub's SigLIP config says gelu_pytorch_tanh: the official timm trunk runs exact GELU (pin_tower sets it too)
    overrides = {"vision_use_head": False, "hidden_act": "gelu"} if cfg.arch == "siglip" else {}
    model, info = model_cls.from_pretrained(cfg.source, dtype=dtype, output_loading_info=True, **overrides)
    if info.get("missing_keys"):
        raise ValueError(f"{cfg.source}: vision tower {cfg.name!r} misses weights {sorted(info['missing_keys'])}")
    return VisionTower(cfg, model).to(device)


def read_config(path: Path) -> CambrianConfig:
    f = path / "config.json"
    if not f.exists():
        raise FileNotFoundError(f"Cambrian directory {str(path)!r} has no config.json")
    return CambrianConfig.from_official(json.loads(f.read_text()), where=str(f))
