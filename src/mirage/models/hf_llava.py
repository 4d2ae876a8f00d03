"""LLaVA-1.5 (transformers `LlavaForConditionalGeneration`) behind mirage's VLM interface.

Stages: `processed` = the CLIP processor's pixel values; `features` = the vision tower's hidden states at the
configured layer (CLS dropped under the "default" strategy), e.g. [B, 576, 1024] at 336 px; `tokens` = the
projector's output.

Preprocessing (`image_aspect_ratio`): "pad" (the default) is the official LLaVA code's, which LLaVA-1.5's published
numbers used (`image_aspect_ratio: pad` in its config; haotian-liu/LLaVA `mm_utils.process_images`): the image
centred on a square of the processor's mean colour, then resized to 336 x 336, so nothing is cropped away. "crop" is
the transformers processor's (llava-hf): the short side resized to 336, then a centre crop. `preprocess` is the
differentiable twin of either: antialiased bicubic resizes, the pad or the crop, normalisation.

Conversation (`conversation`): "vicuna_v1" (the default) is the official LLaVA code's, as its evaluation scripts run
for the published numbers (`--conv-mode vicuna_v1`; haotian-liu/LLaVA `conversation.py` and `mm_utils`): its system
line, then "USER: <image>\\n{prompt} ASSISTANT:", tokenized as `tokenizer_image_token` does (the text before and after
the image tokenized apart, one BOS). "hf" is llava-hf's chat template through the transformers processor (what
lmms-eval's `llava_hf` runs): no system line, the text tokenized whole.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .chat import IMAGE_MARKER
from .conversations import OFFICIAL, pick
from .spliced import TransformersSpliced
from .square import normalize, pad_colour, pad_square, process_pil, resize_like_pil
from .vlm import EncoderSpec, on_device

ENCODER = "vision"
ASPECT_RATIOS = ("pad", "crop")  # the official LLaVA code's; the transformers processor's


class HFLlava(TransformersSpliced):
    """A transformers LLaVA model and its processor; `image_aspect_ratio` "pad" (official LLaVA) or "crop"."""

    causal_scoring = True  # its LM (Vicuna/Llama for LLaVA-1.5) attends by the causal mask alone
    soft_prompts = True  # its text-only turn takes free vectors (the soft-prompt control)
    cached_generation = True  # `generate` keeps the LM's key/value cache (captions: 128 tokens)
    # several images per question, as lmms-eval's llava gives them: each its 576-token block at its marker, or all
    # before the text (native LLaVA-1.5 was trained on one)
    max_images = 64

    def __init__(self, model, processor, image_aspect_ratio: str | None = None, conversation: str | None = None):
        super().__init__()
        self.image_aspect_ratio = image_aspect_ratio or "pad"
        if self.image_aspect_ratio not in ASPECT_RATIOS:
            raise ValueError(f"image_aspect_ratio {image_aspect_ratio!r}: allowed {', '.join(ASPECT_RATIOS)} (pad: the "
                             "official LLaVA code's, crop: the transformers processor's)")
        self.conversation = pick("llava", conversation)
        self.model, self.processor, self.tokenizer = model, processor, processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.inner = model.model  # LlavaModel: vision_tower, multi_modal_projector, language_model
        cfg = model.config
        self.image_token_id = getattr(cfg, "image_token_id", None) or cfg.image_token_index
        self.layer = cfg.vision_feature_layer
        self.strategy = cfg.vision_feature_select_strategy
        ip = processor.image_processor
        self.crop = (ip.crop_size["height"], ip.crop_size["width"]) if ip.do_center_crop else None
        vc = cfg.vision_config
        side = vc.image_size // vc.patch_size
        n = side * side + (0 if self.strategy == "default" else 1)
        dim = vc.hidden_size * (len(self.layer) if isinstance(self.layer, (list, tuple)) else 1)
        self.encoders = [EncoderSpec(ENCODER, vc.image_size, tuple(ip.image_mean), tuple(ip.image_std), n, dim)]
        self.num_image_tokens = n
        self.pad_size = ip.size["shortest_edge"]  # a padded square: the short-side resize is the whole resize
        if self.image_aspect_ratio == "pad" and self.crop not in (None, (self.pad_size, self.pad_size)):
            raise ValueError(f"image_aspect_ratio pad: the processor resizes to {self.pad_size} but crops to "
                             f"{self.crop}; the official pad path (LLaVA-1.5: 336 and 336) needs them equal")

    # --- visual path ---------------------------------------------------------------------------
    def process_images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        ip = self.processor.image_processor
        if self.image_aspect_ratio == "pad":
            pv = process_pil(images, self.pad_size, pad_colour(ip.image_mean), ip.image_mean, ip.image_std)
            return {ENCODER: pv.to(self.device)}
        pv = ip(images=[im.convert("RGB") for im in images], return_tensors="pt")
        return {ENCODER: pv["pixel_values"].to(self.device)}

    def preprocess(self, pixels: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        ip = self.processor.image_processor
        if self.image_aspect_ratio == "pad":
            x = resize_like_pil(pad_square(pixels, pad_colour(ip.image_mean)), self.pad_size)
            return {ENCODER: normalize(x, ip.image_mean, ip.image_std)}
        h, w = pixels.shape[-2:]
        short = ip.size["shortest_edge"]
        # as transformers' get_resize_output_image_size(default_to_square=False): short side -> `short`
        nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        x = F.interpolate(pixels, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        if self.crop:
            ch, cw = self.crop
            top, left = (nh - ch) // 2, (nw - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        mean = on_device(ip.image_mean, x.device, x.dtype).view(1, 3, 1, 1)
        std = on_device(ip.image_std, x.device, x.dtype).view(1, 3, 1, 1)
        return {ENCODER: (x - mean) / std}

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        out = self.inner.vision_tower(processed[ENCODER].to(self.dtype), output_hidden_states=True)
        layers = self.layer if isinstance(self.layer, (list, tuple)) else [self.layer]
        hs = [out.hidden_states[i] for i in layers]
        if self.strategy == "default":
            hs = [h[:, 1:] for h in hs]
        return {ENCODER: torch.cat(hs, dim=-1)}

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        return self.inner.multi_modal_projector(features[ENCODER].to(self.dtype))

    # --- language side -------------------------------------------------------------------------
    def run_facts(self) -> dict:
        return {"conversation": self.conversation}

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)

    def chat_text(self, prompt: str, image: bool | int = True) -> str:
        if self.conversation == "hf":
            return super().chat_text(prompt, image)
        # several images without markers: lmms-eval's llava puts " ".join(["<image>"] * n) + "\n" before the text
        k, token = int(image), self.processor.image_token
        return OFFICIAL[self.conversation].asked(prompt, " ".join([token] * k) if IMAGE_MARKER not in prompt else
                                                 token if k else "")

    def answered_text(self, prompt: str, answer: str) -> str:
        if self.conversation == "hf":
            return super().answered_text(prompt, answer)
        return OFFICIAL[self.conversation].answered(prompt, self.processor.image_token, answer)

    def text_ids(self, text: str) -> list[int]:
        """The official code's ids (`tokenizer_image_token`: the text around each image placeholder tokenized apart,
        the BOS of the first part kept and the others' dropped), or, for llava-hf's template, the processor's own
        (its expanded image tokens folded back into one placeholder): its tokenizer, whatever class the hub files
        load it as, decides the BOS and the spaces around `<image>`."""
        image_token = self.processor.image_token
        if self.conversation != "hf":
            parts = [self.tokenizer(part).input_ids for part in text.split(image_token)]
            bos = self.tokenizer.bos_token_id
            keep = 1 if parts[0][:1] == [bos] and bos is not None else 0
            ids = parts[0][:keep]
            for i, part in enumerate(parts):
                ids += ([self.image_token_id] if i else []) + part[keep:]
            return ids
        n = text.count(image_token)
        blank = [Image.new("RGB", (self.pad_size, self.pad_size))] * n or None
        ids = self.processor(text=[text], images=blank)["input_ids"][0]
        ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
        return [t for i, t in enumerate(ids) if t != self.image_token_id or i == 0 or ids[i - 1] != self.image_token_id]
