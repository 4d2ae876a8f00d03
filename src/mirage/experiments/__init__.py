"""Experiments: one module per experiment, each with one runner taking the model and the benchmark and writing
into a run directory (the study calls them all in one shape: `study.RUNNERS`).

    optimization   features / pixels / tokens through `optimize`'s loops (`run_optimization`)
    patch_attack   a universal adversarial patch on real images (`run_patch`)
    generator      the question-conditioned generator (`run_generator`; its training loop: generator_train)
    inversion      two-stage inversion of optimized features into pixels (`run_inversion`)
    saliency       saliency maps with the pointing game (`run_saliency`)
    transfer       universal inputs across benchmarks and question types (`transfer_matrix`, `type_transfer`)
    study          the study of a model on several benchmarks: a list of named parts of the above (`run_study`),
                   sized by a preset (presets: demo, quick, paper)

`run_input` is the one dispatcher from `--input` to its runner.
"""

from __future__ import annotations

from typing import Callable

from ..benchmarks.question import Benchmark
from ..distributed import SINGLE, World
from ..errors import UsageError
from ..evaluate import check_prompts
from ..inputs import Reference
from ..models.vlm import VLM
from ..optimize import OptimizeConfig
from ..runs import RunDir
from .common import check_train
from .generator import run_generator
from .optimization import OptimizeSpec, apply_switches, png_condition, refuse_several_images, run_optimization
from .patch_attack import run_patch

# Inputs trained by their own experiment, not `optimize`'s loops: each step needs the questions' real images (patch)
# or texts (generator), which `Input.forward(slots)` never sees. input -> runner(model, bench, run, **options).
OWN_LOOPS: dict[str, Callable[..., dict]] = {"patch": run_patch, "generator": run_generator}


def own_loop(kind: str) -> Callable[..., dict] | None:
    """The runner of an input with its own experiment (`run_patch`, `run_generator`), or None for `optimize`'s."""
    return OWN_LOOPS.get(kind)


def run_input(model: VLM, bench: Benchmark, spec: OptimizeSpec, cfg: OptimizeConfig, run: RunDir,
              ref: Reference | None = None, quiet: bool = True, world: World = SINGLE) -> list[dict]:
    """Run `spec` on `bench` into `run` by its input's runner; returns the rows it produced (resumable)."""
    runner = own_loop(spec.input)
    if runner is None:
        return run_optimization(model, bench, spec, cfg, run, ref, quiet, world)
    refuse_several_images(bench, f"--input {spec.input}")
    bench = bench.for_model(model)
    check_prompts(model, bench, world=world)
    if spec.scope != "universal":
        raise UsageError(f"--input {spec.input} trains one input for a train set: use --scope universal")
    check_train(spec.train, len(bench))
    if world.distributed:
        raise UsageError(f"--input {spec.input} runs in one process (no torchrun sharding yet)")
    runner(model, bench, run, train=spec.train, steps=cfg.steps, seed=cfg.seed, quiet=quiet,
           **({"lr": cfg.lr} if cfg.lr is not None else {}), **spec.options)
    return run.rows()


__all__ = ["OWN_LOOPS", "OptimizeSpec", "apply_switches", "own_loop", "png_condition", "run_input",
           "run_optimization"]
