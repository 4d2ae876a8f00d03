"""The demo model's word-level tokenizer (a `tokenizers` WordLevel model) and its chat template."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

from ...benchmarks.question import LETTERS

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<|end|>", "<|user|>", "<|assistant|>", IMAGE_TOKEN]

# Messages as in transformers' multimodal chat format: content is text or a list of {"type": "image"|"text"}.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}{{ ' <|' + m['role'] + '|>' }}"
    "{% if m['content'] is string %}{{ ' ' + m['content'] }}"
    "{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ ' <image>' }}{% else %}{{ ' ' + c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if m['role'] == 'assistant' %}{{ ' <|end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' <|assistant|>' }}{% endif %}"
)


def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` plus special tokens, letters A-J and punctuation."""
    vocab: dict[str, int] = {}
    for tok in [*SPECIAL_TOKENS, *LETTERS[:10], "?", ".", ",", ":", *words]:
        vocab.setdefault(tok, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<|end|>", unk_token="<unk>", pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>", IMAGE_TOKEN],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def chat_prompt(tokenizer: PreTrainedTokenizerFast, text: str, image: bool = True) -> str:
    """One user turn holding the image (unless `image` is False) and `text`, ready for the assistant's answer."""
    content = [{"type": "image"}] if image else []
    messages = [{"role": "user", "content": content + [{"type": "text", "text": text}]}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
