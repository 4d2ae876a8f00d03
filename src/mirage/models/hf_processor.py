"""Any transformers image-text-to-text model with a chat template, evaluated through its own processor.

The processor builds the whole input (chat text with the image placeholder expanded, pixel values, any extra
tensors the model wants) and the model's own forward scores it, so image conditions and letter or generated
answers work for models mirage has no backend for. Optimization needs the model split onto mirage's stages
(a differentiable preprocessing, the vision tower, the connector and the LM reading spliced image tokens); for
these models each of those steps refuses with `NotSupportedYet`, naming what is missing.
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torch import Tensor

from .chat import adds_special_tokens, image_turn
from .spliced import chat_letter_ids
from .vlm import IMAGES, NONE, VLM, Visual


class NotSupportedYet(ValueError):
    """A step of mirage's VLM interface that this model's backend does not implement."""


class ProcessorVLM(VLM):
    """A transformers model and its processor; visual inputs stay PIL images (stage `images`)."""

    def __init__(self, model, processor, name: str = ""):
        super().__init__()
        self.model, self.processor, self.tokenizer = model, processor, processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.name = name or model.config._name_or_path
        self.encoders = []
        if not (getattr(processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)):
            raise ValueError(f"{self.name}: the processor has no chat template, so mirage cannot place the image "
                             "and the question the way the model expects")

    def _missing(self, what: str) -> NotSupportedYet:
        from .hf_families import FAMILIES, REFUSED

        kind = self.model.config.model_type
        why = getattr(self, "why", None) or REFUSED.get(kind) or ("its vision tower, connector and LM are not mapped onto mirage's stages (pixels "
                                    "-> processed -> features -> tokens) with a differentiable twin of its image "
                                    "processor")
        return NotSupportedYet(
            f"{self.name} ({kind}): {what} is not supported for this model: {why}. That mapping exists for llava, "
            f"qwen2_vl, qwen2_5_vl, {', '.join(FAMILIES)}. Image conditions work (evaluation through the processor).")

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def visual_from_images(self, images: Sequence[Image.Image]) -> Visual:
        return Visual(IMAGES, list(images))

    def process_images(self, images):
        raise self._missing("a fixed-size processed image stage (`processed`)")

    def preprocess(self, pixels, names=None):
        raise self._missing("differentiable preprocessing (`pixels` inputs)")

    def encode(self, processed):
        raise self._missing("running the vision tower alone (`features` inputs)")

    def connect(self, features):
        raise self._missing("running the connector alone (`tokens`)")

    def answer_loss(self, prompts, visual, targets):
        raise self._missing("the answer loss on optimized inputs")

    def chat_text(self, prompt: str, image: bool = True) -> str:
        return self.processor.apply_chat_template(image_turn(prompt, image=image), add_generation_prompt=True)

    def answered_text(self, prompt: str, answer: str) -> str:
        return self.processor.apply_chat_template(image_turn(prompt, answer), add_generation_prompt=False)

    def _inputs(self, prompts: Sequence[str], visual: Visual) -> dict:
        if visual.stage not in (IMAGES, NONE):
            raise self._missing(f"a visual input at the {visual.stage!r} stage")
        image = visual.stage == IMAGES
        texts = [self.chat_text(p, image) for p in prompts]  # one template: all start with its BOS or none does
        # `none`: the text-only turn and no pixel values at all
        images = {"images": [[im.convert("RGB")] for im in visual.value]} if image else {}
        batch = self.processor(text=texts, padding=True, return_tensors="pt",
                               add_special_tokens=adds_special_tokens(self.tokenizer, texts[0]), **images)
        out = {}
        for k, v in batch.items():
            if torch.is_tensor(v):
                v = v.to(self.device)
                out[k] = v.to(self.dtype) if v.is_floating_point() else v
        return out

    def next_token_logits(self, prompts: Sequence[str], visual: Visual) -> Tensor:
        out = self.model(**self._inputs(prompts, visual), use_cache=False, logits_to_keep=1)
        return out.logits[:, -1].float()

    def checkpointed_parts(self) -> list:
        return [self.model]

    def letter_ids(self, n: int) -> list[int]:
        return chat_letter_ids(self, n)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], visual: Visual, max_new_tokens: int = 8) -> list[str]:
        inputs = self._inputs(prompts, visual)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
