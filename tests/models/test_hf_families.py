"""Every supported family through the commands a user types, on tiny random models whose chat template, tokenizer
settings and processor configuration are the families' published hub files (each says where it was copied from);
only the sizes (layers, widths, image and patch sizes) are shrunk. `real` and `none` letter logits equal
transformers' own processor + forward."""

import json

import pytest
import torch
from tiny_hf import word_tokenizer
from typer.testing import CliRunner

from mirage.cli import app
from mirage.models import Visual, load_model

SQA = ["--benchmark", "scienceqa", "--data-dir", "/work/shared/fixtures/scienceqa"]
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)

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


def smolvlm(d):
    """HuggingFaceTB/SmolVLM-Instruct: processor_config {"image_seq_len": 81} and preprocessor_config (longest_edge
    1536, max_image_size 384, do_image_splitting, LANCZOS), shrunk to a 64 px image of 32 px tiles, 4 tokens each."""
    from transformers import LlamaConfig, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMProcessor
    from transformers import SmolVLMVisionConfig
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from mirage.models.hf_generic import image_only

    extra = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
             *(f"<row_{i}_col_{j}>" for i in (1, 2) for j in (1, 2))]
    tok, vocab = word_tokenizer(["<unk>", "<|im_start|>", "<|endoftext|>", "<pad>", *extra], bos_token="<|im_start|>",
                                eos_token="<end_of_utterance>", pad_token="<pad>", additional_special_tokens=extra)
    ip = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, resample=1,
                                  do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = image_only(SmolVLMProcessor)(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=SMOLVLM)
    model = SmolVLMForConditionalGeneration(SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(**VISION, image_size=32, patch_size=8), scale_factor=2,
        image_token_id=vocab["<image>"], text_config=LlamaConfig(vocab_size=len(vocab), pad_token_id=3, **TEXT)))
    return model, processor


def mistral3(d):
    """mistralai/Mistral-Small-3.1-24B-Instruct-2503: processor_config (PixtralProcessor, patch_size 14,
    spatial_merge_size 2, [IMG] [IMG_BREAK] [IMG_END]) and preprocessor_config (longest_edge 1540, CLIP mean/std,
    bicubic), shrunk to 8 px patches and a 32 px longest edge; [IMG] is id 10, [IMG_BREAK] 12, [IMG_END] 13 as in
    its tekken vocabulary."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    from mirage.models.hf_generic import processor_class

    special = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
               "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
               "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]
    tok, vocab = word_tokenizer(special, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                additional_special_tokens=special[3:])
    ip = PixtralImageProcessorPil(size={"longest_edge": 32}, patch_size={"height": 8, "width": 8})
    processor = processor_class("mistral3")(image_processor=ip, tokenizer=tok, patch_size=8, spatial_merge_size=2,
                                            chat_template=MISTRAL_SMALL)
    model = Mistral3ForConditionalGeneration(Mistral3Config(
        vision_config=PixtralVisionConfig(**VISION, image_size=32, patch_size=8, head_dim=16),
        text_config=MistralConfig(vocab_size=len(vocab), pad_token_id=11, head_dim=16, **TEXT),
        image_token_index=10, spatial_merge_size=2, vision_feature_layer=-1))
    return model, processor


BUILDERS = {"smolvlm": smolvlm, "mistral3": mistral3}


@pytest.fixture(scope="module", params=list(BUILDERS))
def family(request, tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(request.param)
    model, processor = BUILDERS[request.param](d)
    model.save_pretrained(d)
    processor.save_pretrained(d)
    return request.param, str(d), load_model(f"hf:{d}", device="cpu")


def test_real_and_none_equal_the_processor_and_forward(family, sqa_bench):
    """The processor's ids and pixels (`real`) or its text-only turn (`none`), the model's own forward: mirage's
    letter logits equal them, and the letters are the tokens the model writes after the generation prompt."""
    kind, _, vlm = family
    qs = sqa_bench.questions[:2]
    prompts = [sqa_bench.prompt(q) for q in qs]
    n = [len(q.choices) for q in qs]
    real = vlm.choice_logits(prompts, vlm.visual_from_images([q.image() for q in qs]), n)
    none = vlm.choice_logits(prompts, Visual.none(), n)
    for row, (p, q) in enumerate(zip(prompts, qs)):
        letters = vlm.letter_ids(n[row])
        for ours, image in ((real, q.image()), (none, None)):
            inputs = vlm._chat_inputs(p, image)
            theirs = vlm.model(**inputs).logits[0, -1, letters]
            torch.testing.assert_close(ours[row, : n[row]], theirs, atol=1e-4, rtol=1e-4)


def test_eval_with_the_default_conditions(family, tmp_path):
    kind, d, _ = family
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--model", f"hf:{d}", *SQA, "--limit", "2", "--device", "cpu", "-q",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rows} == {"real", "none", "blank", "noise", "wrong", "blur", "shuffle"}
