"""The optimization experiment (`mirage optimize` for features, pixels and tokens, and the study's parts): build the
input, run its scope through `optimize`'s loops, write artifacts, and re-check every saved image from its PNG file
through the model's real processor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from PIL import Image

from .. import sources
from ..benchmarks.question import Benchmark, Question
from ..compiling import compile_blocks
from ..conditions import Condition, ConditionContext
from ..distributed import SINGLE, World
from ..errors import UsageError
from ..evaluate import check_prompts, evaluate_conditions
from ..inputs import INPUTS, PARAMS, Reference, build_input, default_lr
from ..models.vlm import SEVERAL_IMAGE_FAMILIES, VLM
from ..objectives import OBJECTIVES
from ..optimize import OptimizeConfig, optimize_questions, optimize_universal, universal_rows
from ..registry import did_you_mean
from ..runs import RunDir
from ..sources import SCOPES
from .common import check_train


UNIVERSAL_ONLY = ("patch", "generator")  # trained as one input for a train set: --scope universal is implied
# The inputs each switch changes (tokens come after the connector, so no encoder subset reaches them).
FLAG_INPUTS = {"--param": ("pixels",), "--quantize": ("pixels",), "--resolution": ("pixels",),
               "--encoders": ("features", "pixels"), "--detach": ("features",), "--soft-tokens": ("soft-prompt",)}


@dataclass
class OptimizeSpec:
    """What to optimize: input kind, scope, parameterization, encoder subset, objective and switches."""

    input: str = "features"
    scope: str | None = None  # None: universal for inputs trained as one (patch, generator), else question
    param: str = "sigmoid"
    encoders: list[str] | None = None
    detach: list[str] | None = None
    objective: str = "ce"
    quantize: bool = False
    resolution: int | None = None
    train: int = 500  # universal: the first `train` questions train, the rest are held out
    soft_tokens: int | None = None  # soft-prompt: its vectors (None: as many as the model's image tokens)
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        INPUTS.get(self.input)  # unknown names fail with "did you mean"
        OBJECTIVES.get(self.objective)
        if self.scope is None:
            self.scope = "universal" if self.input in UNIVERSAL_ONLY else "question"
        if self.scope not in SCOPES:
            raise UsageError(f"--scope: {did_you_mean('scope', self.scope, list(SCOPES))}")
        if self.param not in PARAMS:
            raise UsageError(f"--param: {did_you_mean('pixel parameterization', self.param, list(PARAMS))}")
        # A switch the input has no use for would run unchanged under another name: refused by name.
        given = {"--param": self.param != "sigmoid", "--quantize": self.quantize,
                 "--resolution": self.resolution is not None, "--encoders": bool(self.encoders),
                 "--detach": bool(self.detach), "--soft-tokens": self.soft_tokens is not None}
        for flag, inputs in FLAG_INPUTS.items():
            if given[flag] and self.input not in inputs:
                raise UsageError(f"{flag} applies to --input {' or '.join(inputs)}, not {self.input}")

    @property
    def source(self) -> str:
        """Result rows' source name: `<input>-<scope>`, plus the encoder subset for single-encoder runs."""
        return sources.optimized(self.input, self.scope, self.encoders)

    def source_for(self, model: VLM) -> str:
        """`source`, marked `-text-model` when `model` is a text model (no encoders: the soft prompt on the base
        LLM), so its rows stand beside the VLM's in one run."""
        return sources.optimized(self.input, self.scope, self.encoders, text_model=not model.encoders)

    def to_config(self) -> dict:
        return asdict(self)


def apply_switches(model: VLM, spec: OptimizeSpec, grad_checkpointing: bool = False, offload: bool = False,
                   compile: bool | str = False) -> None:
    """Memory switches: gradient checkpointing of the LM and encoders; unused encoders moved to the CPU. Speed switch:
    `compile` (True, or a torch.compile backend name) compiles the model's repeated blocks."""
    if grad_checkpointing:  # each backend names the parts (`VLM.checkpointed_parts`)
        model.set_gradient_checkpointing(True)
    if offload:
        if not model.separate_encoders():
            raise UsageError(f"--offload-unused-encoders: {type(model).__name__} has no separately held encoders "
                             "to move (it applies to the demo model and Cambrian-1)")
        model.offload_encoders((spec.encoders or [s.name for s in model.encoders]) if spec.input == "pixels" else [])
    if compile:
        if compile_blocks(model, "inductor" if compile is True else compile) == 0:
            raise UsageError(f"--compile: {type(model).__name__} has no repeated blocks to compile")


def clear_switches(model: VLM) -> None:
    """Undo `apply_switches`' memory switches: checkpointing off, every encoder back on the model's device, eval
    mode (`experiments.fit` tries them one after another on the same model)."""
    model.set_gradient_checkpointing(False)  # and eval mode
    model.onload_encoders()


def onload(model: VLM) -> None:
    """Encoders offloaded by `apply_switches` back on the model's device."""
    model.onload_encoders()


def spec_input(model: VLM, spec: OptimizeSpec, cfg: OptimizeConfig, slots: int, ref: Reference, images: int = 1):
    """The input `spec` optimizes, with `slots` parameter slots of `images` images each."""
    return build_input(spec.input, model, slots, ref, images, param=spec.param, encoders=spec.encoders,
                       detach=spec.detach,
                       quantize=spec.quantize, resolution=spec.resolution, soft_tokens=spec.soft_tokens,
                       seed=cfg.seed, **spec.options)


def png_condition(run: RunDir, source: str, universal: bool) -> Condition:
    """A condition showing each question its saved PNG (or the one universal PNG), read from disk."""
    def make(q: Question, ctx: ConditionContext) -> Image.Image:
        path = run.artifacts_dir / (f"{source}.png" if universal else f"{source}/{q.id}.png")
        with Image.open(path) as im:
            return im.convert("RGB")
    return Condition(sources.png(source), make)


def most_images(bench: Benchmark) -> tuple[int, Question | None]:
    """The most images a question of `bench` is asked with (1 unless it asks every image, `Benchmark.all_images`)
    and that question."""
    many = max(bench.questions, key=lambda q: len(q.images), default=None) if bench.all_images else None
    return (len(many.images), many) if many is not None and len(many.images) > 1 else (1, None)


def refuse_several_images(bench: Benchmark, what: str) -> None:
    """`what` (an input trained by its own experiment: the patch, the generator) stands for one image per question:
    a benchmark whose questions are asked with several images is refused by name."""
    k, many = most_images(bench)
    if many is not None:
        raise UsageError(f"{bench.name}: question {many.id!r} is asked with {k} images; {what} replaces one image "
                         "per question (one input per image: --input features, pixels or tokens)")


def images_per_question(model: VLM, bench: Benchmark) -> int:
    """How many images an optimized input holds per question of `bench` (one per image it is asked with; 1 for a
    one-image benchmark); a model that is asked fewer images per question (`VLM.max_images`) is refused by name."""
    k, many = most_images(bench)
    limit = getattr(model, "max_images", 1)
    if k > limit:
        raise UsageError(f"{bench.name}: question {many.id!r} is asked with {k} images; {type(model).__name__} is "
                         f"asked {limit} image{'s' * (limit > 1)} per question here (several: {SEVERAL_IMAGE_FAMILIES}; "
                         "see the README)")
    return k


def input_images(model: VLM, spec: OptimizeSpec, bench: Benchmark) -> int:
    """The images `spec`'s input holds per slot on `bench`: one per image of a question asked with several (per
    question), else 1 (a universal input stands for every image; the soft prompt for none). Checks the model takes
    that many (`images_per_question`)."""
    if spec.input == sources.SOFT_PROMPT:
        return 1
    k = images_per_question(model, bench)
    return k if spec.scope == "question" else 1


def with_images(bench: Benchmark, what: str, text_only_ok: bool = False) -> Benchmark:
    """The questions an optimized input can stand in for: those with an image (a text-only question has no image
    to replace, as the image conditions skip it); the rest are skipped and said so, none left is refused, unless
    `text_only_ok`: a benchmark with no image at all is then kept whole (a universal input trained where there is
    nothing to see, the control of `blind.text_only_match`)."""
    kept = [q for q in bench.questions if q.images]
    if len(kept) == len(bench.questions) or not kept and text_only_ok:
        return bench
    if not kept:
        raise UsageError(f"{what}: none of the {len(bench)} questions of {bench.name} has an image to replace")
    from ..progress import warn

    warn(f"{what}: skipped {len(bench) - len(kept)} of {len(bench)} questions without an image (as the image "
         "conditions skip them)")
    return replace(bench, questions=kept)


def run_optimization(model: VLM, bench: Benchmark, spec: OptimizeSpec, cfg: OptimizeConfig, run: RunDir,
                     ref: Reference | None = None, quiet: bool = True, world: World = SINGLE) -> list[dict]:
    """Run `spec` (an input of `optimize`'s loops: features, pixels, tokens) on `bench` into `run`; returns all rows
    it produced (resumes from rows already in `run`). Under torchrun (`world`), questions are sharded and universal
    gradients summed across ranks. `mirage.experiments.run_input` dispatches every `--input`, patch and generator
    included."""
    bench = with_images(bench.for_model(model), f"--input {spec.input}", text_only_ok=spec.scope == "universal"
                        or spec.input == sources.SOFT_PROMPT)
    images = input_images(model, spec, bench)  # per slot: one per image of a several-image question
    check_prompts(model, bench, world=world)
    ref = ref or Reference.from_benchmark(model, bench)
    objective = OBJECTIVES.get(spec.objective)
    lr = cfg.lr if cfg.lr is not None else default_lr(spec.input, spec.param)  # 0 is a value: no update
    source = spec.source_for(model)
    if spec.scope == "question":
        cfg = replace(cfg, batch_size=min(cfg.batch_size, len(bench)))  # slots are allocated: no more than questions
        inp = spec_input(model, spec, cfg, cfg.batch_size, ref, images)
        optimize_questions(model, bench, inp, objective, cfg, source, run, lr, quiet, world)
        if spec.input == "pixels":
            onload(model)  # the re-check runs every encoder on the real processor's output
            # at the optimization's batch: a batch that fits its training step fits a forward (auto sizes it so)
            evaluate_conditions(model, bench, [png_condition(run, source, False)], batch_size=cfg.batch_size,
                                run=run, quiet=quiet, world=world)
        return [r for r in run.rows() if r["source"] in (source, sources.png(source))]
    check_train(spec.train, len(bench))
    train, held_out = bench.questions[: spec.train], bench.questions[spec.train :]
    cfg = replace(cfg, batch_size=min(cfg.batch_size, len(train)))  # a step sees each train question once at most
    inp = spec_input(model, spec, cfg, 1, ref)
    optimize_universal(model, bench, train, inp, objective, cfg, source, run, lr, quiet, world=world)
    with torch.no_grad():
        universal_rows(model, bench, held_out, inp, objective, source, run, cfg.batch_size, world)
        universal_rows(model, bench, train, inp, objective, sources.train(source), run, cfg.batch_size, world)
    if spec.input == "pixels":
        onload(model)
        evaluate_conditions(model, replace(bench, questions=list(held_out)), [png_condition(run, source, True)],
                            batch_size=cfg.batch_size, run=run, quiet=quiet, world=world)
    names = {source, sources.train(source), sources.png(source)}
    return [r for r in run.rows() if r["source"] in names]
