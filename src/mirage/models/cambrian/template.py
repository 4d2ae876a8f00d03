"""Cambrian-1-8B's `llama_3` conversation template and the tokens it implies.

Verified against cambrian-mllm/cambrian (commit 539ffc3): `cambrian/conversation.py` (conv_llama_3: its system
prompt and the LLAMA_3 separator style, with no newline after `<|end_header_id|>`), `inference.py` and
`eval/eval/*/..._eval.py` (conv_mode "llama_3" for cambrian-8b, `<image>\\n` before the question) and
`cambrian/mm_utils.py` (`tokenizer_image_token`: each text chunk is tokenized with the tokenizer's own
`<|begin_of_text|>`, kept on the first chunk only, so the sequence starts with two of them: the template writes one).
"""

from __future__ import annotations

from typing import Sequence

IMAGE_TOKEN = "<image>"
BOS = "<|begin_of_text|>"
SYSTEM = ("You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. \n"
          "    As a multimodal AI, you have the ability to process and analyze images. Whenever an image is present in "
          "the conversation, very carefully examine it and consider its content when formulating your response.\n"
          "    You should give concise responses to very simple questions, but provide thorough responses to more "
          "complex and open-ended questions. ")
SPECIAL_TOKENS = [BOS, "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def llama_3_prompt(question: str, image: bool = True) -> str:
    """One user turn with the image before `question`, ready for the assistant's answer (token for token what
    official inference feeds the model: the tokenizer's BOS, then the template's). `image=False`: the question
    alone, as official inference builds a turn without an image (no `<image>\\n`)."""
    header = lambda role: f"<|start_header_id|>{role}<|end_header_id|>"
    placeholder = f"{IMAGE_TOKEN}\n" if image else ""
    return (f"{BOS}{BOS}{header('system')}{SYSTEM}<|eot_id|>"
            f"{header('user')}{placeholder}{question}<|eot_id|>{header('assistant')}")


def ensure_image_token(tokenizer) -> int:
    """The id of `<image>`, added as a special token when the tokenizer lacks it (Llama-3's does: the official code
    splits the prompt at `<image>` instead). Its id may lie past the LM's vocabulary: the model never embeds it."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


def llama_3_answered(question: str, answer: str) -> str:
    """`llama_3_prompt` followed by the assistant's turn answering `answer`, as conv_llama_3 writes it: the answer
    directly after `<|end_header_id|>`, with no space or newline."""
    return f"{llama_3_prompt(question)}{answer}<|eot_id|>"


def word_level_tokenizer(words: Sequence[str]):
    """A word-level tokenizer with Llama-3's special tokens, `<image>` and every answer letter as tokens, over
    `words`: for tests and benchmarks that build Cambrian-shaped models without the hub's Llama-3 tokenizer."""
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    from ...benchmarks.question import LETTERS

    vocab: dict[str, int] = {}
    for t in ["<unk>", *SPECIAL_TOKENS, IMAGE_TOKEN, *LETTERS, *".,?:'()", *words]:
        vocab.setdefault(t, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=SPECIAL_TOKENS[0], eos_token="<|eot_id|>",
                                   unk_token="<unk>", additional_special_tokens=[*SPECIAL_TOKENS[1:], IMAGE_TOKEN])
