"""The VLM interface every backend implements: stages pixels -> processed -> features -> tokens -> LM."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from PIL import Image
from torch import Tensor, nn

if TYPE_CHECKING:
    from ..benchmarks.question import Question

# Where a visual input enters the model. `pixels`: [B, 3, H, W] floats in [0, 1];
# `processed`: {encoder: [B, 3, s, s]} normalised encoder inputs; `features`: {encoder: [B, T_e, D_e]};
# `tokens`: [B, N, D_lm] image tokens as the LM receives them.
STAGES = ("pixels", "processed", "features", "tokens")
# Before them all, `images`: a list of PIL images for the model's own processor (a backend may keep each image's
# native resolution there, as the Qwen2-VL family does); no gradient flows through this stage.
IMAGES = "images"
# No image at all (the `none` condition, MMStar's S_wv): the model's text-only prompt, with no image placeholder,
# no image tokens and no pixels. The value is None; each backend builds its text-only chat turn.
NONE = "none"
# A soft prompt (the soft-prompt control): free vectors [B, N, D_lm] in the LM's input embeddings of the text-only
# prompt, where the image would stand (the start of the user turn's content); no image token, no image position.
# Backends whose text path takes them say so (`soft_prompts`).
SOFT = "soft"


@dataclass(frozen=True)
class EncoderSpec:
    """One vision encoder as the rest of mirage sees it."""

    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_tokens: int
    dim: int


@dataclass
class Visual:
    """A batch of visual inputs at one stage (see STAGES). `counts`: how many images each row holds, where rows hold
    several (a model with `max_images` > 1): the value then holds those images one after another, row by row
    (sum(counts) of them), each placed where its row's prompt places its image; None: one image per row."""

    stage: str
    value: Tensor | dict[str, Tensor] | list[Image.Image] | None
    counts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.stage not in (NONE, SOFT, IMAGES, *STAGES):
            raise ValueError(f"unknown stage {self.stage!r} (allowed: {', '.join((NONE, SOFT, IMAGES, *STAGES))})")
        if (self.stage == NONE) != (self.value is None):
            raise ValueError(f"a {self.stage!r} visual {'has no' if self.stage == NONE else 'needs a'} value")

    @classmethod
    def none(cls) -> "Visual":
        """No image, for any batch size."""
        return cls(NONE, None)

    def select(self, rows: Sequence[int]) -> "Visual":
        """The same stage for a subset of the batch's rows."""
        if self.stage == NONE:
            return self
        if self.counts is not None:  # the images of those rows
            ends = torch.tensor(self.counts).cumsum(0).tolist()
            images = [i for r in rows for i in range(ends[r] - self.counts[r], ends[r])]
            return replace(Visual(self.stage, self.value).select(images), counts=tuple(self.counts[r] for r in rows))
        if isinstance(self.value, list):
            return Visual(self.stage, [self.value[i] for i in rows])
        if isinstance(self.value, dict):
            return Visual(self.stage, {k: v[list(rows)] for k, v in self.value.items()})
        return Visual(self.stage, self.value[list(rows)])


# The families that take several images per question (`VLM.max_images` > 1), named in every refusal of a
# several-image question; the README's several-images table says how each places them.
SEVERAL_IMAGE_FAMILIES = "the Qwen2-VL family, LLaVA-1.5, LLaVA-NeXT, Idefics3, SmolVLM, Gemma 3 and InternVL"


def on_device(data, device, dtype: torch.dtype | None = None) -> Tensor:
    """A small host list or CPU tensor on `device` without waiting for the GPU. `torch.tensor(..., device="cuda")`
    and `.to("cuda")` copy and then synchronize the stream, so each one in an optimization step stalls the host until
    every queued kernel has run, and the GPU then idles while the host prepares the next launches."""
    t = torch.as_tensor(data, dtype=dtype)
    return t.to(device, non_blocking=True) if t.device != torch.device(device) else t


def letter_logits(model: "VLM", logits: Tensor, n_choices: Sequence[int]) -> Tensor:
    """Pick the answer letters' columns from next-token logits [B, V] -> [B, max(n)], -inf past each question's n."""
    out = logits[:, on_device(model.letter_ids(max(n_choices)), logits.device)]  # a list index would sync
    past = torch.arange(out.shape[1], device=out.device)[None] >= on_device(list(n_choices), out.device)[:, None]
    return out.masked_fill(past, float("-inf"))


class VLM(nn.Module):
    """A vision-language model seen through mirage's stages; subclasses implement the abstract steps."""

    encoders: list[EncoderSpec]
    # How many images a question may show it (several: each where the prompt's `<image>` markers stand, else all
    # before the prompt); 1: one image per question.
    max_images: int = 1
    # The prompt style the model was trained to read, used for benchmarks with no official prompt (`file:`);
    # None: such benchmarks keep mirage's generic multiple-choice prompt.
    prompt_style: Callable[[Question], str] | None = None
    # Whether the text-only path takes a `soft` visual (free vectors in the input embeddings; `soft_dim` wide).
    soft_prompts: bool = False
    # The family whose own published benchmark prompts `--prompt model` asks in (a benchmark's prompt variant of
    # that name, e.g. "qwen": lmms-eval's mmstar_qwen); None: the family publishes none mirage knows.
    prompt_family: str | None = None

    # --- the visual path -------------------------------------------------------------------
    def process_images(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        """The model's real (non-differentiable, uint8 PIL) processor: images -> `processed`."""
        raise NotImplementedError

    def preprocess(self, pixels: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Differentiable twin of `process_images`: [B, 3, H, W] in [0, 1] -> `processed` (for `names` only)."""
        raise NotImplementedError

    def encode(self, processed: dict[str, Tensor]) -> dict[str, Tensor]:
        """Run the encoders given inputs: `processed` -> `features`."""
        raise NotImplementedError

    def connect(self, features: dict[str, Tensor]) -> Tensor:
        """The connector (projector or aggregator): `features` -> `tokens` [B, N, D_lm]."""
        raise NotImplementedError

    def to_tokens(self, visual: Visual) -> Tensor:
        """Advance a visual input from its stage to image tokens."""
        if visual.stage in (NONE, SOFT):
            raise ValueError(f"a `{visual.stage}` visual has no image tokens: the model reads the text-only prompt")
        v = visual.value
        if visual.stage == IMAGES:
            v = self.process_images(v)
        if visual.stage == "pixels":
            v = self.preprocess(v)
        if visual.stage in (IMAGES, "pixels", "processed"):
            v = self.encode(v)
        if visual.stage != "tokens":
            v = self.connect(v)
        return v

    def visual_from_images(self, images: Sequence[Image.Image | Sequence[Image.Image]]) -> Visual:
        """Real images through the real processor, ready for `choice_logits`. A row may hold several images (a list,
        for a model with `max_images` > 1): they stay images, processed where the prompts are built."""
        if any(isinstance(im, (list, tuple)) for im in images):
            return Visual(IMAGES, list(images))
        return Visual("processed", self.process_images(images))

    # --- answers ---------------------------------------------------------------------------
    def next_token_logits(self, prompts: Sequence[str], visual: Visual) -> Tensor:
        """The LM's logits for the token after each prompt (the answer's first token): [B, V], float32."""
        raise NotImplementedError

    def letter_ids(self, n: int) -> list[int]:
        """Token ids of the first `n` answer letters (A, B, ...) as the model writes them after the prompt."""
        raise NotImplementedError

    def choice_logits(self, prompts: Sequence[str], visual: Visual, n_choices: Sequence[int]) -> Tensor:
        """Next-token logits of the answer letters after each prompt: [B, max(n_choices)], -inf past a question's n."""
        return letter_logits(self, self.next_token_logits(prompts, visual), n_choices)

    def answer_loss(self, prompts: Sequence[str], visual: Visual, targets: Sequence[str]) -> Tensor:
        """Teacher-forcing cross-entropy of each target answer text, mean over its tokens: [B]."""
        raise NotImplementedError

    def generate(self, prompts: Sequence[str], visual: Visual, max_new_tokens: int = 8) -> list[str]:
        """Greedy free-form answers."""
        raise NotImplementedError

    def input_embeddings(self) -> nn.Embedding:
        """The LM's token embeddings (a soft prompt's width and starting scale come from them)."""
        raise NotImplementedError

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of `prompt` the tokenizer can only map to its unknown token (a byte-level tokenizer has none)."""
        return []

    # --- memory switches: each backend names its parts, the switches act on them -----------------
    def checkpointed_parts(self) -> list[nn.Module]:
        """The transformers modules whose activations gradient checkpointing recomputes (the LM, the encoders);
        none by default."""
        return []

    def separate_encoders(self) -> dict[str, nn.Module]:
        """Encoders held apart from the LM, by name, that can be moved to the CPU when an input bypasses them;
        none by default (a transformers VLM keeps its tower inside)."""
        return {}

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Recompute activations in the backward pass (on) or keep them (off); training mode while on, since
        transformers checkpoints only then (these models have no dropout)."""
        for m in self.checkpointed_parts():
            inner = getattr(m, "model", m)
            if not getattr(inner, "supports_gradient_checkpointing", False):
                continue
            if on:
                kwargs = {"use_reentrant": False}  # inputs that need no grad must still get their gradients
                if hasattr(inner, "activation_checkpointing_enable"):  # transformers >= 5.2x's name
                    inner.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
                else:
                    inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
            else:
                (getattr(inner, "activation_checkpointing_disable", None) or inner.gradient_checkpointing_disable)()
        self.train(on)

    def offload_encoders(self, keep: Sequence[str]) -> None:
        """Move the separate encoders not in `keep` to the CPU (`onload_encoders` brings them back)."""
        for name, tower in self.separate_encoders().items():
            if name not in keep:
                tower.to("cpu")

    def onload_encoders(self) -> None:
        for tower in self.separate_encoders().values():
            tower.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
