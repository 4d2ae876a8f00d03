"""Every supported family through the commands a user types, on tiny random models whose chat template, tokenizer
settings and processor configuration are the families' published hub files (each says where it was copied from);
only the sizes (layers, widths, image and patch sizes) are shrunk. `real` and `none` letter logits equal
transformers' own processor + forward."""

import json

import pytest
import torch
from tiny_hf import ONEVISION, byte_level_bpe, sentencepiece_bpe
from transformers import AddedToken
from typer.testing import CliRunner

from mirage.cli import app
from mirage.models import Visual, load_model

SQA = ["--benchmark", "scienceqa", "--data-dir", "/work/shared/fixtures/scienceqa"]
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # OpenAI CLIP's
GRID = [[32, 64], [64, 32], [64, 64]]  # image_grid_pinpoints at 32 px tiles (published: multiples of 336 or 384)

# llava-hf/llava-1.5-7b-hf's chat_template.json (as openvino.genai's tokenizer.cpp quotes it for "llava-1.5,
# llava-v1.6-vicuna (chat_template.json)"; transformers' docs show the same prompt)
LLAVA = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
         "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
         "{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in "
         "message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}"
         "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
         "{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}"
         "{{ 'ASSISTANT:' }}{% endif %}")
# llava-hf/llava-v1.6-mistral-7b-hf's chat_template.json (openvino.genai's tokenizer.cpp: "tiny-random-llava-next,
# llava-v1.6-mistral (chat_template.json)")
LLAVA_NEXT = ("{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'][0]"
              "['text'] + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first "
              "#}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}"
              "{% endfor %}{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', "
              "'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
              "{{ ' ' + message['content'][0]['text'] + '<\\\\s> '}}{% else %}{{ raise_exception('Only user and assistant "
              "roles are supported!') }}{% endif %}{% endfor %}")
# google/gemma-3-4b-it's chat template (transformers' tests/models/gemma3/test_processing_gemma3.py)
GEMMA3 = ("{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- set first_user_prefix = messages[0]['content']"
          "[0]['text'] + '\n\n' -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix "
          "= \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if "
          "(message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must "
          "alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') "
          "-%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif "
          "-%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message["
          "'content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n"
          "        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                "
          "{{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}"
          "\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content "
          "type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    "
          "{{'<start_of_turn>model\n'}}\n{%- endif -%}\n")
# OpenGVLab/InternVL3-1B-hf's chat template (transformers' convert_internvl_weights_to_hf.py `chat_template`)
INTERNVL = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{% if message['content'] is string %}"
            "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
            "{{ '<IMG_CONTEXT>\\n' }}{% elif content['type'] == 'video' %}{{ '<video>\\n' }}{% elif content['type'] == "
            "'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\\n'}}{% endfor %}"
            "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n' }}{% endif %}")
# Qwen/Qwen2.5-VL-7B-Instruct's chat template (Qwen2-VL's; openvino.genai's tokenizer.cpp quotes Qwen2-VL-2B-Instruct's)
QWEN25 = ("{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
          "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
          "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
          "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
          "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
          "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
          "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
          "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
          "<|im_start|>assistant\n{% endif %}")
# Qwen/Qwen3-VL-*-Instruct: a single user turn renders "<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n",
# no default system prompt (its chat_template.jinja; the tool and thinking branches are not reached here)
QWEN3 = QWEN25.replace("{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
                       "assistant.<|im_end|>\n{% endif %}", "")

# HuggingFaceTB/SmolVLM-Instruct's chat template (quoted in transformers' tests/models/smolvlm/test_processing_smolvlm.py)
SMOLVLM = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] "
           "== 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == "
           "'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
           "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
# mistralai/Mistral-Small-3.1-24B-Instruct-2503's chat template (quoted in transformers'
# tests/models/mistral3/test_processing_mistral3.py): a default system prompt with today's date, no generation prompt
MISTRAL_SMALL = (
    "{%- set today = strftime_now(\"%Y-%m-%d\") %}\n{%- set default_system_message = \"You are Mistral Small 3, a Large "
    "Language Model (LLM) created by Mistral AI, a French startup headquartered in Paris.\\nYour knowledge base was last "
    "updated on 2023-10-01. The current date is \" + today + \".\\n\\nWhen you're not sure about some information, you say "
    "that you don't have the information and don't make up anything.\\nIf the user's question is not clear, ambiguous, or "
    "does not provide enough context for you to accurately answer the question, you do not try to answer it right away "
    "and you rather ask the user to clarify their request (e.g. \\\"What are some good restaurants around me?\\\" => "
    "\\\"Where are you?\\\" or \\\"When is the next flight to Tokyo\\\" => \\\"Where do you travel from?\\\")\" %}\n\n"
    "{{- bos_token }}\n\n{%- if messages[0]['role'] == 'system' %}\n    {%- if messages[0] is string %}\n        "
    "{%- set system_message = messages[0]['content'] %}\n        {%- set loop_messages = messages[1:] %}\n    {%- else %} "
    "\n        {%- set system_message = messages[0]['content'][0]['text'] %}\n        {%- set loop_messages = messages[1:] "
    "%}\n    {%- endif %}\n{%- else %}\n    {%- set system_message = default_system_message %}\n    {%- set loop_messages "
    "= messages %}\n{%- endif %}\n{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}\n\n{%- for message in "
    "loop_messages %}\n    {%- if message['role'] == 'user' %}\n            {%- if message['content'] is string %}\n"
    "            {{- '[INST]' + message['content'] + '[/INST]' }}\n            {%- else %}\n                    "
    "{{- '[INST]' }}\n                    {%- for block in message['content'] %}\n                            {%- if "
    "block['type'] == 'text' %}\n                                    {{- block['text'] }}\n                            "
    "{%- elif block['type'] == 'image' or block['type'] == 'image_url' %}\n                                    "
    "{{- '[IMG]' }}\n                                {%- else %}\n                                    {{- raise_exception("
    "'Only text and image blocks are supported in message content!') }}\n                                {%- endif %}\n"
    "                        {%- endfor %}\n                    {{- '[/INST]' }}\n                {%- endif %}\n    "
    "{%- elif message['role'] == 'system' %}\n        {{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "\n    {%- elif message['role'] == 'assistant' %}\n        {%- if message['content'] is string %}\n            "
    "{{- message['content'] + eos_token }}\n        {%- else %}\n            {{- message['content'][0]['text'] + "
    "eos_token }}\n        {%- endif %}\n    {%- else %}\n        {{- raise_exception('Only user, system and assistant "
    "roles are supported!') }}\n    {%- endif %}\n{%- endfor %}")




def _added(tok, tokens: list[str]) -> dict:
    """Special tokens added after the learned vocabulary, as the hub files list them; their ids."""
    tok.add_special_tokens({"additional_special_tokens": tokens})
    return {t: tok.convert_tokens_to_ids(t) for t in tokens}


def _vicuna(legacy: bool = False):
    """lmsys/vicuna-7b-v1.5's tokenizer_config (LlamaTokenizer, add_bos_token true, add_eos_token false, legacy
    false), with <image> and <pad> added as transformers' convert_llava_weights_to_hf.py adds them."""
    from transformers import LlamaTokenizer

    tok = sentencepiece_bpe(LlamaTokenizer, ["<unk>", "<s>", "</s>"], legacy=legacy, add_bos_token=True,
                            add_eos_token=False, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    n = len(tok)
    tok.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tok.add_special_tokens({"pad_token": "<pad>"})
    return tok, n


def llava(d, legacy: bool = False):
    """llava-hf/llava-1.5-7b-hf as transformers' convert_llava_weights_to_hf.py makes it: the official checkpoint's
    LM vocabulary, then <image> (32000) and <pad> (32001), embeddings resized to a multiple of 64; processor_config
    {"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1} and
    openai/clip-vit-large-patch14-336's preprocessor_config (shortest_edge 336, crop 336, bicubic, OpenAI mean/std),
    shrunk to 8 px patches of a 32 px image."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok, n = _vicuna(legacy)
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, resample=3,
                               image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA)
    model = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=CLIPVisionConfig(**VISION, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=n, **TEXT), image_token_index=n, pad_token_id=n + 1,
        vision_feature_layer=-2, vision_feature_select_strategy="default"))
    model.resize_token_embeddings(n + 2, pad_to_multiple_of=64)
    return model, processor


def llava_next(d):
    """llava-hf/llava-v1.6-mistral-7b-hf: Mistral-7B-Instruct-v0.2's tokenizer_config (LlamaTokenizer, add_bos_token
    true) with <image> and <pad> added by convert_llava_next_weights_to_hf.py; processor_config (patch_size 14,
    strategy default, one additional token); preprocessor_config (CLIP 336, image_grid_pinpoints of 336 multiples),
    shrunk to 8 px patches and 32 px tiles."""
    from transformers import (CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor,
                              MistralConfig)
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tok, n = _vicuna(legacy=True)  # Mistral-7B-Instruct-v0.2: LlamaTokenizer, add_bos_token true, legacy true
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, resample=3,
                                    image_mean=CLIP_MEAN, image_std=CLIP_STD, image_grid_pinpoints=GRID)
    processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=LLAVA_NEXT,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    model = LlavaNextForConditionalGeneration(LlavaNextConfig(
        vision_config=CLIPVisionConfig(**VISION, image_size=32, patch_size=8),
        text_config=MistralConfig(vocab_size=n + 2, pad_token_id=n + 1, head_dim=16, **TEXT), image_token_index=n,
        image_grid_pinpoints=GRID, vision_feature_layer=-2, vision_feature_select_strategy="default"))
    return model, processor


def llava_onevision(d):
    """llava-hf/llava-onevision-qwen2-0.5b-ov-hf: Qwen2's tokenizer (no BOS) with <image> and <video>;
    processor_config (num_image_tokens 729, vision_feature_select_strategy full); preprocessor_config (SigLIP 384,
    mean/std 0.5, bicubic, anyres_max_9 pinpoints), shrunk to a 32 px tile of 16 patches."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor,
                              Qwen2Config, Qwen2Tokenizer, SiglipVisionConfig)
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import \
        LlavaOnevisionImageProcessorPil

    from mirage.models.hf_generic import image_only

    tok = byte_level_bpe(Qwen2Tokenizer, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", extra_special_tokens={"image_token": "<image>",
                                                                          "video_token": "<video>"})
    ids = _added(tok, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"])
    ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=GRID, resample=3,
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = image_only(LlavaOnevisionProcessor)(image_processor=ip, tokenizer=tok, num_image_tokens=16,
                                                    vision_feature_select_strategy="full", chat_template=ONEVISION)
    model = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**VISION, image_size=32, patch_size=8),
        text_config=Qwen2Config(vocab_size=len(tok), pad_token_id=ids["<|endoftext|>"], **TEXT),
        image_token_id=ids["<image>"], video_token_id=ids["<video>"], image_grid_pinpoints=GRID,
        vision_feature_layer=-1, vision_feature_select_strategy="full"))
    return model, processor


def _gemma(extra: list[str], named: dict):
    """google/gemma-3-4b-it's and paligemma's tokenizer_config: GemmaTokenizer, add_bos_token true, <pad> <eos> <bos>
    <unk> first; `named`: its extra_special_tokens (image_token, boi_token, ...)."""
    from transformers import GemmaTokenizer

    tok = sentencepiece_bpe(GemmaTokenizer, ["<pad>", "<eos>", "<bos>", "<unk>"], add_bos_token=True,
                            add_eos_token=False, extra_special_tokens=named)
    return tok, _added(tok, extra)


def gemma3(d):
    """google/gemma-3-4b-it: processor_config {"image_seq_length": 256}, preprocessor_config (Gemma3ImageProcessor
    896 x 896, mean/std 0.5, bilinear, pan and scan off), shrunk to 32 px, 16 patches pooled to 4 tokens."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, Gemma3TextConfig,
                              SiglipVisionConfig)
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tok, ids = _gemma(["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"],
                      {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    ip = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, resample=2, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA3, image_seq_length=4)
    model = Gemma3ForConditionalGeneration(Gemma3Config(
        vision_config=SiglipVisionConfig(**VISION, image_size=32, patch_size=8), mm_tokens_per_image=4,
        image_token_id=ids["<image_soft_token>"], boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], text_config=Gemma3TextConfig(
            vocab_size=len(tok), head_dim=16, pad_token_id=0, sliding_window=512, **TEXT)))
    with torch.no_grad():  # initialised to zeros: every image would give the same (zero) tokens
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.2)
    return model, processor


def paligemma(d):
    """google/paligemma-3b-mix-224: no chat template; processor image_seq_length 256; preprocessor_config (SigLIP
    224, mean/std 0.5, bicubic), shrunk to 32 px and 16 tokens."""
    from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers import SiglipVisionConfig
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok, ids = _gemma(["<image>"], {"image_token": "<image>"})
    ip = SiglipImageProcessorPil(size={"height": 32, "width": 32}, resample=3, image_mean=[0.5] * 3,
                                 image_std=[0.5] * 3)
    ip.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    model = PaliGemmaForConditionalGeneration(PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**VISION, image_size=32, patch_size=8), image_token_id=ids["<image>"],
        projection_dim=32, text_config=GemmaConfig(vocab_size=len(tok), head_dim=16, pad_token_id=0, **TEXT)))
    return model, processor


IDEFICS_TOKENS = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
                  *(f"<row_{i}_col_{j}>" for i in (1, 2) for j in (1, 2))]


def idefics3(d):
    """HuggingFaceM4/Idefics3-8B-Llama3: Llama 3's byte-level tokenizer (BOS <|begin_of_text|>, added by its
    post-processor) and the processor's tokens; processor_config {"image_seq_len": 169}; preprocessor_config
    (longest_edge 1456, max_image_size 364, splitting, LANCZOS, mean/std 0.5), shrunk to a 64 px image of 32 px
    tiles."""
    from transformers import (GPT2Tokenizer, Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor,
                              Idefics3VisionConfig, LlamaConfig)
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok = byte_level_bpe(GPT2Tokenizer, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", unk_token=None,
                         add_bos_token=True)
    ids = _added(tok, ["<|begin_of_text|>", "<|end_of_text|>", *IDEFICS_TOKENS])
    ip = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, resample=1,
                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS3)
    model = Idefics3ForConditionalGeneration(Idefics3Config(
        vision_config=Idefics3VisionConfig(**VISION, image_size=32, patch_size=8), scale_factor=2,
        image_token_id=ids["<image>"], text_config=LlamaConfig(vocab_size=len(tok), **TEXT)))
    return model, processor


def smolvlm(d):
    """HuggingFaceTB/SmolVLM-Instruct: SmolLM2's byte-level tokenizer (bos <|im_start|>, which the template writes;
    eos <end_of_utterance>); processor_config {"image_seq_len": 81}; preprocessor_config (longest_edge 1536,
    max_image_size 384, splitting, LANCZOS, mean/std 0.5), shrunk to a 64 px image of 32 px tiles."""
    from transformers import GPT2Tokenizer, LlamaConfig, SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers import SmolVLMProcessor, SmolVLMVisionConfig
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from mirage.models.hf_generic import image_only

    tok = byte_level_bpe(GPT2Tokenizer, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                         unk_token="<|endoftext|>", pad_token="<|im_end|>")
    ids = _added(tok, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *IDEFICS_TOKENS])
    ip = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, resample=1,
                                  do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = image_only(SmolVLMProcessor)(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=SMOLVLM)
    model = SmolVLMForConditionalGeneration(SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(**VISION, image_size=32, patch_size=8), scale_factor=2,
        image_token_id=ids["<image>"], text_config=LlamaConfig(vocab_size=len(tok), pad_token_id=ids["<|im_end|>"],
                                                               **TEXT)))
    return model, processor


def internvl(d):
    """OpenGVLab/InternVL3-1B-hf: Qwen2's tokenizer with <img> </img> <IMG_CONTEXT> <video>; processor_config
    {"image_seq_length": 256}; preprocessor_config (GotOcr2ImageProcessor 448, crop_to_patches, max_patches 12,
    ImageNet mean/std, bicubic), shrunk to 32 px tiles of 4 tokens."""
    from transformers import (InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor, InternVLVisionConfig,
                              Qwen2Config, Qwen2Tokenizer)
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from mirage.models.hf_generic import image_only

    tok = byte_level_bpe(Qwen2Tokenizer, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", extra_special_tokens={
                             "start_image_token": "<img>", "end_image_token": "</img>",
                             "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    ids = _added(tok, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"])
    ip = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, max_patches=12, resample=3,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = image_only(InternVLProcessor)(image_processor=ip, tokenizer=tok, image_seq_length=4,
                                              chat_template=INTERNVL)
    model = InternVLForConditionalGeneration(InternVLConfig(
        vision_config=InternVLVisionConfig(**{**VISION, "image_size": (32, 32), "patch_size": (8, 8)}),
        text_config=Qwen2Config(vocab_size=len(tok), pad_token_id=ids["<|endoftext|>"], **TEXT),
        image_token_id=ids["<IMG_CONTEXT>"], image_seq_length=4))
    return model, processor


QWEN_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
               "<|video_pad|>"]


def _qwen_vl(three: bool):
    """Qwen2.5-VL-7B-Instruct's / Qwen3-VL's tokenizer (Qwen2Tokenizer: no BOS) and image processor (patch 14 or
    16, merge 2, min/max pixels shrunk)."""
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mirage.models.hf_generic import image_only

    tok = byte_level_bpe(Qwen2Tokenizer, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    ids = _added(tok, QWEN_TOKENS)
    tok.chat_template = QWEN3 if three else QWEN25
    p = 16 if three else 14
    ip = Qwen2VLImageProcessorPil(patch_size=p, min_pixels=(2 * p) ** 2 * 4, max_pixels=(2 * p) ** 2 * 64)
    return tok, ids, ip


def qwen2_5_vl(d):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok, ids, ip = _qwen_vl(False)
    text = dict(vocab_size=len(tok), pad_token_id=ids["<|endoftext|>"], **TEXT,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
                  fullatt_block_indexes=[1])
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"]))
    return model, (tok, ip)


def qwen3_vl(d):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tok, ids, ip = _qwen_vl(True)
    text = dict(vocab_size=len(tok), pad_token_id=ids["<|endoftext|>"], **{**TEXT, "num_hidden_layers": 3},
                head_dim=16, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                              "mrope_interleaved": True})
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                  num_position_embeddings=16, deepstack_visual_indexes=[0, 1])
    model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"]))
    return model, (tok, ip)


def mistral3(d):
    """mistralai/Mistral-Small-3.1-24B-Instruct-2503: tekken (byte-level BPE, BOS <s> written by the template) with
    its control tokens first ([IMG] 10, [IMG_BREAK] 12, [IMG_END] 13); processor_config (PixtralProcessor,
    patch_size 14, spatial_merge_size 2); preprocessor_config (longest_edge 1540, CLIP mean/std, bicubic), shrunk to
    8 px patches and a 32 px longest edge."""
    from transformers import GPT2Tokenizer, Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig
    from transformers import PixtralVisionConfig
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    from mirage.models.hf_generic import processor_class

    control = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
               "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
               "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]
    from tiny_hf import bpe_pieces
    from tokenizers.pre_tokenizers import ByteLevel

    learned, merges = bpe_pieces(ByteLevel(add_prefix_space=False), 600, ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(control)}
    for t in sorted(learned, key=learned.get):
        vocab.setdefault(t, len(vocab))
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                        pad_token="<pad>", add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": control[3:]})
    ip = PixtralImageProcessorPil(size={"longest_edge": 32}, patch_size={"height": 8, "width": 8}, resample=3,
                                  image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = processor_class("mistral3")(image_processor=ip, tokenizer=tok, patch_size=8, spatial_merge_size=2,
                                            chat_template=MISTRAL_SMALL)
    model = Mistral3ForConditionalGeneration(Mistral3Config(
        vision_config=PixtralVisionConfig(**VISION, image_size=32, patch_size=8, head_dim=16),
        text_config=MistralConfig(vocab_size=len(tok), pad_token_id=11, head_dim=16, **TEXT),
        image_token_index=10, spatial_merge_size=2, vision_feature_layer=-1))
    return model, processor


# HuggingFaceM4/Idefics3-8B-Llama3's chat template: SmolVLM's with "<|begin_of_text|>" (Llama 3's BOS) first
IDEFICS3 = "<|begin_of_text|>" + SMOLVLM[len("<|im_start|>"):]
BUILDERS = {"llava": llava, "llava_next": llava_next, "llava_onevision": llava_onevision, "gemma3": gemma3,
            "paligemma": paligemma, "idefics3": idefics3, "smolvlm": smolvlm, "internvl": internvl,
            "qwen2_5_vl": qwen2_5_vl, "qwen3_vl": qwen3_vl, "mistral3": mistral3}
# the fixed size of optimized inputs where the default does not fit (the Qwen family: multiples of 28 / 32)
IMAGE_SIZE = {"qwen2_5_vl": 112, "qwen3_vl": 128}


def save(kind: str, d, **kwargs) -> tuple[str, object]:
    """A family's tiny model and its processor (the transformers one: the reference), saved as a hub checkpoint."""
    torch.manual_seed(0)
    model, processor = BUILDERS[kind](d, **kwargs)
    model.save_pretrained(d)
    for part in processor if isinstance(processor, tuple) else (processor,):
        part.save_pretrained(d)
    return str(d), processor


def reference(kind: str, processor, model, prompt: str, image) -> dict:
    """transformers' own inputs for one prompt and image (None: the text-only turn)."""
    from mirage.models.chat import image_turn

    if kind in ("qwen2_5_vl", "qwen3_vl"):
        tok, ip = processor
        text = tok.apply_chat_template(image_turn(prompt, image=image is not None), add_generation_prompt=True,
                                       tokenize=False)
        if image is None:
            return dict(tok(text, return_tensors="pt"))
        px = ip(images=[image.convert("RGB")], return_tensors="pt")
        n = int(px["image_grid_thw"].prod()) // 4
        ids = tok(text.replace("<|image_pad|>", "<|image_pad|>" * n), return_tensors="pt")
        out = {**ids, "pixel_values": px["pixel_values"], "image_grid_thw": px["image_grid_thw"]}
        import inspect

        if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
            out["mm_token_type_ids"] = (ids["input_ids"] == model.config.image_token_id).int()
        return out
    if kind == "paligemma":
        if image is None:  # its processor wants an image: the documented format without the image tokens
            return dict(processor.tokenizer(processor.tokenizer.bos_token + prompt + "\n", add_special_tokens=False,
                                            return_tensors="pt"))
        return dict(processor(text=processor.image_token + prompt, images=image.convert("RGB"), return_tensors="pt"))
    content = [{"type": "image", "image": image.convert("RGB")}] if image is not None else []
    turn = [{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}]
    return dict(processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True,
                                              return_tensors="pt"))


@pytest.fixture(scope="module", params=list(BUILDERS))
def family(request, tmp_path_factory, one_thread):
    kind = request.param
    d, processor = save(kind, tmp_path_factory.mktemp(kind))
    options = {"conversation": "hf", "image_aspect_ratio": "crop"} if kind == "llava" else {}  # the processor's
    if kind in IMAGE_SIZE:
        options["image_size"] = IMAGE_SIZE[kind]
    return kind, d, processor, load_model(f"hf:{d}", device="cpu", **options)


def test_real_and_none_equal_the_processor_and_forward(family, sqa_bench):
    """transformers' processor builds the inputs (`real`: its ids and pixels; `none`: its text-only turn) and the
    model's own forward scores them: mirage's letter logits equal them (LLaVA-1.5 here with llava-hf's template,
    the processor's), and each letter is one token that decodes to the letter."""
    kind, _, processor, vlm = family
    qs = sqa_bench.questions[:2]
    prompts = [sqa_bench.prompt(q) for q in qs]
    n = [len(q.choices) for q in qs]
    real = vlm.choice_logits(prompts, vlm.visual_from_images([q.image() for q in qs]), n)
    none = vlm.choice_logits(prompts, Visual.none(), n)
    tok = processor[0] if isinstance(processor, tuple) else processor.tokenizer
    letters = vlm.letter_ids(max(n))
    assert [tok.decode([t]).strip() for t in letters] == list("ABCDEFGHIJ"[: max(n)])
    for row, (p, q) in enumerate(zip(prompts, qs)):
        for ours, image in ((real, q.image()), (none, None)):
            inputs = reference(kind, processor, vlm.model, p, image)
            assert inputs["input_ids"][0].tolist().count(tok.bos_token_id) <= 1  # the BOS once
            theirs = vlm.model(**inputs).logits[0, -1, letters[: n[row]]]
            torch.testing.assert_close(ours[row, : n[row]], theirs, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(real, none, atol=1e-5)  # the image matters: the comparison can fail


def test_generate_with_the_key_value_cache_equals_recomputing_the_prefix(family, sqa_bench, monkeypatch):
    """Captions (`caption:self`, 128 tokens) keep the LM's cache on every family: the prompt once through the
    model's own forward (Gemma 3's image blocks, PaliGemma's prefix, Qwen's M-RoPE), then one token a step; the same
    tokens and hidden states as recomputing the prefix, on a padded batch with images and text only."""
    from cached_generation import assert_cached_generation

    _, _, _, vlm = family
    qs = sqa_bench.questions[:3]
    prompts = [sqa_bench.prompt(q) for q in qs]
    if len(set(vlm.sequences(prompts)[1].sum(1).tolist())) < 2:  # a padded batch: lengthen one prompt
        prompts[0] += " Think of the picture."
    for visual_of in (lambda rows: vlm.visual_from_images([qs[i].image() for i in rows]), lambda rows: Visual.none()):
        assert_cached_generation(vlm, prompts, visual_of, monkeypatch, texts=False)


def sources(family, tmp_path, command: str, *args: str) -> set[str]:
    """`mirage COMMAND` on the family's tiny model and 2 ScienceQA questions through the command line (the
    optimizing commands: 1 step, at the family's fixed size): the sources of the rows it wrote."""
    kind, d, _, _ = family
    out = tmp_path / command
    loops = [] if command == "eval" else ["--steps", "1"] + (
        ["--image-size", str(IMAGE_SIZE[kind])] if kind in IMAGE_SIZE else [])
    res = CliRunner().invoke(app, [command, "--model", f"hf:{d}", *SQA, *args, "--limit", "2", *loops, "--device",
                                   "cpu", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = out / ("scienceqa" if command == "study" else "") / "results.jsonl"
    return {json.loads(line)["source"] for line in results.read_text().splitlines()}


def test_eval_with_the_default_conditions(family, tmp_path):
    """`mirage eval` with its default conditions (`none` among them) through the command line."""
    assert sources(family, tmp_path, "eval") == {"real", "none", "blank", "noise", "wrong", "blur", "shuffle"}


def test_optimize_pixels_per_question(family, tmp_path):
    """`mirage optimize --input pixels` at the family's fixed size, each result re-checked from its PNG at native
    resolution (per-question features run in the quick study below)."""
    assert sources(family, tmp_path, "optimize", "--input", "pixels") >= {"pixels-question", "pixels-question-png"}


def test_quick_study_optimizes_pixels_and_features_per_question(family, tmp_path):
    """`mirage study --preset quick`: conditions, per-question features and pixels (each re-checked from its PNG at
    native resolution), universal inputs and saliency, on every family."""
    assert sources(family, tmp_path, "study", "--preset", "quick") >= {
        "real", "none", "blank", "noise", "wrong", "blur", "shuffle", "features-question", "pixels-question",
        "pixels-question-png"}


# --- LLaVA-1.5's official conversation, against the official code's steps written out from its source -------------
# Independent of mirage: haotian-liu/LLaVA llava/conversation.py (conv_vicuna_v1, SeparatorStyle.TWO, get_prompt),
# llava/eval/model_vqa_loader.py (DEFAULT_IMAGE_TOKEN + "\n" + question), llava/mm_utils.py (tokenizer_image_token,
# expand2square with the processor's mean colour) and llava_arch.prepare_inputs_labels_for_multimodal (the image
# features in place of IMAGE_TOKEN_INDEX = -200; CLIP's hidden state at select_layer -2 without CLS).
def vicuna_v1_prompt(question: str, answer: str | None = None) -> str:
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions.")
    messages, seps = [("USER", question), ("ASSISTANT", answer)], [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(messages):
        ret += role + ": " + message + seps[i % 2] if message else role + ":"
    return ret


def tokenizer_image_token(prompt: str, tokenizer, image_token_index: int = -200) -> list[int]:
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(x, sep):
        return [ele for sublist in zip(x, [sep] * len(x)) for ele in sublist][:-1]

    input_ids, offset = [], 0
    if prompt_chunks and prompt_chunks[0] and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def expand2square(pil_img, background_color):
    from PIL import Image

    width, height = pil_img.size
    if width == height:
        return pil_img
    side = max(width, height)
    result = Image.new(pil_img.mode, (side, side), background_color)
    result.paste(pil_img, (0, (width - height) // 2) if width > height else ((height - width) // 2, 0))
    return result


@torch.no_grad()
def official_letter_logits(model, processor, question: str, image, n: int) -> torch.Tensor:
    tok, ip = processor.tokenizer, processor.image_processor
    text = ("<image>\n" + question) if image is not None else question
    ids = tokenizer_image_token(vicuna_v1_prompt(text), tok)
    letters = []
    for letter in "ABCDEFGHIJ"[:n]:  # the token the official conversation writes for the answer
        letters.append(tokenizer_image_token(vicuna_v1_prompt(text, letter), tok)[len(ids)])
    inner, embed = model.model, model.get_input_embeddings()
    pieces = []
    if image is not None:
        image = expand2square(image.convert("RGB"), tuple(int(x * 255) for x in ip.image_mean))
        pixels = ip.preprocess(image, return_tensors="pt")["pixel_values"]
        features = inner.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        image_features = inner.multi_modal_projector(features)[0]
        at = ids.index(-200)
        pieces = [embed(torch.tensor(ids[:at])), image_features, embed(torch.tensor(ids[at + 1:]))]
    else:
        pieces = [embed(torch.tensor(ids))]
    hidden = inner.language_model(inputs_embeds=torch.cat(pieces)[None]).last_hidden_state
    return model.lm_head(hidden[0, -1])[letters]


@pytest.mark.parametrize("legacy", [False, True])
def test_llava_official_conversation_equals_the_official_code(legacy, tmp_path, sqa_bench):
    """The default LLaVA-1.5 prompt is the official code's (vicuna_v1, its system line, the image padded to a
    square), on a tiny checkpoint converted as transformers' conversion script does, its tokenizer loaded with
    legacy false (vicuna-7b-v1.5's) or true: `real` and `none` letter logits equal the official steps'; with
    `--conversation hf` they equal transformers' processor + forward under either `legacy`."""
    d, processor = save("llava", tmp_path, legacy=legacy)
    vlm = load_model(f"hf:{d}", device="cpu")
    assert vlm.conversation == "vicuna_v1" and vlm.image_aspect_ratio == "pad"
    qs = sqa_bench.questions[:2]
    prompts, n = [sqa_bench.prompt(q) for q in qs], [len(q.choices) for q in qs]
    real = vlm.choice_logits(prompts, vlm.visual_from_images([q.image() for q in qs]), n)
    none = vlm.choice_logits(prompts, Visual.none(), n)
    for row, (p, q) in enumerate(zip(prompts, qs)):
        torch.testing.assert_close(real[row, : n[row]], official_letter_logits(vlm.model, processor, p, q.image(), n[row]),
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(none[row, : n[row]], official_letter_logits(vlm.model, processor, p, None, n[row]),
                                   atol=1e-4, rtol=1e-4)
    # llava-hf's template and crop: the processor's ids, whatever `legacy` does to the space after <image>
    hf = load_model(f"hf:{d}", device="cpu", conversation="hf", image_aspect_ratio="crop")
    hf_none = hf.choice_logits(prompts, Visual.none(), n)
    assert not torch.allclose(hf_none, none, atol=1e-4)  # no system line
    hf_real = hf.choice_logits(prompts, hf.visual_from_images([q.image() for q in qs]), n)
    for row, (p, q) in enumerate(zip(prompts, qs)):
        for ours, image in ((hf_real, q.image()), (hf_none, None)):
            inputs = reference("llava", processor, hf.model, p, image)
            theirs = hf.model(**inputs).logits[0, -1, hf.letter_ids(n[row])]
            torch.testing.assert_close(ours[row, : n[row]], theirs, atol=1e-4, rtol=1e-4)


def scored(d: str, conversation: str, bench):
    """A saved family under an official conversation, and its `real` and `none` letter logits on two questions."""
    vlm = load_model(f"hf:{d}", device="cpu", conversation=conversation)
    qs = bench.questions[:2]
    prompts, n = [bench.prompt(q) for q in qs], [len(q.choices) for q in qs]
    real = vlm.choice_logits(prompts, vlm.visual_from_images([q.image() for q in qs]), n)
    return vlm, qs, prompts, n, real, vlm.choice_logits(prompts, Visual.none(), n)


def chatml_qwen_1_5_prompt(question: str, answer: str | None = None) -> str:
    """LLaVA-VL/LLaVA-NeXT llava/conversation.py: conv_qwen ("qwen_1_5") through get_prompt's CHATML branch."""
    system, roles, sep = "<|im_start|>system\nYou are a helpful assistant.", ("<|im_start|>user", "<|im_start|>assistant"), \
        "<|im_end|>"
    ret = "" if system == "" else system + sep + "\n"
    for role, message in [(roles[0], question), (roles[1], answer)]:
        ret += role + "\n" + message + sep + "\n" if message else role + "\n"
    return ret


def test_onevision_official_conversation_equals_lmms_evals_prompt(tmp_path, sqa_bench):
    """`--conversation qwen_1_5` for LLaVA-OneVision: lmms-eval's llava_onevision prompt (`<image>\\n` + question in
    conv_qwen, tokenized by tokenizer_image_token); the image tokens are transformers' (its processor's expansion,
    the model's features): `real` and `none` letter logits equal that reference."""
    d, processor = save("llava_onevision", tmp_path)
    vlm, qs, prompts, n, real, none = scored(d, "qwen_1_5", sqa_bench)
    tok = processor.tokenizer
    for row, (p, q) in enumerate(zip(prompts, qs)):
        for ours, image in ((real, q.image()), (none, None)):
            question = "<image>\n" + p if image is not None else p
            ids = tokenizer_image_token(chatml_qwen_1_5_prompt(question), tok)
            letters = [tokenizer_image_token(chatml_qwen_1_5_prompt(question, a), tok)[len(ids)] for a in "ABCD"[: n[row]]]
            if image is None:
                inputs = {"input_ids": torch.tensor([ids])}
            else:
                inputs = processor(text=[chatml_qwen_1_5_prompt(question)], images=[[image.convert("RGB")]],
                                   return_tensors="pt")
                expanded = inputs["input_ids"][0].tolist()
                image_id = tok.convert_tokens_to_ids("<image>")
                folded = [-200 if t == image_id else t for i, t in enumerate(expanded)
                          if t != image_id or expanded[i - 1] != image_id]
                assert folded == ids  # the processor's text ids are tokenizer_image_token's
            theirs = vlm.model(**inputs).logits[0, -1, letters]
            torch.testing.assert_close(ours[row, : n[row]], theirs, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="'vicuna_v1' does not apply to 'llava_onevision'.*hf, qwen_1_5"):
        load_model(f"hf:{d}", device="cpu", conversation="vicuna_v1")


def internvl2_5_query(question: str, num_image_token: int, num_patches: int) -> str:
    """OpenGVLab/InternVL internvl/conversation.py `internvl2_5` (SeparatorStyle.MPT) as the models' `chat()` fills
    it: `<image>\\n` + question, the assistant's empty turn, then `<image>` -> <img> + context tokens + </img>."""
    system = "<|im_start|>system\n" + ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发"
                                       "的多模态大语言模型。")
    roles, sep = ("<|im_start|>user\n", "<|im_start|>assistant\n"), "<|im_end|>\n"
    if num_patches:
        question = "<image>\n" + question
    ret = system + sep
    for role, message in [(roles[0], question), (roles[1], None)]:
        ret += role + message + sep if message else role
    return ret.replace("<image>", "<img>" + "<IMG_CONTEXT>" * num_image_token * num_patches + "</img>", 1)


def test_internvl_official_conversation_equals_its_chat(tmp_path, sqa_bench):
    """`--conversation internvl2_5` for InternVL: the prompt its `chat()` builds (system message, `<image>\\n`,
    the image's context tokens between <img> and </img>), with transformers' tiles and forward."""
    d, processor = save("internvl", tmp_path)
    vlm, qs, prompts, n, real, none = scored(d, "internvl2_5", sqa_bench)
    tok = processor.tokenizer
    for row, (p, q) in enumerate(zip(prompts, qs)):
        pixels = processor.image_processor(images=[q.image().convert("RGB")], return_tensors="pt")["pixel_values"]
        for ours, patches in ((real, len(pixels)), (none, 0)):
            query = internvl2_5_query(p, vlm.model.config.image_seq_length, patches)
            inputs = tok(query, return_tensors="pt")
            letters = [tok(query + a).input_ids[len(inputs["input_ids"][0])] for a in "ABCD"[: n[row]]]
            if patches:
                inputs["pixel_values"] = pixels
            theirs = vlm.model(**inputs).logits[0, -1, letters]
            torch.testing.assert_close(ours[row, : n[row]], theirs, atol=1e-4, rtol=1e-4)


def several_images_file(folder) -> str:
    """A `file:` benchmark of MuirBench-like questions: 3 and 2 images, `<image>` markers where they stand."""
    from PIL import Image

    (folder / "img").mkdir()
    for k in range(6):
        Image.new("RGB", (40 - 4 * k, 30 + 2 * k), (40 * k, 200 - 30 * k, 90)).save(folder / "img" / f"{k}.png")
    lines = [{"id": "q0", "question": "Which is red? <image> <image> <image>", "choices": ["one", "two", "three"],
              "answer": "A", "images": ["img/0.png", "img/1.png", "img/2.png"]},
             {"id": "q1", "question": "<image>\nIs it the same as this one?\n<image>", "choices": ["yes", "no"],
              "answer": "B", "images": ["img/3.png", "img/4.png"]},
             {"id": "q2", "question": "Which is green? <image> <image> <image>", "choices": ["one", "two"],
              "answer": "B", "images": ["img/5.png", "img/4.png", "img/1.png"]}]
    (folder / "q.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return f"file:{folder / 'q.jsonl'}"


@pytest.mark.parametrize("kind", ["smolvlm", "idefics3", "gemma3", "internvl", "llava_next", "llava_onevision"])
def test_several_image_families_take_several_images(kind, tmp_path):
    """Idefics3, SmolVLM, Gemma 3 and InternVL (their published chat templates and processor settings) take several
    images per question, each where the chat template renders an image at the text's `<image>` marker (all before
    the text without markers): batched logits equal transformers' processor + forward (Gemma 3: each image's block
    attends both ways within itself only; InternVL: each image's tiles in its own block). Per question, `mirage
    optimize` crafts one input per image: each saved and, read back, giving the row's answer."""
    from PIL import Image
    from safetensors.torch import load_file

    from mirage.benchmarks import load_benchmark
    from mirage.models.chat import image_turn

    d, processor = save(kind, tmp_path / "model")
    vlm = load_model(f"hf:{d}", device="cpu")
    ims = [Image.new("RGB", (40, 30 + 4 * k), (200 * (k == 0), 200 * (k == 1), 200 * (k == 2))) for k in range(3)]
    prompts = ["<image>\nWhich shows the same building?\n<image>\n<image>", "Which one is red? A. first B. second"]
    rows = [ims, ims[1::-1]]
    ours = vlm.next_token_logits(prompts, Visual("images", rows))

    def processed(prompt, images):
        if kind in ("llava_next", "llava_onevision") and "<image>" in prompt:  # its template renders images first: markers stay in the text
            text = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": prompt}]}],
                                                 add_generation_prompt=True, tokenize=False)
            return processor(text=[text], images=[images], return_tensors="pt")
        turn, it = image_turn(prompt, image=len(images)), iter(images)
        turn[0]["content"] = [{**c, "image": next(it)} if c["type"] == "image" else c for c in turn[0]["content"]]
        return processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True,
                                             return_tensors="pt")

    def image_tokens(inputs):
        return int((inputs["input_ids"] == vlm.image_token_id).sum())

    for row, (prompt, images) in enumerate(zip(prompts, rows)):
        inputs = processed(prompt, images)
        alone = sum(image_tokens(processed("x", [im])) for im in images)  # a block each, as asked alone
        if kind == "llava_onevision":  # several: each its base image and a newline token, no anyres tiles
            alone = len(images) * (processor.num_image_tokens + 1)
        assert image_tokens(inputs) == alone
        with torch.no_grad():
            torch.testing.assert_close(ours[row], vlm.model(**inputs).logits[0, -1], atol=1e-5, rtol=1e-5)
    if kind == "llava_onevision":  # the fixed-size path lays a row of several images out as the processor does
        import numpy as np
        from PIL import ImageFilter

        s, rng = vlm.image_size, np.random.default_rng(0)
        squares = [Image.fromarray(rng.integers(0, 255, (s, s, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(3))
                   for _ in range(3)]
        pixels = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) / 255 for im in squares])
        mixed = ["One <image> here.", "Two: <image> and <image>?"]  # one image (anyres tiles), two (base images)
        native = vlm.next_token_logits(mixed, Visual("images", [squares[:1], squares[1:]]))
        fixed = vlm.next_token_logits(mixed, Visual("pixels", pixels, counts=(1, 2)))
        torch.testing.assert_close(fixed, native, atol=5e-3, rtol=0)  # the twin's resize: within PIL's rounding
        swapped = vlm.next_token_logits(mixed, Visual("pixels", pixels[[0, 2, 1]], counts=(1, 2)))
        assert float((swapped - native).abs().max()) > 1e-2
    bench_name = several_images_file(tmp_path)
    out = tmp_path / "opt"
    res = CliRunner().invoke(app, ["optimize", "--model", f"hf:{d}", "--benchmark", bench_name, "--input", "features",
                                   "--steps", "2", "--device", "cpu", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    bench = load_benchmark(bench_name).for_model(vlm)
    for q, r in zip(bench, sorted(map(json.loads, (out / "results.jsonl").read_text().splitlines()),
                                  key=lambda r: r["question_id"])):
        saved = [load_file(str(out / path))["vision"] for path in r.get("artifacts", [r["artifact"]])]
        assert len(saved) == len(q.images)
        with torch.no_grad():
            probs = vlm.choice_logits([bench.prompt(q)], Visual("features", {"vision": torch.stack(saved)},
                                                                counts=(len(saved),)), [len(q.choices)]).softmax(-1)
        assert probs[0].tolist() == pytest.approx(r["probs"], abs=1e-4)
    res = CliRunner().invoke(app, ["eval", "--model", f"hf:{d}", "--benchmark", bench_name, "--conditions",
                                   "real,none,blank,wrong", "--device", "cpu", "-q", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
