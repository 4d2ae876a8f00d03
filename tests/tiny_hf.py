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


def word_tokenizer(special: list[str], **tokens) -> tuple[PreTrainedTokenizerFast, dict]:
    """A word-level tokenizer: `special` first (ids 0..), then the letters A-J, then the test prompts' words."""
    vocab = {t: i for i, t in enumerate([*special, *"ABCDEFGHIJ", *WORDS])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **tokens), vocab


def to_tensor(im: Image.Image) -> torch.Tensor:
    """A PIL image as [1, 3, H, W] floats in [0, 1]."""
    return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
