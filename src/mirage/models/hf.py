"""Loading transformers VLMs (`hf:<hub id or directory>`): dtype, device map and attention by the hardware.

Backends by model type: LLaVA-1.5 and the Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) have their own backends,
the families in `hf_families.FAMILIES` (LLaVA-NeXT/OneVision, Gemma 3, PaliGemma, Idefics3/SmolVLM, InternVL,
Mistral 3) the generic one (`hf_generic`), as does any other model whose probes pass (one fixed-size image, tower ->
projector, the LM as its own forward): all get every stage, so every input and scope. Any other image-text-to-text
model with a chat template is evaluated through its own processor (`ProcessorVLM`), and optimization says what does
not fit.
"""

from __future__ import annotations

import importlib.util

import torch

from ..errors import MirageError
from .vlm import VLM

FULL = {"llava": "LLaVA-1.5 (LlavaForConditionalGeneration)", "qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL",
        "qwen3_vl": "Qwen3-VL"}


def attention_implementation(device: torch.device) -> str:
    """flash-attention 2 where installed and the GPU's compute capability is >= 8.0, else sdpa (the seed's Pascal
    GPUs, compute 6.1, could not use flash attention)."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0) \
            and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class ModelLoadError(MirageError):
    """A model's files could not be read: a missing directory, or a hub id neither cached nor reachable."""


def load_hf(path: str, device: torch.device, dtype: torch.dtype | None = None, device_map: str | None = None,
            image_size: int | None = None, gpus: list[int] | None = None, image_aspect_ratio: str | None = None,
            conversation: str | None = None) -> VLM:
    """Load a transformers VLM from a hub id or directory; bf16 on GPU and fp32 on CPU unless `dtype` is given.
    `device_map` (e.g. "auto") splits it over GPUs, the default when several are visible; `gpus` limits that split
    to these GPU indices (a torchrun rank's group); `image_size` is the fixed resolution of optimized inputs
    (the Qwen2-VL family: a multiple of 28; the generic families: any size, default the processor's own);
    `image_aspect_ratio` is LLaVA-1.5's preprocessing (pad: the official code's, the default; crop: the
    transformers processor's); `conversation` the prompt: hf (the processor's chat template) or an official one
    (`conversations.OFFICIAL`: LLaVA-1.5's vicuna_v1, its default; LLaVA-OneVision's qwen_1_5; InternVL's
    internvl2_5). Files that cannot be had raise ModelLoadError, one line saying what to do."""
    from pathlib import Path

    try:
        return _load_hf(path, device, dtype, device_map, image_size, gpus, image_aspect_ratio, conversation)
    except OSError as e:  # transformers' offline / not-found errors: pages of traceback for one missing thing
        raise unreadable(f"hf:{path}", path, e) from None


def unreadable(spec: str, path: str, e: OSError) -> ModelLoadError:
    """One line for model files that cannot be had (`--model` and `--text-model` alike): a directory that cannot be
    read, a local path that does not exist, or a hub id neither cached nor reachable (with the download command)."""
    from pathlib import Path

    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if Path(path).exists():
        return ModelLoadError(f"{spec}: cannot read the model directory: {first}")
    parts = path.split("/")
    if path.startswith(("/", ".", "~")) or len(parts) > 2 or "\\" in path:  # a path, not a hub id (org/name)
        return ModelLoadError(f"{spec}: no such directory {path!r}")
    return ModelLoadError(
        f"{spec}: not a local directory, and not loadable from the hub ({first}). Download it where the hub is "
        f"reachable (`hf download {path}`, then it is read from the cache; HF_HOME to move the cache), or give "
        "a directory with a saved model.")


def _load_hf(path: str, device: torch.device, dtype: torch.dtype | None, device_map: str | None,
             image_size: int | None, gpus: list[int] | None, image_aspect_ratio: str | None,
             conversation: str | None = None) -> VLM:
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    config = AutoConfig.from_pretrained(path)
    kind = config.model_type
    if kind not in FULL and kind not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ValueError(f"hf:{path}: model type {kind!r} is not an image-text-to-text model transformers knows "
                         f"(full support: {', '.join(FULL.values())}; others through AutoModelForImageTextToText)")
    from .hf_families import FAMILIES

    if image_size is not None and kind == "llava":
        raise ValueError("image_size applies to the Qwen2-VL family and to the generic path, not to 'llava' "
                         "(LLaVA-1.5 runs at its tower's size)")
    if image_aspect_ratio is not None and kind != "llava":
        raise ValueError(f"image_aspect_ratio applies to LLaVA-1.5, not to {kind!r}")
    if conversation is not None:
        from .conversations import pick

        pick(kind, conversation)  # refused before the weights load, naming the family's choices
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    max_memory = None
    if gpus and len(gpus) > 1:
        device_map = device_map or "auto"
        max_memory = {g: torch.cuda.mem_get_info(g)[0] for g in gpus}  # this rank's GPUs only
    elif device_map is None and device.type == "cuda" and torch.cuda.device_count() > 1 and not gpus \
            and not torch.distributed.is_initialized():
        device_map = "auto"  # split the model over the visible GPUs, as the seed did
    attn = attention_implementation(device)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=attn,
                                                        device_map=device_map, max_memory=max_memory)
    if device_map is None:
        model = model.to(device)
    model.eval()
    if kind == "llava":
        from transformers import AutoProcessor

        from .hf_llava import HFLlava

        vlm = HFLlava(model, AutoProcessor.from_pretrained(path), image_aspect_ratio, conversation)
    elif kind in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        from transformers import AutoImageProcessor, AutoTokenizer

        from .hf_qwen import HFQwen2VL, HFQwen3VL

        # image processor and tokenizer on their own: the full processor also wants a video processor, which
        # needs torchvision, and mirage uses no video
        tokenizer = AutoTokenizer.from_pretrained(path)
        if not tokenizer.chat_template:
            raise ValueError(f"hf:{path}: the tokenizer has no chat template (instruct checkpoints have one)")
        backend = HFQwen3VL if kind == "qwen3_vl" else HFQwen2VL
        vlm = backend(model, AutoImageProcessor.from_pretrained(path), tokenizer, image_size)
    elif kind in FAMILIES:
        from .hf_generic import HFGeneric, load_processor

        vlm = HFGeneric(model, load_processor(path, kind), image_size, f"hf:{path}", conversation)
    else:
        vlm = _probed_or_processor(model, path, kind, image_size)
    vlm.attn_implementation = attn
    vlm.device_map = device_map
    return vlm


def _probed_or_processor(model, path: str, kind: str, image_size: int | None) -> VLM:
    """Another family: the generic path where its probes pass (one fixed-size image, tower -> projector, the LM as
    its own forward), else its own processor for conditions, with the reason optimization is refused."""
    from transformers import AutoProcessor

    from .hf_families import REFUSED, NotGeneric
    from .hf_generic import HFGeneric, load_processor
    from .hf_processor import ProcessorVLM

    why = REFUSED.get(kind)
    if why is None:
        try:
            return HFGeneric(model, load_processor(path, kind), image_size, f"hf:{path}")
        except NotGeneric as e:
            why = str(e)
        except (AttributeError, IndexError, KeyError, NotImplementedError, RuntimeError, TypeError, ValueError) as e:
            # models that loaded for conditions before the generic path existed still do
            why = f"the generic path could not map it ({type(e).__name__}: {e})"
    if image_size is not None:
        raise ValueError(f"hf:{path}: image_size applies to models on mirage's stages; {kind!r} is not: {why}")
    vlm = ProcessorVLM(model, AutoProcessor.from_pretrained(path), f"hf:{path}")
    vlm.why = why
    return vlm
