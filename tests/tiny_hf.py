"""Tiny transformers VLMs for the generic-path tests: a word-level tokenizer that knows the test prompts' words,
saved with a processor and chat template so that `hf:DIR` loads them as a hub checkpoint (no downloads)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

WORDS = ("USER ASSISTANT User Assistant user assistant model : . ? , ( ) Answer with the option ' s letter from given choices "
         "directly which of these what is a an").split()


# llava-hf/llava-1.5-7b-hf's chat template (its chat_template.json): images first, then the text
LLAVA_CHAT = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
              "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
              "{{ '<image>\n' }}{% endfor %}{% if message['role'] != 'assistant' %}"
              "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
              "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
              "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
# the Qwen2-VL family's turn format (Qwen/Qwen2.5-VL-3B-Instruct's template without its system turn): an image is
# <|vision_start|><|image_pad|><|vision_end|> where the content places it
QWEN_CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
             "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
             "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QWEN_SPECIAL = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]


def word_tokenizer(special: list[str], **tokens) -> tuple[PreTrainedTokenizerFast, dict]:
    """A word-level tokenizer: `special` first (ids 0..), then the letters A-J, then the test prompts' words."""
    vocab = {t: i for i, t in enumerate([*special, *"ABCDEFGHIJ", *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **tokens), vocab


def to_tensor(im: Image.Image) -> torch.Tensor:
    """A PIL image as [1, 3, H, W] floats in [0, 1]."""
    return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
