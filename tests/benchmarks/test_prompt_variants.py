"""`--prompt`: a benchmark asked in its lmms-eval prompt, the model family's own published prompt (lmms-eval's
mmstar_qwen and mmmu_val_qwen, PR #1021) or its official runner's (MMMU), byte for byte as lmms-eval's doc_to_text
gives it (written out by hand below from its code), through a tiny Qwen2.5-VL and `mirage eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.mmmu_loader import load_mmmu
from mirage.benchmarks.question import Benchmark, Question
from mirage.cli import app
from mirage.errors import UsageError
from mirage.models import load_model
from tests.benchmarks.test_specs import mmstar_files
from tests.models.test_hf_qwen import save_tiny_qwen

MMMU = Path("/work/shared/fixtures/mmmu")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_tiny_qwen(tmp_path_factory.mktemp("qwen2_5_vl"), "qwen2_5_vl")


def test_mmstar_in_qwens_own_prompt_is_lmms_evals_mmstar_qwen(tmp_path, qwen_dir):
    mmstar_files(tmp_path)
    qwen = load_model(f"hf:{qwen_dir}", device="cpu", image_size=112)
    bench = load_benchmark("mmstar", data_dir=str(tmp_path))
    own = bench.with_prompt("model", qwen)
    assert own.prompt_name == "qwen" and bench.with_prompt("lmms-eval", qwen) is bench
    # mmstar_doc_to_text with mmstar_qwen.yaml's kwargs: strip, drop " Please answer yes or no.", "Question: " before,
    # "Answer with the option letter only." right after the options (no newline, as there)
    post = "Answer with the option letter only."
    assert own.prompt(own[0]) == (
        "Question: Which option describe the object relationship in the image correctly?\nOptions: A: The suitcase "
        "is on the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase "
        "is beneath the book." + post)
    assert own.prompt(own[2]) == "Question: Is the man wearing a hat?\nOptions: A: Yes, B: No" + post
    assert own.prompt(own[3]) == "Question: Which panel is the odd one out?" + post
    # the model reads it whole in its own chat template, after the image
    assert qwen.chat_text(own.prompt(own[2])) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Question: Is the man wearing a hat?\nOptions: "
        "A: Yes, B: No" + post + "<|im_end|>\n<|im_start|>assistant\n")
    # through the command a user types: recorded in config.json, resolved in its environment
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--model", f"hf:{qwen_dir}", "--benchmark", "mmstar", "--data-dir",
                                   str(tmp_path), "--conditions", "real", "--image-size", "112", "--prompt", "model",
                                   "--device", "cpu", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["prompt"] == "model" and config["environment"]["prompt"] == "qwen"
    refused = CliRunner().invoke(app, ["eval", "--benchmark", "mmstar", "--data-dir", str(tmp_path), "--prompt",
                                       "official", "--out", str(tmp_path / "no")])
    assert refused.exit_code == 2 and "mmstar has no 'official' prompt" in " ".join(refused.output.split())
    assert not (tmp_path / "no" / "results.jsonl").exists()


def test_the_demo_has_no_prompt_family_and_typos_are_named(tiny_model, small_bench):
    with pytest.raises(UsageError, match="--prompt model: DemoVLM has no published prompt family"):
        small_bench.with_prompt("model", tiny_model)
    with pytest.raises(UsageError, match="did you mean 'model'"):
        small_bench.with_prompt("modle", tiny_model)


@pytest.mark.skipif(not MMMU.is_dir(), reason="MMMU fixture not available")
def test_mmmu_official_lmms_eval_and_qwen_prompts():
    bench = load_mmmu("validation", data_dir=MMMU)
    q = next(q for q in bench if q.id == "validation_Biology_1")
    stem = "In the Section of left leg, identify the 170 structure. <image 1>"
    options = ["Tibialis anterior", "Tibialis posterior", "Flexor hallucis longus", "Peroneus longus"]
    lines = "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", options))
    assert bench.prompt_name == "official" and bench.with_prompt("official") is bench  # the LLaVA-1.5 runner's
    assert bench.prompt(q) == stem + "\n" + "".join(f"({letter}) {o}\n" for letter, o in zip("ABCD", options)) + \
        "\nAnswer with the option's letter from the given choices directly."
    # lmms-eval mmmu_val: construct_prompt(doc, multiple_choice_prompt, ...)
    assert bench.with_prompt("lmms-eval").prompt(q) == \
        f"{stem}\n{lines}\n\nAnswer with the option's letter from the given choices directly."
    # mmmu_val_qwen: mmmu_doc_to_text_qwen3vl
    qwen = bench.with_prompt("model", type("Qwen", (), {"prompt_family": "qwen"})())
    assert qwen.prompt(q) == f"Question: {stem}\nOptions:\n{lines}\nAnswer with the option letter only."
    open_q = Question("o", "What is 2 + 2?", (), -1, meta={"answer": "4", "options": "[]", "question_type": "open"},
                      kind="open")
    assert bench.with_prompt("lmms-eval").prompt(open_q) == \
        "What is 2 + 2?\n\nAnswer the question using a single word or phrase."
    assert qwen.prompt(open_q) == "Question: What is 2 + 2?\nOptions:\n\nPlease answer the question directly."


def test_a_benchmark_without_variants_names_what_it_has():
    bench = Benchmark("mine", "test", [Question("a", "what ?", ("x", "y"), 0)])
    with pytest.raises(UsageError, match=r"--prompt official: mine has no 'official' prompt \(it has: lmms-eval\)"):
        bench.with_prompt("official")
