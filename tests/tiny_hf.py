"""Tiny transformers VLMs for the tests: a word-level tokenizer that knows the test prompts' words, and tiny BPE
tokenizers (SentencePiece-style and byte-level) learned from the ScienceQA fixture, of the classes the hub files load
as; saved with a processor and chat template so that `hf:DIR` loads them as a hub checkpoint (no downloads)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

# llava-hf/llava-onevision-qwen2-0.5b-ov-hf's chat_template.json, as quoted in transformers'
# tests/models/llava_onevision/test_processing_llava_onevision.py: every turn opens with "<|im_start|>role " (a space),
# the generation prompt with "<|im_start|>assistant\n"
ONEVISION = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}"
             "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
             "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
             "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
             "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\\n' + content['text'] }}"
             "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
             "{% generation %}{{ '\\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

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


def _corpus(extra: str = "") -> list[str]:
    """Text to learn a tiny BPE from: the ScienceQA fixture's questions, choices, lectures and solutions, the
    benchmark prompts' words and the chat templates' words."""
    import pyarrow.parquet as pq

    rows = pq.read_table("/work/shared/fixtures/scienceqa/data/test-00000-of-00001.parquet").to_pylist()
    text = [" ".join([r["question"], *r["choices"], r["hint"] or "", r["lecture"] or "", r["solution"] or ""])
            for r in rows]
    return [*text, " ".join(WORDS), "Answer with the option's letter from the given choices directly.",
            "USER: ASSISTANT: User: Assistant: user assistant model system A chat between a curious user", extra]


def bpe_pieces(pre_tokenizer, vocab_size: int, alphabet: list[str] = ()) -> tuple[dict, list]:
    """A BPE vocabulary and merges learned on `_corpus` after `pre_tokenizer`."""
    import json

    from tokenizers import models, trainers

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizer
    t.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=list(alphabet),
                                                         show_progress=False))
    model = json.loads(t.to_str())["model"]
    return model["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def sentencepiece_bpe(cls, head: list[str], **kwargs):
    """A Llama-style tokenizer (SentencePiece BPE with byte fallback: `head` tokens first, then <0x00>..<0xFF>, then
    merged pieces with ▁ for spaces) of class `cls` (LlamaTokenizer, GemmaTokenizer), learned on `_corpus`;
    `kwargs` are the published tokenizer_config's settings."""
    from tokenizers.pre_tokenizers import Metaspace

    learned, merges = bpe_pieces(Metaspace(), 500)
    vocab = {t: i for i, t in enumerate([*head, *(f"<0x{b:02X}>" for b in range(256))])}
    for t in sorted(learned, key=learned.get):
        vocab.setdefault(t, len(vocab))
    return cls(vocab=vocab, merges=merges, **kwargs)


def byte_level_bpe(cls, **kwargs):
    """A GPT-2-style byte-level BPE tokenizer (Qwen2, SmolLM, Llama 3, tekken) of class `cls`, learned on `_corpus`;
    special tokens come after the learned ones, as in those vocabularies."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab, merges = bpe_pieces(ByteLevel(add_prefix_space=False), 600, ByteLevel.alphabet())
    return cls(vocab=vocab, merges=merges, **kwargs)
