"""Optimizable inputs (parameterizations only), one file each: `features`, `pixels` (under one of `pixel_params`:
raw / sigmoid / fourier), `tokens`, `soft-prompt` (free vectors in the text-only prompt: the control with no image),
`patch` (pasted onto real images) and `generator` (conditioned on the question).
The last two are trained by their own experiments (`mirage.experiments.OWN_LOOPS`), the others by `optimize`'s loops."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ..benchmarks.question import Benchmark
from ..errors import UsageError
from ..models.vlm import VLM
from ..registry import Registry, did_you_mean
from .base import Input
from .features import FeatureInput
from .pixel_params import PIXEL_PARAMS, PixelParam
from .pixels import PARAMS, PixelInput
from .soft_prompt import SoftPromptInput
from .tokens import TokenInput

INPUTS: Registry = Registry("input")
# pixels: each parameterization's own `lr` (`pixel_params`)
DEFAULT_LR = {"features": 0.1, "tokens": 0.01, "soft-prompt": 0.01, "patch": 0.1, "generator": 3e-4}


@dataclass
class Reference:
    """What inputs are initialised from: the scale of real features and tokens, and the blank image's features."""

    feature_scale: dict[str, tuple[float, float]]
    token_scale: tuple[float, float]
    token_shape: tuple[int, int]
    blank_features: dict[str, torch.Tensor]

    @classmethod
    @torch.no_grad()
    def from_benchmark(cls, model: VLM, bench: Benchmark, n: int = 16) -> "Reference":
        """Statistics of the model's features on the real images of the first `n` questions of `bench`'s whole
        split (`split_questions`; none for a text model), not of the questions asked: `--limit N` starts its
        inputs as the full run does, and a run grown by a larger --limit starts its new questions' inputs as it
        started its first ones. An image that cannot be decoded (`Benchmark.readable`) is passed over."""
        # a text model (the soft-prompt control on `--text-model`): nothing visual. A VLM with no encoders to expose
        # (mllama's cross-attention) goes on, so that `encode` refuses it by name
        if not model.encoders and model.soft_prompts:
            return cls({}, (0.0, 1.0), (0, 0), {})
        images = [im for q in bench.split_questions[:n] if q.images for im in [_readable_image(q)] if im is not None]
        size = images[0].size if images else (224, 224)
        blank_image = Image.new("RGB", size, (128, 128, 128))
        # a benchmark with no image at all (text only): the blank image's own statistics
        feats = model.encode(model.process_images(images or [blank_image]))
        tokens = model.connect(feats)
        blank = model.encode(model.process_images([blank_image]))
        return cls({k: (float(v.mean()), float(v.std())) for k, v in feats.items()},
                   (float(tokens.mean()), float(tokens.std())), tuple(tokens.shape[1:]), blank)


def _readable_image(question):
    from ..benchmarks.question import ImageLoadError

    try:
        return question.image()
    except ImageLoadError:
        return None


def check_encoders(model: VLM, names: list[str] | None, flag: str) -> None:
    """Refuse encoder names the model does not have, naming the flag."""
    allowed = [s.name for s in model.encoders]
    for n in names or []:
        if n not in allowed:
            raise UsageError(f"{flag}: {did_you_mean('encoder', n, allowed)}")


# features, pixels and tokens take `images` rows per slot (one per image of a several-image question)
@INPUTS.register("features")
def _features(model: VLM, slots: int, ref: Reference, encoders=None, detach=None, seed: int = 0, images: int = 1,
              **_) -> Input:
    check_encoders(model, encoders, "--encoders")
    check_encoders(model, detach, "--detach")
    return FeatureInput(model, slots, ref.feature_scale, ref.blank_features, encoders, detach, seed, images)


@INPUTS.register("pixels")
def _pixels(model: VLM, slots: int, ref: Reference, param: str = "sigmoid", resolution=None, quantize=False,
            encoders=None, seed: int = 0, images: int = 1, **_) -> Input:
    check_encoders(model, encoders, "--encoders")
    return PixelInput(model, slots, resolution, param, quantize, seed, encoders, ref.blank_features, images)


@INPUTS.register("tokens")
def _tokens(model: VLM, slots: int, ref: Reference, seed: int = 0, images: int = 1, **_) -> Input:
    return TokenInput(model, slots, ref.token_shape, ref.token_scale, seed, images)


@INPUTS.register("soft-prompt")
def _soft_prompt(model: VLM, slots: int, ref: Reference, soft_tokens: int | None = None, seed: int = 0,
                 **_) -> Input:
    if not model.soft_prompts:
        raise UsageError(f"--input soft-prompt: {type(model).__name__}'s text path takes no soft prompt yet (the demo, "
                         "LLaVA-1.5 and a --text-model do)")
    n = soft_tokens or getattr(model, "num_image_tokens", None)
    if not n:
        raise UsageError("--input soft-prompt: a text model has no image tokens to count: give --soft-tokens N "
                         "(the VLM's image tokens, to compare with its crafted inputs)")
    return SoftPromptInput(model, slots, n, seed)


@INPUTS.register("patch")
def _patch(model: VLM, slots: int, ref: Reference, size: int | None = None, seed: int = 0, **_) -> Input:
    from .patch import PatchInput

    return PatchInput(model, slots, size, seed)


@INPUTS.register("generator")
def _generator(model: VLM, slots: int, ref: Reference, generator=None, seed: int = 0, **_) -> Input:
    from .generator import GeneratorInput  # imports diffusers only when a generator is asked for

    return GeneratorInput(model, 1, generator, seed)


MULTI_IMAGE = ("features", "pixels", "tokens")  # the inputs that hold one row per image of a several-image question


def build_input(kind: str, model: VLM, slots: int, ref: Reference, images: int = 1, **options) -> Input:
    """An input of `kind` with `slots` parameter slots of `images` images each, on the model's device."""
    if images > 1 and kind not in MULTI_IMAGE:
        raise UsageError(f"--input {kind}: one input per image of a several-image question is built for "
                         f"{', '.join(MULTI_IMAGE)} only")
    return INPUTS.get(kind)(model, slots, ref, images=images, **options).to(model.device)


def default_lr(kind: str, param: str = "sigmoid") -> float:
    return PIXEL_PARAMS.get(param).lr if kind == "pixels" else DEFAULT_LR[kind]


__all__ = ["INPUTS", "MULTI_IMAGE", "PARAMS", "PIXEL_PARAMS", "FeatureInput", "Input", "PixelInput", "PixelParam",
           "Reference",
           "SoftPromptInput", "TokenInput", "build_input", "check_encoders", "default_lr"]
