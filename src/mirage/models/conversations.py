"""Official conversations: the prompts the models' own evaluation code builds, where it is not the hub chat template
(one owner for every backend). Each family's choices: "hf" (the processor's chat template) and the official ones.

* `vicuna_v1` (LLaVA-1.5): haotian-liu/LLaVA `llava/conversation.py` `conv_vicuna_v1` (SeparatorStyle.TWO, sep " ",
  sep2 "</s>"), as `llava/eval/model_vqa_loader.py` fills it (`<image>\\n` + question, then the assistant's empty
  turn); its published numbers were computed with it.
* `qwen_1_5` (LLaVA-OneVision): LLaVA-VL/LLaVA-NeXT `llava/conversation.py` `conv_qwen` (SeparatorStyle.CHATML, sep
  "<|im_end|>", system "<|im_start|>system\\nYou are a helpful assistant."), as lmms-eval's `llava_onevision` model
  fills it (`conv_template="qwen_1_5"`, `<image>\\n` + question) for the published numbers.
* `internvl2_5` (InternVL2.5, InternVL3): OpenGVLab/InternVL `internvl/conversation.py` `internvl2_5`
  (SeparatorStyle.MPT, sep "<|im_end|>\\n", its system message), as the models' `chat()` fills it (`<image>\\n` +
  question; the placeholder becomes `<img>`, the image's context tokens, `</img>`, which the -hf processor's
  expansion of `<IMG_CONTEXT>` writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .chat import IMAGE_MARKER


@dataclass(frozen=True)
class Conversation:
    """`asked(prompt, image_token)`: the text ready for the answer (image_token "" for the text-only turn);
    `answered(prompt, image_token, answer)`: the same with the assistant's answer written as the code writes it."""

    families: tuple[str, ...]
    asked: Callable[[str, str], str]
    answered: Callable[[str, str, str], str]


def _user(prompt: str, image_token: str) -> str:
    if IMAGE_MARKER in prompt:  # the image where the benchmark's text places it, as lmms-eval's llava keeps it there
        return prompt.replace(IMAGE_MARKER, image_token)  # the text-only turn: the marker left out
    return f"{image_token}\n{prompt}" if image_token else prompt


VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the user's questions.")
QWEN_1_5_SYSTEM = "<|im_start|>system\nYou are a helpful assistant."
INTERNVL_SYSTEM = "<|im_start|>system\n你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"

OFFICIAL = {
    "vicuna_v1": Conversation(
        ("llava",),
        lambda p, im: f"{VICUNA_V1_SYSTEM} USER: {_user(p, im)} ASSISTANT:",
        lambda p, im, a: f"{VICUNA_V1_SYSTEM} USER: {_user(p, im)} ASSISTANT: {a}</s>"),
    "qwen_1_5": Conversation(
        ("llava_onevision",),
        lambda p, im: f"{QWEN_1_5_SYSTEM}<|im_end|>\n<|im_start|>user\n{_user(p, im)}<|im_end|>\n<|im_start|>assistant\n",
        lambda p, im, a: f"{QWEN_1_5_SYSTEM}<|im_end|>\n<|im_start|>user\n{_user(p, im)}<|im_end|>\n"
                         f"<|im_start|>assistant\n{a}<|im_end|>\n"),
    "internvl2_5": Conversation(
        ("internvl",),
        lambda p, im: f"{INTERNVL_SYSTEM}<|im_end|>\n<|im_start|>user\n{_user(p, im)}<|im_end|>\n<|im_start|>assistant\n",
        lambda p, im, a: f"{INTERNVL_SYSTEM}<|im_end|>\n<|im_start|>user\n{_user(p, im)}<|im_end|>\n"
                         f"<|im_start|>assistant\n{a}<|im_end|>\n"),
}
DEFAULT = {"llava": "vicuna_v1"}  # where the official conversation is the default (the published numbers)


def choices(kind: str) -> list[str]:
    """The conversations a model type takes: "hf" and its official ones."""
    return ["hf", *(name for name, c in OFFICIAL.items() if kind in c.families)]


def pick(kind: str, name: str | None) -> str:
    """The conversation to run (`name`, else the family's default); an unknown one is refused naming the choices."""
    name = name or DEFAULT.get(kind, "hf")
    if name not in choices(kind):
        raise ValueError(f"conversation {name!r} does not apply to {kind!r} (its choices: {', '.join(choices(kind))}; "
                         "hf: the processor's chat template)")
    return name
