"""The generic transformers path: a VLM that computes image features from `pixel_values` and splices them at its
image-token positions, behind every mirage stage. Per-family pieces (tile grid, pooling, pixel shuffle) live in
`hf_families`; this file holds what they share.

* **Native resolution** (stage `images`: conditions and the PNG re-check, as published numbers are computed): the
  model's own processor builds the prompt (`apply_chat_template(..., tokenize=True)`: its image placeholders
  expanded, the BOS once) and the pixel values of each image at its own size; the model's own
  `get_image_features` gives the tokens.
* **Fixed resolution** (`image_size`: the stages `pixels`, `processed`, `features`, `tokens` that optimization
  uses): every image is an S x S square, so the tile grid, the token count and the prompt's expansion are chosen
  once; `preprocess` is the family's differentiable twin of the processor at that size.

The LM runs through the model's own forward on our input embeddings (`inputs_embeds`), so whatever its forward
does to the attention (Gemma 3's bidirectional image blocks, PaliGemma's prefix) holds for spliced inputs too.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Sequence

import torch
from PIL import Image
from torch import Tensor

from .chat import IMAGE_MARKER, adds_special_tokens, image_turn
from .conversations import OFFICIAL, pick
from .hf_families import FAMILIES, NotGeneric, Probed
from .spliced import TransformersSpliced, build_sequences, cache_argument, cached_forward
from .vlm import IMAGES, NONE, EncoderSpec, Visual, on_device

ENCODER = "vision"
NO_TEMPLATE = {"paligemma"}  # prompt format documented by the model, no chat template


def image_only(cls):
    """`cls` (a transformers processor) without its video processor: the video part imports torchvision, which does
    not load beside torch 2.13 CPU, and mirage uses no video. Text expansion and chat template stay the model's. A
    processor whose __init__ requires the slot (SmolVLM's) gets None there, and one that checks for a package only its
    video prompts use (SmolVLM's num2words, which spells frame counts) passes that check."""
    import importlib

    sig = inspect.signature(cls.__init__)
    slot = sig.parameters.get("video_processor")
    required = slot is not None and slot.default is inspect.Parameter.empty
    module = importlib.import_module(cls.__module__)

    def __init__(self, *args, **kwargs):
        kwargs.pop("video_processor", None)
        if not required:
            return cls.__init__(self, *args, **kwargs)
        kwargs["video_processor"] = None
        video_only = getattr(module, "num2words", False)
        if video_only is None:  # the module's stand-in for a missing package used by its video prompts only
            module.num2words = _video_only
        try:
            cls.__init__(self, *args, **kwargs)
        finally:
            if video_only is None:
                module.num2words = None

    # transformers reads a processor's parts from its __init__ signature
    __init__.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "video_processor"])
    body = {"__init__": __init__, "__module__": cls.__module__}
    if required:  # its chat template call reads the video processor's frame defaults even for images: none here
        body["video_processor"] = NoVideo()
    return type(cls.__name__, (cls,), body)


class NoVideo:
    """The video slot of an image-only processor whose methods read the video processor's defaults."""

    num_frames = fps = None

    def __call__(self, *args, **kwargs):
        raise NotImplementedError("mirage loads this processor for images only")


def _video_only(*args, **kwargs):
    raise NotImplementedError("mirage loads this processor for images only (its video prompts need num2words)")


def processor_class(kind: str):
    """The transformers processor class of a model type. A processor whose module imports its torchvision image
    processor (Mistral 3's PixtralProcessor, for a size helper of the token count) is a placeholder that refuses
    to build without torchvision; its module is imported with that image processor's PIL twin in its place (same
    helpers, no torchvision), since the processor's image path is the image processor mirage passes it."""
    import importlib
    import sys

    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = PROCESSOR_MAPPING_NAMES[kind]
    cls = getattr(transformers, name)
    if isinstance(cls, type) and "Placeholder" not in cls.__qualname__:
        return cls
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    for k, n in PROCESSOR_MAPPING_NAMES.items():
        m = model_type_to_module_name(k)
        if n != name or importlib.util.find_spec(f"transformers.models.{m}.processing_{m}") is None:
            continue
        torch_ip, pil_ip = f"transformers.models.{m}.image_processing_{m}", \
            f"transformers.models.{m}.image_processing_pil_{m}"
        try:
            return getattr(importlib.import_module(f"transformers.models.{m}.processing_{m}"), name)
        except ImportError:
            if importlib.util.find_spec(pil_ip) is None:
                raise
        saved = sys.modules.get(torch_ip)
        sys.modules[torch_ip] = importlib.import_module(pil_ip)
        try:
            sys.modules.pop(f"transformers.models.{m}.processing_{m}", None)
            return getattr(importlib.import_module(f"transformers.models.{m}.processing_{m}"), name)
        finally:
            if saved is None:
                sys.modules.pop(torch_ip, None)
            else:
                sys.modules[torch_ip] = saved
    return cls


def load_processor(path: str, kind: str):
    """The model's processor from its saved parts: the PIL image processor (pinned: the torchvision backend resizes
    differently and replaces LANCZOS by bicubic), the tokenizer, the processor's settings and chat template."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    if kind not in PROCESSOR_MAPPING_NAMES:
        return transformers.AutoProcessor.from_pretrained(path)
    cls = processor_class(kind)
    params = inspect.signature(cls.__init__).parameters
    settings, _ = cls.get_processor_dict(path)
    kwargs = {k: v for k, v in settings.items()
              if k in params and k not in ("image_processor", "tokenizer", "video_processor")}
    make = image_only(cls) if "video_processor" in params else cls
    return make(image_processor=AutoImageProcessor.from_pretrained(path, backend="pil"),
                tokenizer=AutoTokenizer.from_pretrained(path), **kwargs)


class HFGeneric(TransformersSpliced):
    """A transformers VLM of a family in `FAMILIES` (or one whose probes pass, `Probed`), its processor, and a fixed
    size for optimized inputs."""

    cached_generation = True  # `generate` keeps the key/value cache (`prefill`, then `lm_cached`)

    def __init__(self, model, processor, image_size: int | None = None, name: str = "",
                 conversation: str | None = None):
        super().__init__()
        self.model, self.processor = model, processor
        self.image_processor, self.tokenizer = processor.image_processor, processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.inner = model.model
        cfg = model.config
        self.kind, self.name = cfg.model_type, name or cfg._name_or_path
        self.conversation = pick(self.kind, conversation)
        self.image_token_id = getattr(cfg, "image_token_id", None) or cfg.image_token_index
        if self.kind not in NO_TEMPLATE and not (processor.chat_template or self.tokenizer.chat_template):
            raise ValueError(f"{self.name}: the processor has no chat template (instruct checkpoints have one)")
        family = FAMILIES.get(self.kind, Probed)
        self.image_size = image_size or family.default_size(self.image_processor)
        self.family = family(self, self.image_size)
        # several images per question: the families built for them (Idefics3, SmolVLM, Gemma 3, InternVL, LLaVA-NeXT,
        # LLaVA-OneVision), through the chat template (an official conversation, `internvl2_5`, `qwen_1_5`, takes one)
        self.max_images = family.max_images if self.conversation == "hf" and self.kind not in NO_TEMPLATE else 1
        s = self.image_size
        with torch.no_grad():  # the stages' shapes, from one grey image, and the twin's layout against the processor
            twin = self.family.twin(torch.full((1, 3, s, s), 128 / 255, device=self.device))
            real = self.process_images([Image.new("RGB", (s, s), (128, 128, 128))])[ENCODER]
            if twin.shape != real.shape or float((twin - real).abs().mean()) > 1e-3:
                raise ValueError(f"{self.name}: at {s} px the processor gives pixel values {tuple(real.shape)}, the "
                                 f"{type(self.family).__name__} twin {tuple(twin.shape)}: its layout is not the twin's")
            f = self.family.tower(twin.to(self.dtype))
            n = self.family.project(f).shape[1]
        ip = self.image_processor
        self.encoders = [EncoderSpec(ENCODER, s, tuple(ip.image_mean), tuple(ip.image_std), f.shape[1], f.shape[2])]
        self.num_image_tokens = n
        found = self._fixed_ids("x").count(self.image_token_id)
        if found != n:
            raise ValueError(f"{self.name}: at {s} px the processor writes {found} image tokens, the model gives {n}")
        if family is Probed:
            self._check_lm()

    def run_facts(self) -> dict:
        """What a run records about how this model was prompted and laid out at the fixed size."""
        prompt = ("<image> x N, BOS, prompt, newline (PaliGemma's documented format)" if self.kind in NO_TEMPLATE
                  else "the processor's chat template: image, prompt, one user turn, generation prompt"
                  if self.conversation == "hf" else f"the official {self.conversation} conversation")
        layout = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.family).items()
                  if k in ("grid", "best", "n_images", "n_patches", "out", "layer", "drop")}
        return {"prompt_format": prompt, "conversation": self.conversation, "image_size": self.image_size,
                "fixed_layout": {"family": type(self.family).__name__, **layout}}

    @torch.no_grad()
    def _check_lm(self) -> None:
        """A probed model's LM on our spliced embeddings must score as its own forward does (attention masks or
        positions its forward builds from inputs mirage does not know would differ)."""
        image = Image.new("RGB", (self.image_size, self.image_size), (90, 160, 30))
        inputs = {k: on_device(v, self.device) for k, v in self._chat_inputs("x", image).items() if torch.is_tensor(v)}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        theirs = self.model(**inputs, use_cache=False).logits[:, -1].float()
        mine = self.next_token_logits(["x"], self.visual_from_images([image]))
        tol = 1e-4 if self.dtype == torch.float32 else 2e-2  # bf16: rounding differs between the two graphs
        if float((mine - theirs).abs().max()) > tol * max(1.0, float(theirs.abs().max())):
            raise NotGeneric("its LM on spliced image embeddings does not score as its own forward (it builds "
                             "attention masks or positions from inputs the generic path does not know)")

    # --- prompts --------------------------------------------------------------------------------
    def _chat_inputs(self, prompt: str, image: Image.Image | Sequence[Image.Image] | None) -> dict:
        """The processor's whole input for one prompt and image: ids (placeholders expanded) and pixel values.
        `image` None (the `none` condition): the processor's text-only turn, ids only. A list of images (a model
        with `max_images` > 1): each where the prompt's `<image>` markers stand, else all before it, as the chat
        template renders an image (`image_turn`)."""
        if self.kind in NO_TEMPLATE:  # PaliGemma: image tokens, BOS, the prompt, a newline
            if image is None:  # its processor wants an image: the documented format without the image tokens
                return self.tokenizer(self.chat_text(prompt, False), add_special_tokens=False, return_tensors="pt")
            return self.processor(text=self.processor.image_token + prompt, images=image.convert("RGB"),
                                  return_tensors="pt")
        if self.conversation != "hf":  # the official text, its image placeholder expanded by the processor
            text = self.chat_text(prompt, image is not None)
            special = adds_special_tokens(self.tokenizer, text)
            if image is None:
                return self.tokenizer(text, add_special_tokens=special, return_tensors="pt")
            return self.processor(text=[text], images=[[image.convert("RGB")]], add_special_tokens=special,
                                  return_tensors="pt")
        images = [] if image is None else list(image) if isinstance(image, (list, tuple)) else [image]
        if images and IMAGE_MARKER in prompt and self.max_images > 1 and self._images_first:
            # the template renders every image before the text: the markers stay in the text as the processor's
            # image token, which the processor expands in place, image by image
            text = self.render([{"role": "user", "content": [{"type": "text", "text": prompt.replace(
                IMAGE_MARKER, self.processor.image_token)}]}], add_generation_prompt=True)
            return self.processor(text=[text], images=[[im.convert("RGB") for im in images]], return_tensors="pt",
                                  add_special_tokens=adds_special_tokens(self.tokenizer, text))
        pictures = iter(images)
        turn = image_turn(prompt, image=len(images))  # each image at its `<image>` marker, else before the prompt
        turn[0]["content"] = [{**c, "image": next(pictures).convert("RGB")} if c["type"] == "image" else c
                              for c in turn[0]["content"]]
        return self.processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                  return_tensors="pt")

    @property
    def _images_first(self) -> bool:
        """Whether the chat template renders every image of a turn before its text whatever the content order
        (llava-hf's LLaVA-NeXT and LLaVA-OneVision templates), where the processor's image token is text it expands:
        probed once."""
        if "_first" not in self.__dict__:
            token = getattr(self.processor, "image_token", None)
            before = "mirage-probe-text"  # words no template writes itself (a system prompt may hold any word)
            text = self.render(image_turn(f"{before}{IMAGE_MARKER}.", image=1), add_generation_prompt=True) \
                if token else ""
            self.__dict__["_first"] = bool(token) and token in text and text.index(token) < text.index(before)
        return self.__dict__["_first"]

    def _fixed_ids(self, prompt: str, image: bool | int = True) -> list[int]:
        """The prompt's ids at the fixed size (the expansion depends on the image's size only), kept per prompt;
        `image` False: the text-only prompt's; an int past 1: that many images'."""
        cache = self.__dict__.setdefault("_prompt_ids", {})
        if (prompt, image) not in cache:
            blank = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128)) if image else None
            cache[prompt, image] = self._chat_inputs(prompt, [blank] * image if image > 1 else blank
                                                     )["input_ids"][0].tolist()
        return cache[prompt, image]

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                  tokenize=False)

    def chat_text(self, prompt: str, image: bool = True) -> str:
        if self.kind in NO_TEMPLATE:
            return f"{self.tokenizer.bos_token}{prompt}\n"
        if self.conversation != "hf":
            return OFFICIAL[self.conversation].asked(prompt, self.processor.image_token if image else "")
        return super().chat_text(prompt, image)

    def answered_text(self, prompt: str, answer: str) -> str:
        if self.kind in NO_TEMPLATE:  # the answer follows the prompt's newline
            return self.chat_text(prompt) + answer
        if self.conversation != "hf":
            return OFFICIAL[self.conversation].answered(prompt, self.processor.image_token, answer)
        return super().answered_text(prompt, answer)

    def sequences(self, prompts, targets=None, counts=None, image: bool = True, images=None):
        ids = [self._fixed_ids(p, k) for p, k in zip(prompts, images or [image] * len(prompts))]
        out = build_sequences(self.tokenizer, ids, targets, self.image_token_id, 0)  # already expanded
        return tuple(on_device(t, self.device) for t in out)

    # --- visual path ----------------------------------------------------------------------------
    def visual_from_images(self, images: Sequence[Image.Image]) -> Visual:
        return Visual(IMAGES, list(images))  # native resolution, through the processor

    def process_images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        """The real processor (through the whole processor: its image defaults, such as InternVL's crop_to_patches,
        are the processor's, not the image processor's) on images resized (PIL bicubic) to the fixed square."""
        s = self.image_size
        rows = [self._chat_inputs("x", im.convert("RGB").resize((s, s), Image.BICUBIC)) for im in images]
        return {ENCODER: torch.cat([self.family.batched(r["pixel_values"]) for r in rows]).to(self.device)}

    def preprocess(self, pixels: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        return {ENCODER: self.family.twin(pixels)}

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        return {ENCODER: self.family.tower(processed[ENCODER].to(self.dtype))}

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        return self.family.project(features[ENCODER].to(self.dtype))

    def _native_tokens(self, inputs: dict) -> Tensor:
        """The model's own `get_image_features` on the processor's output for one image: [N, D_lm]."""
        params = inspect.signature(self.inner.get_image_features).parameters
        kwargs = {k: on_device(v, self.device) for k, v in inputs.items() if k in params and torch.is_tensor(v)}
        kwargs["pixel_values"] = kwargs["pixel_values"].to(self.dtype)
        out = self.inner.get_image_features(**kwargs, return_dict=True).pooler_output
        out = torch.cat(list(out)) if isinstance(out, (list, tuple)) else out
        return out.reshape(-1, out.shape[-1])

    def prepare(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str] | None = None):
        if visual.stage == NONE:  # the processor's text-only prompt, no image tokens
            input_ids, mask, labels = self.sequences(prompts, targets, image=False)
            return input_ids, mask, labels, None, labels != -100
        if visual.stage == IMAGES:
            rows = [self._chat_inputs(p, im) for p, im in zip(prompts, visual.value)]
            tokens = torch.cat([self._native_tokens(r) for r in rows])  # [sum N_i, D_lm]
            ids = [r["input_ids"][0].tolist() for r in rows]
            input_ids, mask, labels = (on_device(t, self.device) for t in
                                       build_sequences(self.tokenizer, ids, targets, self.image_token_id, 0))
        else:  # each row's images (`counts`) one after another
            tokens = self.family.placed(self.to_tokens(replace(visual, counts=None)), visual.counts)
            input_ids, mask, labels = self.sequences(prompts, targets, images=visual.counts)
        slots = int((input_ids == self.image_token_id).sum())
        if slots != tokens.numel() // tokens.shape[-1]:
            raise ValueError(f"{self.name}: {slots} image placeholders in the prompts, {tokens.numel() // tokens.shape[-1]} "
                             "image tokens")
        return input_ids, mask, labels, tokens, labels != -100  # layout: where the answer (suffix) is

    def _lm_inputs(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout) -> dict:
        """The model's own forward's inputs for the LM: embeddings with the image tokens at the placeholders, the
        family's positions and its attention inputs (`lm_inputs`: Gemma 3's image blocks, PaliGemma's prefix)."""
        embeds = self.embed(input_ids)
        if image_tokens is not None:
            slots = (input_ids == self.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, image_tokens.to(embeds.dtype))
        suffix = layout if layout is not None else torch.zeros_like(input_ids, dtype=torch.bool)
        if suffix.shape[1] < input_ids.shape[1]:  # greedy generation appended answer tokens
            suffix = torch.cat([suffix, suffix.new_ones(len(suffix), input_ids.shape[1] - suffix.shape[1])], 1)
        return dict(inputs_embeds=embeds, attention_mask=mask, position_ids=self.family.positions(mask),
                    **self.family.lm_inputs(input_ids, suffix))

    def _hidden(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None) -> Tensor:
        return self.inner(**self._lm_inputs(input_ids, mask, image_tokens, layout), use_cache=False).last_hidden_state

    def prefill(self, input_ids: Tensor, mask: Tensor, image_tokens: Tensor | None, layout=None):
        # the prompt through the model's own forward with the family's attention inputs; each generated token, text
        # attending to everything before it, is then a plain cached step of the same forward (`lm_cached`)
        inputs = self._lm_inputs(input_ids, mask, image_tokens, layout)
        name = cache_argument(self.inner.forward)
        out = self.inner(**inputs, use_cache=True, **{name: None})
        return out.last_hidden_state, out[name], inputs["position_ids"][..., -1:]

    def lm_cached(self, embeds: Tensor, mask: Tensor, position_ids: Tensor, cache):
        return cached_forward(self.inner, embeds, mask, position_ids, cache)
