"""A text-only causal LM behind the VLM interface, for MMStar's S_t (`--text-model`): it scores the same prompts as
a VLM's `none` condition, as text, through its own chat template's text-only turn (or the bare prompt when it has
none). It takes only the `none` visual (a text model sees no image) and a `soft` one: free vectors at the start of the
user turn's content, as on a VLM's text-only path (the soft-prompt control).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..errors import MirageError
from .chat import adds_special_tokens, chat_ids, content_start
from .spliced import chat_letter_ids, place_soft, soft_sequences
from .vlm import NONE, SOFT, VLM, Visual, on_device

DEMO_TEXT_LM = Path(__file__).parent / "demo" / "weights" / "text-lm"


class TextLM(VLM):
    """A transformers `AutoModelForCausalLM` and its tokenizer."""

    encoders: list = []
    soft_prompts = True

    def __init__(self, model, tokenizer, name: str = ""):
        super().__init__()
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.tokenizer.padding_side = "left"
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self._positions = "position_ids" in inspect.signature(model.forward).parameters

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def chat_text(self, prompt: str, image: bool = False) -> str:
        """The text-only user turn of the LM's chat template, ready for the answer; the bare prompt without one."""
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def answered_text(self, prompt: str, answer: str) -> str:
        """`chat_text` followed by the assistant's turn answering `answer` (where the letters are read)."""
        if not self.chat:
            return f"{prompt} {answer}"
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)

    def input_embeddings(self):
        return self.model.get_input_embeddings()

    def checkpointed_parts(self) -> list:
        return [self.model]  # `--grad-checkpointing` for a soft prompt optimized on the base LLM

    def _inputs(self, prompts: Sequence[str], visual: Visual) -> dict:
        if visual.stage == SOFT:
            return self._soft_inputs(prompts, visual.value)
        if visual.stage != NONE:
            raise ValueError(f"{self.name}: a text model takes no visual input (got stage {visual.stage!r}); "
                             "it scores the `none` prompts (or a soft prompt)")
        texts = [self.chat_text(p) for p in prompts]
        # the BOS once, as a processor tokenizes (models/chat.py): added unless the template already wrote it
        batch = self.tokenizer(texts, add_special_tokens=adds_special_tokens(self.tokenizer, texts[0]), padding=True,
                               return_tensors="pt")
        out = {"input_ids": on_device(batch["input_ids"], self.device),
               "attention_mask": on_device(batch["attention_mask"], self.device)}
        if self._positions:  # left padding must not shift positions
            out["position_ids"] = (out["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        return out

    def _soft_inputs(self, prompts: Sequence[str], vectors: Tensor) -> dict:
        """The `none` prompts' ids (the BOS once, as `_inputs`) with the soft vectors [B, N, D] where the user's
        content starts, as input embeddings."""
        if "_content_start" not in self.__dict__:
            self._content_start = content_start(lambda text: chat_ids(self.tokenizer, text), self.chat_text)
        ids = [chat_ids(self.tokenizer, self.chat_text(p)) for p in prompts]
        input_ids, mask, _, where = soft_sequences(self.tokenizer, ids, self._content_start, vectors.shape[1])
        input_ids, mask, where = (on_device(t, self.device) for t in (input_ids, mask, where))
        out = {"inputs_embeds": place_soft(self.model.get_input_embeddings()(input_ids), where, vectors),
               "attention_mask": mask}
        if self._positions:
            out["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        return out

    def next_token_logits(self, prompts: Sequence[str], visual: Visual) -> Tensor:
        return self.model(**self._inputs(prompts, visual), use_cache=False).logits[:, -1].float()

    def letter_ids(self, n: int) -> list[int]:
        return chat_letter_ids(self, n)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], visual: Visual, max_new_tokens: int = 8) -> list[str]:
        inputs = self._inputs(prompts, visual)
        inputs.pop("position_ids", None)  # generate derives them from the mask
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :] if "input_ids" in inputs else out  # embeds: new tokens only
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def check_text_model(spec: str | None, model: str) -> None:
    """The demo's base LM knows ShapesQA's words only: beside another VLM it would score prompts it cannot read."""
    from ..errors import UsageError

    if spec and spec.partition(":")[0] == "demo" and model.partition(":")[0] != "demo":
        raise UsageError(f"--text-model {spec}: the demo's base LM reads only ShapesQA's words, not {model}'s "
                         "prompts; give the base LLM of that model (hf:<hub id or directory>)")


def load_text_model(spec: str, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None) -> TextLM:
    """`demo` (the demo's base LM shipped beside its weights) or `hf:<hub id or directory>` (any causal LM); fp32 on
    CPU, bf16 on GPU unless `dtype`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, _, path = spec.partition(":")
    if name == "demo":
        path = path or str(DEMO_TEXT_LM)
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"--text-model {spec!r}: no base LM at {path!r} (write one with "
                                    "`mirage train-demo-text --out DIR`, then --text-model demo:DIR)")
    elif name != "hf" or not path:
        raise MirageError(f"--text-model {spec!r}: give demo, demo:DIR or hf:<hub id or directory> (a causal LM)")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from . import parse_device
    from .hf import unreadable

    device = parse_device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        kind = AutoConfig.from_pretrained(path).model_type
        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:  # transformers' own refusal lists every config class
            raise MirageError(f"--text-model {spec}: a {kind!r} model is not a causal language model; give the base "
                              "LLM the VLM was built on (e.g. hf:lmsys/vicuna-7b-v1.5 for LLaVA-1.5)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise unreadable(f"--text-model {spec}", path, e) from None
    lm = TextLM(model, tokenizer, spec)
    lm.name_or_path = spec
    return lm
