"""Chat text -> token ids, owned here once for every backend: the ids the model's own processor gives, and the
answer letters as the model's template writes them.

The rule (transformers' `ProcessorMixin.apply_chat_template(..., tokenize=True)`): the tokenizer adds its special
tokens (its BOS) unless the rendered text already starts with the BOS, so a sequence holds the BOS once whether the
template writes it (Gemma 3, Idefics3, Mistral 3, Llama 3) or not (llava-hf's LLaVA-1.5, whose official runner also
starts with `<s>`).
"""

from __future__ import annotations

from typing import Callable, Sequence


# Where a benchmark's text places an image of a question with several (lmms-eval keeps these in doc_to_text).
IMAGE_MARKER = "<image>"


def image_turn(prompt: str, answer: str | None = None, image: bool | int = True) -> list[dict]:
    """One user turn holding the image (none when `image` is False: the text-only turn of the `none` condition),
    then the prompt, as transformers chat templates take it; with `answer`, followed by the assistant's turn.
    `image` an int: that many images, each where the prompt holds an `<image>` marker (the marker replaced by it),
    or all before the prompt when it holds none; no image: the markers are left out."""
    n = int(image)
    if not n:  # the text-only turn: no image, and no marker where one would stand
        prompt = prompt.replace(IMAGE_MARKER, "")
    markers = prompt.count(IMAGE_MARKER)
    if markers and markers != n:
        raise ValueError(f"the prompt holds {markers} {IMAGE_MARKER} marker(s) for {n} image(s)")
    if markers:
        parts = prompt.split(IMAGE_MARKER)
        content = [{"type": "text", "text": parts[0]}] * bool(parts[0])
        for text in parts[1:]:
            content += [{"type": "image"}] + [{"type": "text", "text": text}] * bool(text)
    else:
        content = [{"type": "image"}] * n + [{"type": "text", "text": prompt}]
    turns = [{"role": "user", "content": content}]
    if answer is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return turns


def adds_special_tokens(tokenizer, text: str) -> bool:
    """Whether the processor lets the tokenizer add its special tokens to `text`: not when the text (the chat
    template) already starts with the tokenizer's BOS."""
    bos = tokenizer.bos_token
    return not (bos and text.startswith(bos))


def chat_ids(tokenizer, text: str) -> list[int]:
    """A rendered chat text's token ids exactly as the model's processor tokenizes it (the BOS once)."""
    return tokenizer(text, add_special_tokens=adds_special_tokens(tokenizer, text)).input_ids


def answer_ids(ids: Callable[[str], list[int]], asked: str, answered: Sequence[str],
               answers: Sequence[str]) -> list[int]:
    """The first token the model writes for each answer after the generation prompt: `asked` is the chat text ready
    for the assistant's turn, `answered[i]` the same conversation with the assistant's turn answering `answers[i]`,
    `ids` the model's chat text -> token ids (its processor's).

    Where the answered turn starts with the generation prompt, the answer is read as the template writes it after
    it, separator included (" A" after llava's "ASSISTANT:", "A" after Qwen's "assistant\\n", Mistral 3's "[/INST]"
    or Llama 3's "<|end_header_id|>"). Where it does not (llava-onevision's template writes every turn as
    "<|im_start|>assistant " but prompts with "<|im_start|>assistant\\n"), the template's turn header is not what
    the model reads before answering: the answer follows the generation prompt as written from its first character."""
    base = ids(asked)
    out = []
    for text, a in zip(answered, answers):
        if text.startswith(asked):
            rest = text[len(asked):]
        else:
            common = next((i for i, (x, y) in enumerate(zip(asked, text)) if x != y), min(len(asked), len(text)))
            at = text.find(a, common)
            if at < 0:
                raise ValueError(f"cannot find the answer {a!r} in the chat template's assistant turn ({text!r})")
            rest = text[at:]
        full = ids(asked + rest)
        if full[: len(base)] != base or len(full) <= len(base):
            raise ValueError(f"cannot find the token of answer {a!r}: the tokenizer merges it with the generation "
                             f"prompt ({asked + rest!r} after {asked!r})")
        out.append(full[len(base)])
    return out


def content_start(ids_of: Callable[[str], list[int]], chat_text: Callable[[str], str]) -> int:
    """Where the user's content begins in the ids (`ids_of`, the model's tokenization of a chat text) of
    `chat_text(prompt)`, the text-only turn, the same for every prompt: the ids two probe prompts share (the answer
    letters A and B, which every tokenizer here knows)."""
    a, b = ids_of(chat_text("A")), ids_of(chat_text("B"))
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n
