"""The study's presets as data (big_vision's config style): each is a function returning the sizes of every part,
with the command that runs it in its docstring and, for the demo, the numbers it is expected to give.

A size is a number of questions (the benchmark's first ones); `None` means all of them. `--limit N` caps every
size at N (universal: half train, half held out).
"""

from __future__ import annotations

from typing import Callable

from ..registry import Registry

PRESETS: Registry[Callable[[], dict]] = Registry("preset")


@PRESETS.register("demo")
def demo() -> dict:
    """The default study on the bundled demo model and ShapesQA (1,000 test questions).

        mirage study      # = mirage study --model demo --benchmark shapes --preset demo; 2 CPU cores: 5-6.5 min

    Expected numbers (seed 0, the shipped weights; bench/RESULTS.md): `expected` below, within `tolerance`.
    """
    return dict(
        condition_questions=None, features_question=200, pixels_question=100, universal_train=500,
        universal_heldout=500, single_encoder=100, saliency=32, inversion=16, steps=50, universal_steps=50, inversion_steps=100,
        batch_size=16, soft_prompt_question=100, soft_prompt_universal=True,
        tst_rf=None, tst_lm=200, tst_epochs=2,  # trained blind: the forest on all, the base LM on 200
        expected={"real": 1.000, "blank": 0.372, "noise": 0.378, "wrong": 0.383, "blur": 0.376, "shuffle": 0.617,
                  "features-question": 1.000, "pixels-question": 1.000, "pixels-question-png": 1.000,
                  "features-universal": 0.384},
        tolerance=0.03,  # universal pixels vary 0.370-0.384 over three runs; bench/RESULTS.md
    )


@PRESETS.register("quick")
def quick() -> dict:
    """Minutes per benchmark on one GPU for a 7B model: a first look at whether crafted inputs replace the image.

        mirage study --model hf:llava-hf/llava-1.5-7b-hf --benchmark mmstar,scienceqa --preset quick --out runs/q

    Conditions on the first 300 questions, 32 per-question features, 16 pixels, universal 64/64, 30 steps.
    """
    return dict(
        condition_questions=300, features_question=32, pixels_question=16, universal_train=64, universal_heldout=64,
        single_encoder=16, saliency=8, inversion=0, steps=30, universal_steps=30, inversion_steps=50,
        batch_size=16, soft_prompt_question=16, soft_prompt_universal=True, tst_rf=300, tst_lm=300, tst_epochs=5,
    )


@PRESETS.register("paper")
def paper() -> dict:
    """The sizes a publication would use: every question under every condition, 200 per-question inputs of each
    kind, universal inputs trained on 500 and scored on 500 held-out questions, 100 steps; the controls: the soft
    prompt per question (200) and universal, on the VLM's text path and (with --text-model) on its base LLM.

        torchrun --nproc-per-node 8 -m mirage study --model hf:Qwen/Qwen2.5-VL-7B-Instruct \\
            --benchmark mmstar,ai2d,mmmu,scienceqa --preset paper --out runs/paper
    """
    return dict(
        condition_questions=None, features_question=200, pixels_question=200, universal_train=500,
        universal_heldout=500, single_encoder=200, saliency=64, inversion=32, steps=100, universal_steps=100, inversion_steps=200,
        batch_size=16, soft_prompt_question=200, soft_prompt_universal=True, soft_prompt_text_model=True,
        tst_rf=None, tst_lm=None, tst_epochs=5,
    )


def preset(name: str) -> dict:
    """The preset `name` (an unknown name fails with "did you mean")."""
    return PRESETS.get(name)()
