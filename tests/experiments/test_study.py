"""The study on two benchmarks (ShapesQA and the ScienceQA fixture) with a tiny model: every part's rows per
benchmark, the cross-benchmark table equal to each benchmark's summary, a SIGKILL mid-study resumed to what an
uninterrupted run gives, the Python API, and the presets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest


from mirage.blind import blind_measures, shuffle_decomposition, soft_prompt_control
from mirage.errors import MirageError
from mirage.experiments.presets import PRESETS, preset
from mirage.experiments.study import StudyPlan, benchmark_dir
from mirage.runs import read_rows
from mirage.stats import paired_difference, summarize

ENCODERS = ("clip", "siglip", "dino", "convnext")
CONDITIONS = ("real", "none", "blank", "noise", "wrong", "blur", "shuffle", "image-only", "both", "text-model")


def rows_by_key(path):
    return {(r["question_id"], r["source"]): r for r in read_rows(path, repair=False)}


def test_every_part_has_its_rows_per_benchmark(tiny_study):
    out, output = tiny_study
    config = json.loads((out / "config.json").read_text())
    assert config["benchmarks"] == ["shapes", "scienceqa"] and config["dirs"] == {"shapes": "shapes",
                                                                                  "scienceqa": "scienceqa"}
    for name in ("shapes", "scienceqa"):
        rows = read_rows(out / name / "results.jsonl")
        ids = sorted({r["question_id"] for r in rows if r["source"] == "real"})
        assert len(ids) == 4  # --limit 4 (ScienceQA: its image questions)
        by_source: dict[str, set] = {}
        for r in rows:
            by_source.setdefault(r["source"], set()).add(r["question_id"])
        for c in CONDITIONS:
            assert by_source[c] == set(ids), (name, c)
        for s in ("features-question", "pixels-question", "pixels-question-png", "inversion-question-from-blank",
                  "inversion-question-from-blank-png", *(f"features-question-{e}" for e in ENCODERS)):
            assert by_source[s] == set(ids), (name, s)
        # universal: 2 train, 2 held out (--limit 4)
        assert by_source["features-universal"] == by_source["pixels-universal"] == by_source["pixels-universal-png"]
        assert len(by_source["features-universal"]) == 2 and len(by_source["features-universal-train"]) == 2
        assert not by_source["pixels-universal"] & by_source["pixels-universal-train"]
        # the soft-prompt control, per question and universal on the same held-out questions
        assert by_source["soft-prompt-question"] == set(ids), name
        assert by_source["soft-prompt-universal"] == by_source["pixels-universal"]
        control = json.loads((out / name / "summary.json").read_text())["soft_prompt"]
        assert control == soft_prompt_control(rows)
        assert set(control["question"]["sources"]) == {"features-question", "pixels-question", "pixels-question-png",
                                                        "soft-prompt-question"}
        assert len(control["universal"]["sentences"]) == 3  # features, pixels and the pixels' PNG
        saliency = read_rows(out / name / "saliency.jsonl")
        assert {r["question_id"] for r in saliency} == set(ids)
        assert (out / name / "summary.json").is_file() and (out / name / "artifacts" / "pixels-universal.png").is_file()
    assert "every benchmark" in output and "report:" in output
    assert "crafted inputs against the soft prompt on shapes" in output
    control = json.loads((out / "shapes" / "summary.json").read_text())["soft_prompt"]
    for sentence in control["question"]["sentences"] + control["universal"]["sentences"]:  # the report's words
        assert " ".join(sentence.split()) in " ".join(output.split())


def test_cross_benchmark_table_equals_each_benchmarks_summary(tiny_study):
    out, _ = tiny_study
    study = json.loads((out / "summary.json").read_text())
    assert [line["benchmark"] for line in study["table"]] == ["shapes", "scienceqa"]
    for line in study["table"]:
        sub = out / line["dir"]
        summary = json.loads((sub / "summary.json").read_text())
        assert study["benchmarks"][line["benchmark"]] == summary
        rows = read_rows(sub / "results.jsonl")
        again = summarize(rows)  # the summary is the rows' statistics, not numbers carried from elsewhere
        assert line["S_v"] == {"n": again["n"]["real"], "value": again["accuracy"]["real"],
                               "ci95": again["ci95"]["real"]}
        blind = blind_measures(rows)
        for m in ("S_v", "S_wv", "S_t", "MG", "ML"):  # MMStar's measures, from the rows with their intervals
            assert line[m] == blind[m] == summary["blind"][m], m
        shuffle = shuffle_decomposition(rows)  # the decomposition, from the rows (chance needs the questions)
        for m in ("pair", "image_only", "text_only", "neither", "image_adds", "text_adds", "pair_beyond"):
            assert line["shuffle"][m] == shuffle[m] == summary["shuffle"][m], m
        assert line["shuffle"]["pair"] == line["S_v"] and 0 < line["shuffle"]["chance"]["value"] < 1
        crafted = [s for s in again["n"] if s.split("-")[0] in ("features", "pixels") and not s.endswith("-train")]
        best = max(crafted, key=lambda s: (again["accuracy"][s], again["n"][s]))
        assert line["best_crafted"]["source"] == best
        assert line["best_crafted"]["value"] == again["accuracy"][best]
        of = lambda s: {r["question_id"]: r["correct"] for r in rows if r["source"] == s}  # noqa: E731
        a, b = of(best), of("real")
        shared = sorted(a.keys() & b.keys())
        diff = paired_difference([a[q] for q in shared], [b[q] for q in shared])
        assert line["best_crafted"]["vs_real"] == {"n": len(shared), "difference": diff["difference"],
                                                   "ci95": diff["ci95"], "p": diff["mcnemar"]["p"]}


def test_resume_after_sigkill_equals_uninterrupted(tiny_study, study_env, study_args, tmp_path):
    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIRAGE_CACHE": str(study_env[0])}
    proc = subprocess.Popen([sys.executable, "-m", "mirage", *study_args(study_env[1], out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_rows(out / "shapes" / "results.jsonl", repair=False)) < 30:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the process this test started, by its id
    proc.wait()
    assert not (out / "summary.json").exists()  # killed mid-study
    res = CliRunner().invoke(app, study_args(study_env[1], out))  # the same command again
    assert res.exit_code == 0, res.output
    whole = tiny_study[0]
    for name in ("shapes", "scienceqa"):
        for file in ("results.jsonl", "saliency.jsonl"):
            a, b = rows_by_key(whole / name / file), rows_by_key(out / name / file)
            assert a.keys() == b.keys(), (name, file)
            for k in a:
                assert (a[k].get("pred"), a[k].get("correct")) == (b[k].get("pred"), b[k].get("correct")), k
                if "probs" in a[k]:
                    assert a[k]["probs"] == pytest.approx(b[k]["probs"], abs=2e-3), k
    table = lambda d: json.loads((d / "summary.json").read_text())["table"]  # noqa: E731
    assert [(line["benchmark"], line["S_v"]["value"], line["best_crafted"]["source"]) for line in table(out)] == \
        [(line["benchmark"], line["S_v"]["value"], line["best_crafted"]["source"]) for line in table(whole)]


def test_a_larger_limit_grows_every_part_and_keeps_its_rows(tiny_study, study_env, study_args, tmp_path):
    """The study's --limit 4 run again with --limit 6 in its directory: every row it held stays byte for byte and
    nothing is computed again; per-question parts and the conditions take the 2 new questions; the universal inputs
    keep their train split (2, recorded in the plan) and score the new questions as held out, untrained again; the
    cross-fitted trained-blind parts keep their questions. Was: refused (limit, n_questions, plan)."""
    import shutil

    from typer.testing import CliRunner

    from mirage.cli import app

    out = tmp_path / "grown"
    shutil.copytree(tiny_study[0], out)
    before = {name: (out / name / "results.jsonl").read_text().splitlines() for name in ("shapes", "scienceqa")}
    trained = {p: p.read_bytes() for p in (out / "shapes" / "artifacts").glob("*universal*.ckpt.pt")}
    args = study_args(study_env[1], out)
    args[args.index("--limit") + 1] = "6"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "config.json").read_text())["plan"]
    assert (plan["universal_train"], plan["universal_heldout"], plan["features_question"]) == (2, 4, 6)
    assert plan["tst_rf"] == plan["tst_lm"] == 4  # kept (here too few questions for 5 folds: no rows either way)
    assert trained and all(p.read_bytes() == b for p, b in trained.items())
    for name, first in before.items():
        lines = (out / name / "results.jsonl").read_text().splitlines()
        assert lines[: len(first)] == first, name
        assert len({(r["question_id"], r["source"]) for r in map(json.loads, lines)}) == len(lines)  # none twice
        by_source: dict[str, set] = {}
        for r in map(json.loads, lines):
            by_source.setdefault(r["source"], set()).add(r["question_id"])
        old = {}
        for r in map(json.loads, first):
            old.setdefault(r["source"], set()).add(r["question_id"])
        ids = by_source["real"]
        assert len(ids) == 6 and old["real"] < ids
        for s in ("none", "blur", "text-model", "features-question", "pixels-question-png", "soft-prompt-question"):
            assert by_source[s] == ids, (name, s)
        assert by_source["features-universal-train"] == old["features-universal-train"]  # the train split kept
        assert by_source["features-universal"] == by_source["pixels-universal-png"] == ids - old[
            "features-universal-train"]  # the new questions held out


def test_python_api_returns_the_summary(tiny_study, study_env):
    import mirage

    out = tiny_study[0]
    summary = mirage.study(f"demo:{study_env[1]}", ["shapes", "scienceqa"], preset="demo", out=out, limit=4,
                           steps=2, batch_size=2, device="cpu", quiet=True, text_model=f"hf:{study_env[1].parent / 'lm'}",
                           options={"scienceqa": {"data_dir": "/work/shared/fixtures/scienceqa"}})
    assert summary == json.loads((out / "summary.json").read_text())  # resumed: nothing redone, same numbers


def test_a_different_study_in_the_same_directory_is_refused(tiny_study, study_env):
    import mirage

    with pytest.raises(MirageError, match="different config"):
        mirage.study(f"demo:{study_env[1]}", "shapes", out=tiny_study[0], limit=4, steps=2, batch_size=2,
                     device="cpu", quiet=True)


def test_presets_are_data_with_their_sizes():
    assert set(PRESETS.names()) >= {"demo", "quick", "paper"}
    assert StudyPlan.from_preset("demo") == StudyPlan()  # `mirage study` with no arguments: the study as before
    paper = StudyPlan.from_preset("paper")
    assert paper.condition_questions is None  # every question under every condition
    assert min(paper.features_question, paper.pixels_question) >= 200
    assert paper.universal_train >= 500 and paper.universal_heldout >= 500
    quick = StudyPlan.from_preset("quick")
    assert quick.features_question < paper.features_question and quick.steps < paper.steps
    assert "expected" in preset("demo") and preset("demo")["expected"]["real"] == 1.0
    for name in PRESETS:  # each preset's docstring carries the command that runs it
        assert "mirage study" in PRESETS.get(name).__doc__
    capped = quick.capped(10)
    assert (capped.condition_questions, capped.features_question, capped.universal_train,
            capped.universal_heldout) == (10, 10, 5, 5)
    with pytest.raises(MirageError, match="did you mean 'quick'"):
        StudyPlan.from_preset("quik")


def test_the_soft_prompt_has_the_crafted_inputs_budget():
    """The soft-prompt control's parts run with the very configs of the crafted inputs of their scope (steps, lr
    rule, early stop, seed, batch), under every preset, `--steps` and `--seed`; the paper preset also runs it on the
    base LLM, with the same budget."""
    from mirage.experiments.study import study_parts

    for name in PRESETS:
        for plan, seed in ((StudyPlan.from_preset(name), 0), (StudyPlan.from_preset(name, steps=7, universal_steps=7), 3)):
            parts = {p.name: p for p in study_parts(plan, ENCODERS, seed, text_model="demo")}
            for scope in ("question", "universal"):
                soft = parts[f"soft-prompt-{scope}"].settings["cfg"]
                for crafted in (f"features-{scope}", f"pixels-{scope}"):
                    assert parts[crafted].settings["cfg"] == soft, (name, crafted)
                assert soft.seed == seed and soft.lr is None  # the lr rule: --lr, else each input's default
                if plan.soft_prompt_text_model:
                    assert parts[f"soft-prompt-{scope}-text-model"].settings["cfg"] == soft
            assert parts["soft-prompt-universal"].n == parts["features-universal"].n  # the same held-out questions
    assert StudyPlan.from_preset("paper").soft_prompt_text_model


def test_benchmark_dirs_are_safe_names():
    assert benchmark_dir("mmstar") == "mmstar"
    assert benchmark_dir("file:/data/my questions.jsonl") == "file_my_questions"
    assert benchmark_dir("spec:/x/y.toml") == "spec_y"


def test_sharded_study_equals_one_process(tiny_study, study_env, study_args, tmp_path):
    """Under torchrun (2 gloo ranks) the parts that shard split the questions; the rows equal one process's."""
    out = tmp_path / "sharded"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIRAGE_CACHE": str(study_env[0])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mirage",
           *study_args(study_env[1], out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    whole = tiny_study[0]
    for name in ("shapes", "scienceqa"):
        a, b = rows_by_key(whole / name / "results.jsonl"), rows_by_key(out / name / "results.jsonl")
        assert a.keys() == b.keys(), name
        for k in a:  # universal inputs sum their gradients across ranks: equal up to summation order only
            if "universal" not in k[1]:
                assert (a[k]["pred"], a[k]["correct"]) == (b[k]["pred"], b[k]["correct"]), k
        assert not list((out / name).glob("results.rank*.jsonl"))  # rank 0 merged every rank's rows
        assert json.loads((out / name / "config.json").read_text())["environment"]["world_size"] == 2
    assert json.loads((out / "summary.json").read_text())["table"][0]["S_v"] == \
        json.loads((whole / "summary.json").read_text())["table"][0]["S_v"]
