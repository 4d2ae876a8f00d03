"""`lmms:TASK`: lmms-eval's own task objects (0.7.3) on hub-layout copies of their data sets (tests/lmms_hub.py):
the same prompts, options, gold and images as mirage's hand-written specs where both exist; prompts byte for byte as
lmms-eval's doc_to_text gives them (asked of lmms-eval directly here); every condition on a tiny LLaVA-1.5 and a
tiny Qwen2.5-VL; `--scoring generate` scored by the task's process_results and aggregation. Skipped where lmms-eval
is not installed (`pip install -e ".[dev,lmms]"`; CI installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (the `lmms` extra)")

import lmms_hub  # noqa: E402
from tiny_hf import word_tokenizer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from mirage.benchmarks import load_benchmark  # noqa: E402
from mirage.benchmarks.lmms import LmmsError, task_manager  # noqa: E402
from mirage.cli import app  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(autouse=True, scope="module")
def _offline():
    mp = pytest.MonkeyPatch()
    for k, v in OFFLINE.items():
        mp.setenv(k, v)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Every task's data set in its hub layout, one folder per task."""
    root = tmp_path_factory.mktemp("hub")
    return {task: build(root / task) for task, build in lmms_hub.SINGLE_IMAGE.items()}


def lmms_eval_docs(task: str, data_dir: Path, model_name: str | None = None):
    """The reference: lmms-eval's task built by lmms-eval itself (its TaskManager over the task's folder)."""
    from lmms_eval.tasks import TaskManager

    import lmms_eval

    folder = {"blink_counting": "blink", "mmt_val": "mmt"}.get(task, task)
    tm = TaskManager(include_path=str(Path(lmms_eval.__file__).parent / "tasks" / folder), include_defaults=False,
                     model_name=model_name)
    obj = tm.load_task_or_group([{"task": task, "dataset_path": str(data_dir)}])[task]
    return obj, obj.test_docs()


# ----------------------------------------------------------------------------------------------- mirage's own specs


@pytest.mark.parametrize("name", ["mmstar", "ai2d", "pope", "seedbench"])
def test_same_questions_as_mirages_specs(name, tmp_path):
    """On the spec tests' fixtures: lmms:NAME gives the spec's prompts, options, gold and images on every row both
    keep (the SEED-Bench spec keeps image rows only; lmms-eval's seedbench asks the video rows' frames too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("test_specs", Path(__file__).parent / "test_specs.py")
    specs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(specs)
    data = lmms_hub.add_hub_metadata(getattr(specs, f"{name}_files")(tmp_path))
    if name == "mmstar":  # Lin-Chen/MMStar's card: one config "val" whose val split is mmstar.parquet
        lmms_hub.readme_configs(data, {"val": {"val": "mmstar.parquet"}})
    ours = load_benchmark(name, data_dir=str(data))
    theirs = load_benchmark(f"lmms:{name}", data_dir=str(data))
    kept = [q for q in theirs if len(q.images) == 1] if name == "seedbench" else list(theirs)
    assert len(kept) == len(ours) >= 2
    for a, b in zip(ours, kept):
        assert (ours.prompt(a), a.choices, a.answer) == (theirs.prompt(b), b.choices, b.answer)
        assert a.image(0).tobytes() == b.image(0).tobytes()
    if name == "seedbench":
        assert [len(q.images) for q in theirs] == [1, 3, 1]  # the video row: its frames


# ----------------------------------------------------------------------------------------------- tasks mirage lacks

EXPECTED = {  # (options, gold) of each task's first question, and the rule that found them
    "mmvp": (("Open", "Closed"), 0, "prompt"),
    "vstar_bench": (("black", "white", "red", "blue"), 2, "prompt"),
    "mme": (("yes", "no"), 0, "yes/no"),
    "blink_counting": (("0", "3", "2", "1"), 3, "fields"),
    "embspatial": (("picture", "lamp", "rug", "table"), 0, "fields"),
    "3dsrbench": (("the chair", "the table"), 1, "prompt"),
    "seedbench_2_plus": (("10", "20", "30", "40"), 3, "prompt"),
    "erqa": (("Left", "Right", "Up", "Down"), 1, "prompt"),
    "mmt_val": (("a dog", "a cat", "a car"), 1, "doc_to_choice"),  # "Question: <image>\n...": the image there
}


def test_prompts_options_gold_and_images_are_lmms_evals(hub):
    for task, (options, gold, rule) in EXPECTED.items():
        bench = load_benchmark(f"lmms:{task}", data_dir=str(hub[task]))
        obj, docs = lmms_eval_docs(task, hub[task])
        assert len(bench) == len(docs) >= 2, task
        for q, doc in zip(bench, docs):
            assert bench.prompt(q) == obj.doc_to_text(doc), task  # byte for byte
            assert [q.image(k).tobytes() for k in range(len(q.images))] == \
                [im.convert("RGB").tobytes() for im in obj.doc_to_visual(doc)], task
        q = bench[0]
        assert (q.choices, q.answer, q.meta["options_rule"]) == (options, gold, rule), task


def test_a_task_without_options_is_refused_by_name(tmp_path):
    data = lmms_hub.hallusion_bench(tmp_path / "hb")
    with pytest.raises(LmmsError, match="lmms:hallusion_bench_image: cannot find the options of its questions"):
        load_benchmark("lmms:hallusion_bench_image", data_dir=str(data))


def test_unknown_task_missing_data_and_offline_hub_are_one_line(tmp_path):
    runner = CliRunner()
    base = ["eval", "--model", "demo", "--conditions", "real", "--out", str(tmp_path / "run"), "-q"]
    out = runner.invoke(app, [*base, "--benchmark", "lmms:mmvpp"])
    assert out.exit_code == 2 and "did you mean 'mmvp'" in out.output.replace("\n", " ")
    out = runner.invoke(app, [*base, "--benchmark", "lmms:mmvp"])  # no --data-dir, no network
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "lmms:mmvp: cannot load its data from the hub" in text and "--data-dir DIR" in text
    assert "Traceback" not in out.output
    (tmp_path / "empty").mkdir()
    out = runner.invoke(app, [*base, "--benchmark", "lmms:mmvp", "--data-dir", str(tmp_path / "empty")])
    assert out.exit_code == 2 and "--data-dir must hold" in " ".join(out.output.split())
    out = runner.invoke(app, [*base, "--benchmark", "lmms:mmvp", "--subjects", "x"])
    assert out.exit_code == 2 and "--subjects applies to mmmu, not 'lmms:mmvp'" in out.output


# ----------------------------------------------------------------------------------------------- models


def save_llava(d: Path) -> str:
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    from tiny_hf import LLAVA_CHAT

    tok, vocab = word_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=LLAVA_CHAT,
                               vision_feature_select_strategy="default", image_token="<image>",
                               num_additional_image_tokens=1)
    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, pad_token_id=3)
    LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_id=4,
                                              vision_feature_layer=-2)).save_pretrained(d)
    processor.save_pretrained(d)
    return str(d)


def save_qwen25(d: Path) -> str:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tiny_hf import QWEN_CHAT, QWEN_SPECIAL

    tok, vocab = word_tokenizer(QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                additional_special_tokens=QWEN_SPECIAL[2:])
    tok.chat_template = QWEN_CHAT
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, bos_token_id=1, eos_token_id=3, pad_token_id=1,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
                  fullatt_block_indexes=[1])
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"])).save_pretrained(d)
    tok.save_pretrained(d)
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {"llava": save_llava(tmp_path_factory.mktemp("llava")),
            "qwen2_5_vl": save_qwen25(tmp_path_factory.mktemp("qwen25"))}


def run_eval(tmp_path, model_dir, task, data_dir, *extra):
    out = tmp_path / f"{Path(model_dir).name}-{task}"
    result = CliRunner().invoke(app, ["eval", "--model", f"hf:{model_dir}", "--benchmark", f"lmms:{task}",
                                      "--data-dir", str(data_dir), "--device", "cpu", "-q", "--out", str(out),
                                      "--batch-size", "4", *extra])
    assert result.exit_code == 0, result.output
    return out, [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_every_condition_on_tiny_llava_and_qwen25(hub, models, tmp_path, monkeypatch):
    """`mirage eval --benchmark lmms:T --conditions real,none,blank,wrong` on each task and both models; the prompts
    the models are asked are lmms-eval's for their family (seedbench_2_plus has LLaVA kwargs of its own)."""
    from mirage.models.vlm import VLM

    asked: list[str] = []  # every prompt a model is asked for its answer letters
    real_logits = VLM.choice_logits

    def spy(self, prompts, visual, n_choices):
        asked.extend(prompts)
        return real_logits(self, prompts, visual, n_choices)

    monkeypatch.setattr(VLM, "choice_logits", spy)
    for family, model_dir in models.items():
        for task in EXPECTED:
            asked.clear()
            out, rows = run_eval(tmp_path, model_dir, task, hub[task], "--conditions", "real,none,blank,wrong")
            n = len(load_benchmark(f"lmms:{task}", data_dir=str(hub[task])))
            assert sorted({r["source"] for r in rows}) == ["blank", "none", "real", "wrong"], (family, task)
            assert len(rows) == 4 * n
            obj, docs = lmms_eval_docs(task, hub[task], family)
            assert set(asked) == {obj.doc_to_text(doc) for doc in docs}, (family, task)


# ----------------------------------------------------------------------------------------------- --scoring generate


def lmms_eval_metrics(task: str, data_dir: Path, responses: list[str]) -> dict:
    """What lmms-eval's own evaluator computes from these responses: Instances through the task's filter ensembles
    (`FilterEnsemble.apply`), process_results on the first filter's output, the YAML's aggregation per metric."""
    from lmms_eval.api.instance import Instance

    obj, docs = lmms_eval_docs(task, data_dir)
    instances = [Instance("generate_until", (), 0, {"task": task, "doc_id": i, "repeats": 1}, resps=[r])
                 for i, r in enumerate(responses)]
    for ensemble in obj._filters:
        ensemble.apply(instances, list(docs))
    key = obj._filters[0].name
    items: dict[str, list] = {}
    for inst, doc in zip(instances, docs):
        for metric, value in obj.process_results(doc, [inst.filtered_resps[key]]).items():
            items.setdefault(metric, []).append(value)
    return {m: agg(items[m]) for m, agg in obj.aggregation().items() if m in items}


@pytest.mark.parametrize("task,responses", [
    ("mmvp", ["A", "The answer is B.", "(a)"]),
    ("mme", ["Yes", "no.", "No, there is not.", "No"]),
    ("vstar_bench", ["C", "(A) left"]),
    ("embspatial", ["A) picture", "B"]),
])
def test_generated_answers_get_lmms_evals_own_metric(hub, task, responses):
    """The benchmark's judging adds the task's process_results to each row and `metrics` aggregates them: on the
    same responses, the same numbers as lmms-eval's own evaluator pieces."""
    from mirage.evaluate import benchmark_metrics

    bench = load_benchmark(f"lmms:{task}", data_dir=str(hub[task]))
    rows = []
    for q, response in zip(bench, responses):
        pred, answer, correct, metrics = bench.judge(q, response)
        rows.append({"source": "real", "metrics": json.loads(json.dumps(metrics))})  # as results.jsonl keeps them
    ours = benchmark_metrics(rows, bench)["real"]
    theirs = lmms_eval_metrics(task, hub[task], responses)
    assert ours == pytest.approx(theirs) and theirs
    assert any(0 < v < 1 or v > 1 for v in theirs.values())  # not an all-or-nothing coincidence


def test_scoring_generate_through_the_cli(hub, models, tmp_path):
    """`--scoring generate` on a tiny Qwen2.5-VL: summary.json's `metrics` of `real` is lmms-eval's number on the
    responses the run recorded."""
    out, rows = run_eval(tmp_path, models["qwen2_5_vl"], "mmvp", hub["mmvp"], "--conditions", "real,blank",
                         "--scoring", "generate")
    summary = json.loads((out / "summary.json").read_text())
    for source in ("real", "blank"):
        responses = [r["response"] for r in sorted((r for r in rows if r["source"] == source),
                                                   key=lambda r: r["question_id"])]
        assert summary["metrics"][source] == pytest.approx(lmms_eval_metrics("mmvp", hub["mmvp"], responses))


def test_benchmarks_lmms_lists_what_can_be_asked():
    out = CliRunner().invoke(app, ["benchmarks", "--lmms", "--match", "m[mu][ve]*"])  # mmvp, mme, mme_cot...
    assert out.exit_code == 0, out.output
    lines = {line.split("│")[1].strip(): line for line in out.output.splitlines() if line.startswith("│ lmms:")}
    assert "│ yes" in lines["lmms:mmvp"] and "│ yes" in lines["lmms:mme"]
    assert "│ maybe" in lines["lmms:mme_cot_direct"]  # its prompts ask for no option: refused at load if none found
    assert "multiple choice with images" in out.output


# ----------------------------------------------------------------------------------------------- several images


@pytest.fixture(scope="module")
def muir(tmp_path_factory):
    return lmms_hub.muirbench(tmp_path_factory.mktemp("muirbench"))


def test_several_images_under_every_condition(muir):
    """Each condition applies its rule to every image of a question: blank blanks all, wrong takes another
    question's images (rank by rank), noise and shuffle draw per image, all at each image's own size."""
    from mirage.conditions import ConditionContext, get_condition

    bench = load_benchmark("lmms:muirbench", data_dir=str(muir))
    q, other = bench[0], bench[1]
    assert bench.prompt(q).startswith("Which picture shows a red square? <image> <image> <image>\nA. The first")
    ctx = ConditionContext(bench, seed=0)
    own = [q.image(k) for k in range(3)]
    made = {c: get_condition(c).images(q, ctx) for c in ("real", "blank", "noise", "wrong", "blur", "shuffle")}
    for name, images in made.items():
        assert [im.size for im in images] == [im.size for im in own], name
    assert [im.tobytes() for im in made["real"]] == [im.tobytes() for im in own]
    assert all((np.asarray(im) == 128).all() for im in made["blank"])
    assert made["wrong"][0].tobytes() == other.image(0).resize(own[0].size).tobytes()
    assert made["wrong"][1].tobytes() == other.image(1).resize(own[1].size).tobytes()
    assert made["noise"][0].tobytes() != made["noise"][2].tobytes()
    assert sorted(np.asarray(made["shuffle"][0]).reshape(-1, 3).tolist()) == \
        sorted(np.asarray(own[0]).reshape(-1, 3).tolist())


def test_several_images_placed_at_the_markers_equal_transformers(muir, models):
    """On a tiny Qwen2.5-VL, a question's three images stand where its text's `<image>` markers stand, and the
    answer logits equal transformers' own forward on the same ids and pixels (its M-RoPE over several images)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from mirage.models import Visual, load_model

    model = load_model(f"hf:{models['qwen2_5_vl']}", device="cpu")
    bench = load_benchmark("lmms:muirbench", data_dir=str(muir)).for_model(model)
    block = "<|vision_start|><|image_pad|><|vision_end|>"
    for q in bench:
        prompt = bench.prompt(q)
        images = [q.image(k) for k in range(len(q.images))]
        text = model.chat_text(prompt, len(images))
        assert text == f"<|im_start|>user\n{prompt.replace('<image>', block)}<|im_end|>\n<|im_start|>assistant\n"
        ours = model.next_token_logits([prompt, prompt], Visual("images", [images, images[::-1]]))
        ip = Qwen2VLImageProcessorPil.from_pretrained(models["qwen2_5_vl"])
        tok = AutoTokenizer.from_pretrained(models["qwen2_5_vl"])
        hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(models["qwen2_5_vl"]).eval()
        for row, ims in enumerate([images, images[::-1]]):
            out = ip(images=ims, return_tensors="pt")
            counts = (out["image_grid_thw"].prod(-1) // 4).tolist()
            ids = tok(text, add_special_tokens=False).input_ids
            pad = tok.convert_tokens_to_ids("<|image_pad|>")
            it = iter(counts)
            ids = [x for t in ids for x in ([pad] * next(it) if t == pad else [t])]
            with torch.no_grad():
                ids = torch.tensor([ids])
                theirs = hf(input_ids=ids, pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"],
                            mm_token_type_ids=(ids == pad).int()).logits[0, -1]
            torch.testing.assert_close(ours[row], theirs, rtol=1e-5, atol=1e-5)


def test_several_images_on_llava_equal_transformers(muir, models):
    """LLaVA-1.5 gets every image as lmms-eval's llava gives them: the official conversation with each image's
    block at its `<image>` marker; the answer logits equal transformers' LLaVA forward on the same ids and the
    model's own (official, padded) pixel values of the three images."""
    from transformers import LlavaForConditionalGeneration

    from mirage.models import Visual, load_model

    llava = load_model(f"hf:{models['llava']}", device="cpu")
    bench = load_benchmark("lmms:muirbench", data_dir=str(muir)).for_model(llava)
    hf = LlavaForConditionalGeneration.from_pretrained(models["llava"]).eval()
    prompts = [bench.prompt(q) for q in bench]
    images = [[q.image(k) for k in range(len(q.images))] for q in bench]
    ours = llava.next_token_logits(prompts, Visual("images", images))
    for row, (prompt, ims) in enumerate(zip(prompts, images)):
        text = llava.chat_text(prompt, len(ims))
        assert text.endswith(f"USER: {prompt} ASSISTANT:")  # each marker is the image placeholder itself
        ids = [x for t in llava.text_ids(text) for x in ([t] * llava.num_image_tokens if t == llava.image_token_id
                                                         else [t])]
        with torch.no_grad():
            theirs = hf(input_ids=torch.tensor([ids]), pixel_values=llava.process_images(ims)["vision"]).logits[0, -1]
        torch.testing.assert_close(ours[row], theirs, rtol=1e-5, atol=1e-5)
    # without markers, lmms-eval's llava writes the images' placeholders before the text, joined by spaces
    assert llava.chat_text("Which is larger?", 2).endswith("USER: <image> <image>\nWhich is larger? ASSISTANT:")


def test_several_images_through_the_cli(muir, models, tmp_path):
    """`mirage eval --benchmark lmms:muirbench` runs every condition on a tiny Qwen2.5-VL and a tiny LLaVA-1.5; a
    model that takes one image (the demo) and per-question optimization refuse such questions in one line."""
    conditions = "real,none,blank,noise,wrong,blur,shuffle"
    out, rows = run_eval(tmp_path, models["qwen2_5_vl"], "muirbench", muir, "--conditions", conditions)
    assert sorted({r["source"] for r in rows}) == sorted(conditions.split(",")) and len(rows) == 7 * 2
    probs = {r["source"]: r["probs"] for r in rows if r["question_id"] == "muirbench-00000"}
    assert probs["real"] != probs["blank"] != probs["none"]  # the images reach the model
    out, rows = run_eval(tmp_path, models["llava"], "muirbench", muir, "--conditions", conditions)
    assert len(rows) == 7 * 2  # LLaVA-1.5 too, as lmms-eval's llava asks it: every image
    refused = CliRunner().invoke(app, ["eval", "--model", "demo", "--benchmark", "lmms:muirbench", "--data-dir",
                                       str(muir), "--device", "cpu", "-q", "--conditions", "real",
                                       "--out", str(tmp_path / "demo")])
    assert refused.exit_code == 2 and "has 3 images; DemoVLM is asked 1 image per question" in \
        " ".join(refused.output.split())
    opt = CliRunner().invoke(app, ["optimize", "--model", "demo", "--benchmark", "lmms:muirbench", "--data-dir",
                                   str(muir), "--device", "cpu", "-q", "--steps", "1", "--out", str(tmp_path / "opt")])
    assert opt.exit_code == 2 and "is asked with 3 images; DemoVLM is asked 1 image per question here" in \
        " ".join(opt.output.split())


def optimize_muir(model_dir, muir, out, *extra):
    result = CliRunner().invoke(app, ["optimize", "--model", f"hf:{model_dir}", "--benchmark", "lmms:muirbench",
                                      "--data-dir", str(muir), "--device", "cpu", "-q", "--steps", "4",
                                      "--early-stop", "0", "--out", str(out), *extra])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] \
        if (out / "results.jsonl").exists() else []
    return result, {(r["question_id"], r["source"]): r for r in rows}


def test_per_question_inputs_hold_one_input_per_image(muir, models, tmp_path, monkeypatch):
    """`mirage optimize` on MuirBench-style questions (3 images each): one crafted input per image, optimized
    jointly. The loss goes down (against the same run at --lr 1e-9: its start), the first step's gradient reaches
    every image's input, each image's input is saved (`<qid>.safetensors`, `<qid>#2...`) and, read back, gives the
    row's answer;
    on a tiny Qwen2.5-VL (features) and a tiny LLaVA-1.5 (tokens)."""
    from safetensors.torch import load_file

    from mirage import optimize as loop
    from mirage.models import Visual, load_model

    step, grads = loop.SlotAdam.step, []

    def spy(self, active):
        grads.append([p.grad.flatten(1).norm(dim=1) for p in self.params])
        return step(self, active)

    monkeypatch.setattr(loop.SlotAdam, "step", spy)
    bench = load_benchmark("lmms:muirbench", data_dir=str(muir))
    for name, extra, stage in [("qwen2_5_vl", ["--input", "features", "--image-size", "56"], "features"),
                               ("llava", ["--input", "tokens"], "tokens")]:
        grads.clear()
        result, rows = optimize_muir(models[name], muir, tmp_path / name, "--batch-size", "2", *extra)
        assert result.exit_code == 0, result.output
        assert len(grads[0][0]) == 2 * 3 and all((g > 0).all() for g in grads[0])  # 2 questions x 3 images
        _, still = optimize_muir(models[name], muir, tmp_path / f"{name}-lr0", "--batch-size", "2", "--lr", "1e-9",
                                 *extra)
        source = f"{stage}-question"
        for q in bench:
            assert rows[q.id, source]["loss"] < still[q.id, source]["loss"]
        model = load_model(f"hf:{models[name]}", device="cpu", **({"image_size": 56} if name != "llava" else {}))
        for q in bench:
            row = rows[q.id, source]
            files = [tmp_path / name / "artifacts" / source / f"{q.id}{'#' + str(k + 1) if k else ''}.safetensors"
                     for k in range(3)]
            assert row["artifacts"] == [str(f.relative_to(tmp_path / name)) for f in files]
            saved = [load_file(str(f)) for f in files]
            value = {"vision": torch.stack([t["vision"] for t in saved])} if stage == "features" else \
                torch.stack([t["tokens"] for t in saved])
            with torch.no_grad():
                probs = model.choice_logits([bench.for_model(model).prompt(q)], Visual(stage, value, counts=(3,)),
                                            [len(q.choices)]).softmax(-1)[0]
            assert probs.tolist() == pytest.approx(row["probs"], abs=1e-4)


def test_several_image_pixels_resume_after_a_kill_and_are_rechecked_from_their_pngs(muir, models, tmp_path,
                                                                                   monkeypatch):
    """Per-question pixels on LLaVA-1.5, one question at a time: killed after the first question's row, the rerun
    starts only the second; every image of a question is written as a PNG and re-evaluated from the files through
    the real processor (`pixels-question-png`), quantized, to the optimized answer. A universal input stands for
    every image of every question."""
    from mirage import runs
    from mirage.inputs.base import Input

    append, started = runs.RunDir.append, []

    def killed(self, rows):
        append(self, rows)
        raise KeyboardInterrupt

    out = tmp_path / "pix"
    args = ("--input", "pixels", "--quantize", "--batch-size", "1")
    monkeypatch.setattr(runs.RunDir, "append", killed)
    result, before = optimize_muir(models["llava"], muir, out, *args)
    assert result.exit_code == 130 and list(before) == [("muirbench-00000", "pixels-question")]
    monkeypatch.setattr(runs.RunDir, "append", append)
    start = Input.start
    monkeypatch.setattr(Input, "start", lambda self, slot, key: started.append(key) or start(self, slot, key))
    result, rows = optimize_muir(models["llava"], muir, out, *args)
    assert result.exit_code == 0, result.output
    assert started == ["muirbench-00001"]  # the finished question is not redone
    assert rows[("muirbench-00000", "pixels-question")] == before[("muirbench-00000", "pixels-question")]
    pngs = sorted(p.name for p in (out / "artifacts" / "pixels-question").iterdir())
    assert pngs == sorted(f"muirbench-0000{i}{s}.png" for i in range(2) for s in ("", "#2", "#3"))
    for qid in ("muirbench-00000", "muirbench-00001"):
        assert rows[qid, "pixels-question-png"]["probs"] == pytest.approx(rows[qid, "pixels-question"]["probs"],
                                                                         abs=2e-4)
    result, rows = optimize_muir(models["llava"], muir, tmp_path / "uni", "--input", "pixels", "--scope",
                                 "universal", "--train", "1")
    assert result.exit_code == 0, result.output
    assert set(rows) == {("muirbench-00001", s) for s in ("pixels-universal", "pixels-universal-png")} | \
        {("muirbench-00000", "pixels-universal-train")}


def test_curate_keeps_every_image_and_the_curated_set_is_asked_as_the_original(muir, models, tmp_path):
    """`mirage curate` on a MuirBench-style run writes every image of a kept question, in order (`images`), with
    its prompt and `<image>` markers; `file:` reads them back as the same prompts and image bytes, and evaluating
    the curated set gives the original run's answers on every condition."""
    from mirage.cli import app as cli

    conditions = "real,none,blank,wrong"
    out, rows = run_eval(tmp_path, models["qwen2_5_vl"], "muirbench", muir, "--conditions", conditions)
    # both questions need the image in this run (right with it, wrong without): curate keeps both
    for r in rows:
        r["correct"] = r["source"] != "none"
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cur = CliRunner().invoke(cli, ["curate", str(out), "--out", str(tmp_path / "curated")])
    assert cur.exit_code == 0, cur.output
    lines = [json.loads(line) for line in (tmp_path / "curated" / "questions.jsonl").read_text().splitlines()]
    assert [line["images"] for line in lines] == [[f"images/0000{i}-{k}.png" for k in (1, 2, 3)] for i in (0, 1)]
    original = load_benchmark("lmms:muirbench", data_dir=str(muir))
    curated = load_benchmark(f"file:{tmp_path / 'curated' / 'questions.jsonl'}")
    assert curated.all_images and [q.id for q in curated] == [q.id for q in original]
    for a, b in zip(original, curated):
        assert curated.prompt(b) == original.prompt(a) and "<image>" in curated.prompt(b)
        assert [b.image(k).tobytes() for k in range(len(b.images))] == \
            [a.image(k).tobytes() for k in range(len(a.images))]
    again = tmp_path / "again"
    result = CliRunner().invoke(cli, ["eval", "--model", f"hf:{models['qwen2_5_vl']}", "--benchmark",
                                      f"file:{tmp_path / 'curated' / 'questions.jsonl'}", "--device", "cpu", "-q",
                                      "--out", str(again), "--conditions", conditions])
    assert result.exit_code == 0, result.output
    first = {(r["question_id"], r["source"]): r["probs"] for r in rows}
    second = {(r["question_id"], r["source"]): r["probs"]
              for r in map(json.loads, (again / "results.jsonl").read_text().splitlines())}
    assert second == first


def test_a_single_image_marker_places_the_image_there(models):
    """MMT-Bench's "Question: <image>": LLaVA-1.5 (the official conversation, as lmms-eval's llava keeps the
    marker) and Qwen2.5-VL read the image there; `none` leaves the marker out."""
    from mirage.models import load_model

    llava = load_model(f"hf:{models['llava']}", device="cpu")
    prompt = "Question: <image>\nWhat is the main object in the image?"
    assert llava.chat_text(prompt).endswith("USER: Question: <image>\nWhat is the main object in the image? ASSISTANT:")
    assert "<image>" not in llava.chat_text(prompt, False)
    qwen = load_model(f"hf:{models['qwen2_5_vl']}", device="cpu")
    assert qwen.chat_text(prompt).startswith("<|im_start|>user\nQuestion: <|vision_start|><|image_pad|><|vision_end|>"
                                             "\nWhat")
    assert qwen.chat_text(prompt, False).startswith("<|im_start|>user\nQuestion: \nWhat is")


def test_optimize_and_curate_take_lmms_tasks(hub, models, tmp_path):
    """`mirage optimize` crafts per-question inputs on an lmms task; `mirage curate` reloads the task a run names
    (its --data-dir from config.json) and writes the questions that need the image with lmms-eval's prompts."""
    out, rows = run_eval(tmp_path, models["qwen2_5_vl"], "mmvp", hub["mmvp"], "--conditions", "real,none")
    opt = CliRunner().invoke(app, ["optimize", "--model", f"hf:{models['qwen2_5_vl']}", "--benchmark", "lmms:mmvp",
                                   "--data-dir", str(hub["mmvp"]), "--device", "cpu", "-q", "--steps", "2",
                                   "--input", "features", "--image-size", "112", "--out", str(tmp_path / "opt")])
    assert opt.exit_code == 0, opt.output
    assert {json.loads(line)["source"] for line in (tmp_path / "opt" / "results.jsonl").read_text().splitlines()} \
        == {"features-question"}
    cur = CliRunner().invoke(app, ["curate", str(out), "--out", str(tmp_path / "curated")])
    assert cur.exit_code == 0, cur.output
    curation = json.loads((tmp_path / "curated" / "curation.json").read_text())
    assert curation["benchmark"] == "lmms:mmvp" and curation["n_evaluated"] == 3
    bench = load_benchmark("lmms:mmvp", data_dir=str(hub["mmvp"]))
    kept = [json.loads(line) for line in (tmp_path / "curated" / "questions.jsonl").read_text().splitlines()]
    assert all(row["prompt"] == bench.prompt(next(q for q in bench if q.id == row["id"])) for row in kept)


def test_words_conditions_keep_the_questions_own_options(hub):
    """`image-only` asks an lmms prompt with another question's words and the question's own option lines, post
    prompt and gold (the prompt split where its option A line starts)."""
    from mirage.conditions import ConditionContext, get_condition

    bench = load_benchmark("lmms:mmvp", data_dir=str(hub["mmvp"]))
    asked = get_condition("image-only").ask(bench[0], ConditionContext(bench, seed=0))
    assert bench.prompt(asked) == ("Is the school bus driving towards or away from the camera?\nA. Open\nB. Closed\n"
                                   "Answer with the option's letter from the given choices directly.")
    assert (asked.choices, asked.answer) == (bench[0].choices, bench[0].answer)


def test_a_question_whose_image_cannot_be_decoded_is_skipped_and_recorded(tmp_path):
    """An lmms-eval task's embedded image truncated: lmms-eval's import turns PIL's LOAD_TRUNCATED_IMAGES on (it
    would read it with its missing part grey), the load decodes strictly, skips that question and records it."""
    import pyarrow.parquet as pq
    from PIL import ImageFile

    root = lmms_hub.mmvp(tmp_path / "mmvp")
    path = root / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    big = lmms_hub.png(size=(64, 48))["bytes"]
    rows[1]["image"] = {"bytes": big[: len(big) // 2], "path": None}
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)
    bench = load_benchmark("lmms:mmvp", data_dir=str(root))
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # lmms-eval's, left as it set it
    assert len(bench) == 2 and len(bench.skipped) == 1
    (qid, why), = bench.skipped.items()
    assert qid not in {q.id for q in bench} and "truncated" in why
    assert bench.identity()["skipped_unreadable"] == bench.skipped
