"""What every command shares: the one console, the options declared once, the handling of user errors, and the
run-directory plumbing (torchrun world, timings)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console

from ..errors import MirageError, UsageError
from ..errors import loading_user_input as loading  # noqa: F401 (the commands' name for it)

console = Console(width=None if sys.stdout.isatty() else 130)  # logs and pipes get full tables
# What a user did wrong: printed as one red line. Anything else is a bug and shows its traceback.
EXPECTED = (MirageError, FileNotFoundError)

# --- options shared by several commands (the default stays at each command: they differ) -----------------------
Model = Annotated[str, typer.Option(help="Model spec: demo, demo:DIR, hf:<hub id or dir>, cambrian:<hub id or dir> or "
                                         "module:Class[:PATH] (a VLM of one's own).")]
BenchmarkName = Annotated[str, typer.Option(help="Benchmark: a name (mirage benchmarks), file:PATH (a JSONL file of "
                                                 "one's own) or spec:PATH (a spec file).")]
Split = Annotated[Optional[str], typer.Option(help="Benchmark split (default: the benchmark's own; mmmu: validation).")]
DataDir = Annotated[Optional[Path], typer.Option(help="A local copy of the benchmark in the hub's layout.")]
DataDirs = Annotated[Optional[list[str]], typer.Option(help="NAME=DIR: a benchmark's local copy (repeatable).")]
Subjects = Annotated[Optional[str], typer.Option(help="mmmu: comma-separated subjects.")]
AllQuestions = Annotated[bool, typer.Option(help="scienceqa: include questions without an image.")]
Config = Annotated[Optional[str], typer.Option(help="The benchmark's config: cvbench 2D/3D, mmmu-pro 10/4 options.")]
Circular = Annotated[bool, typer.Option(help="Ask every rotation of the options; correct only if all are (MMBench).")]
Out = Annotated[Path, typer.Option(help="Run directory (resumed if it exists with the same config).")]
Overwrite = Annotated[bool, typer.Option(help="Discard an existing run in OUT.")]
Device = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")]
Dtype = Annotated[Optional[str], typer.Option(
    help="float32/fp32, bfloat16/bf16 or float16/fp16 (default: bf16 on GPU, fp32 on CPU; demo: fp32).")]
DeviceMap = Annotated[Optional[str], typer.Option(
    help="hf: accelerate device map, e.g. auto (the default when several GPUs are visible).")]
ImageSize = Annotated[Optional[int], typer.Option(
    min=28, help="hf: the fixed square resolution of optimized inputs (Qwen2-VL: a multiple of 28, Qwen3-VL: of 32, "
    "default 448; the generic families: default the processor's own, see the README's model table).")]
AspectRatio = Annotated[Optional[str], typer.Option(
    help="hf LLaVA-1.5: pad (the official LLaVA code's, the default) or crop (the transformers processor's).")]
Conversation = Annotated[Optional[str], typer.Option(
    help="hf: the prompt. hf (the processor's chat template; the default except for LLaVA-1.5) or an official "
    "conversation: vicuna_v1 (LLaVA-1.5's official code, with its system line; its default), qwen_1_5 "
    "(LLaVA-OneVision's official code, as lmms-eval's llava_onevision runs), internvl2_5 (InternVL's chat()).")]
GpusPerRank = Annotated[int, typer.Option(
    min=1, help="torchrun: GPUs per rank; the model is split over them (e.g. 8 GPUs as 4 ranks x 2).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Prompt = Annotated[Optional[str], typer.Option(help="The prompt the benchmark is asked in: lmms-eval (its lmms-eval "
                                               "task's), model (the model family's own, e.g. mmstar_qwen for "
                                               "Qwen-VL), official (its official runner's: MMMU). Default: the "
                                               "benchmark's own (MMMU: official).")]
AllowEnvChange = Annotated[bool, typer.Option(
    help="Resume a run made under other library versions (recorded in config.json) instead of refusing.")]


# --- options every command declares alike but describes in its own words: OPTION("help") ------------------------
def _option(type_, *decls: str, **bounds):
    """An option's type, flag and bounds, declared once; each command passes its help (and may tighten a bound)."""
    def with_help(help: str, type=type_, **more):
        return Annotated[type, typer.Option(*decls, help=help, **(bounds | more))]
    return with_help


BatchSize = _option(int, min=1)
Limit = _option(Optional[int], min=1)
Steps = _option(int, min=1)
def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and value <= 0:  # Adam at lr 0 never moves the input: a run that only looks like one
        raise typer.BadParameter(f"{value} is not > 0")
    return value


Lr = _option(Optional[float], callback=_positive)
Seed = _option(int)
Encoders = _option(Optional[str])
Param = _option(str)
Method = _option(str)
InputKind = _option(str, "--input")
TextModel = _option(Optional[str])
Compile = _option(bool, "--compile")
EvalLimit = _option(int, min=1)


def fail(err: Exception) -> None:
    """Print a user error as one line and exit with status 2."""
    console.print(f"[bold red]error:[/] {err}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def user_errors(out: Optional[Path] = None) -> Iterator[None]:
    """Run a command's work: a user error (EXPECTED) or the GPU running out of memory (the batch or model too large
    for the card) becomes one red line and exit status 2; Ctrl-C says what the run directory `out` keeps and exits
    130."""
    from ..runs import discard_unstarted, interrupted, release_locks

    try:
        yield
    except EXPECTED as e:
        interrupted("failed")
        discard_unstarted()
        fail(e)
    except Exception as e:
        if not out_of_gpu_memory(e):
            raise
        interrupted("failed")
        discard_unstarted()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(MirageError(f"the GPU ran out of memory ({first.rstrip('.')}): a smaller --batch-size, or the command's "
                         f"memory switches (--help), make it fit; {kept(out)}"))
    except KeyboardInterrupt:
        interrupted()
        discard_unstarted()
        console.print(f"[bold yellow]interrupted:[/] {kept(out)}", highlight=False)
        raise typer.Exit(130) from None
    finally:
        release_locks()


def out_of_gpu_memory(err: BaseException) -> bool:
    """torch's CUDA out-of-memory error (torch is imported by then wherever a GPU ran)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(err, torch.cuda.OutOfMemoryError)


def kept(out: Optional[Path]) -> str:
    """What an interrupted run leaves: its finished rows, and that the same command resumes."""
    if out is None or not (out / "config.json").is_file():
        return "nothing was written."
    from ..runs import read_rows

    def count(run: Path) -> int:
        files = [run / "results.jsonl", *sorted(run.glob("results.rank*.jsonl"))]
        return len({(r["question_id"], r["source"]) for f in files if f.is_file() for r in read_rows(f)})

    inner = [d for d in sorted(out.iterdir()) if (d / "config.json").is_file()]  # a study's benchmarks
    n = count(out) + sum(count(d) for d in inner)
    where = f"{out} ({', '.join(d.name for d in inner)})" if inner else str(out)
    return f"{n} finished rows kept in {where}; rerun the same command to resume."


def names(csv: Optional[str]) -> Optional[list[str]]:
    """"a, b" -> ["a", "b"]; None or "" -> None."""
    return [x.strip() for x in csv.split(",") if x.strip()] if csv else None


def benchmark_options(name: str, data_dir: Optional[Path], subjects: Optional[str], all_questions: bool,
                      config: Optional[str] = None, circular: bool = False) -> dict:
    """The loader options a benchmark takes (the benchmark registry says which); a flag given to a benchmark that
    has no use for it is refused, naming the benchmarks that take it."""
    from ..benchmarks import BENCHMARKS, benchmark_options as taken_by, config_option

    key = config_option(name) or "config"  # --config is the spec's config keyword (mmmu-pro: options)
    given = {"data_dir": str(data_dir) if data_dir is not None else None, "subjects": names(subjects),
             "all_questions": True if all_questions else None, "circular": True if circular else None, key: config}
    opts = {k: v for k, v in given.items() if v is not None}
    taken = taken_by(name)
    for option in opts:
        if option not in taken:
            flag = "config" if option == key else option
            users = " and ".join(b for b in BENCHMARKS.names() if option in taken_by(b))
            raise UsageError(f"--{flag.replace('_', '-')} applies to {users}, not {name!r}")
    return opts


def data_dirs(given: list[str], benchmarks: list[str]) -> dict[str, dict]:
    """`--data-dir NAME=DIR` (or a bare DIR when one benchmark takes it) -> loader options by benchmark."""
    from ..benchmarks import benchmark_options as taken_by
    out: dict[str, dict] = {}
    for item in given:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        if not name:
            takers = [b for b in benchmarks if "data_dir" in taken_by(b)]
            if len(takers) != 1:
                raise UsageError(f"--data-dir {item!r}: say which benchmark it is for (NAME=DIR); "
                                 f"benchmarks that take one: {', '.join(takers) or 'none of ' + ', '.join(benchmarks)}")
            name = takers[0]
        if name not in benchmarks:
            raise UsageError(f"--data-dir {item!r}: {name!r} is not one of --benchmark {','.join(benchmarks)}")
        out[name] = benchmark_options(name, Path(path), None, False)
    return out


def model_options(device_map: Optional[str], image_size: Optional[int],
                  image_aspect_ratio: Optional[str] = None, conversation: Optional[str] = None) -> dict:
    """Backend options from the command line (a backend that takes none of them refuses them by name)."""
    opts = {"device_map": device_map, "image_size": image_size, "image_aspect_ratio": image_aspect_ratio,
            "conversation": conversation}
    return {k: v for k, v in opts.items() if v is not None}


def scale_out(device: Optional[str], gpus_per_rank: int):
    """Under torchrun: this rank's world, its device (cuda:<local rank> by default) and, with several GPUs per
    rank, the GPUs the model is split over. A single process gets rank 0 of 1."""
    import torch

    from ..distributed import init_world
    from ..models import parse_device

    if device is not None:
        parse_device(device)  # refused before anything is written
    world = init_world()
    options = {}
    if torch.cuda.is_available() and device is None and (world.distributed or gpus_per_rank > 1):
        gpus = world.gpus(gpus_per_rank)
        device = f"cuda:{gpus[0]}"
        if len(gpus) > 1:
            options["gpus"] = gpus
    return world, device, options


def open_run(out: Path, config: dict, overwrite: bool, world=None, allow_env_change: bool = False):
    """The run directory OUT (this rank's view under torchrun), created or resumed."""
    from ..distributed import SINGLE
    from ..distributed import open_run as open_for

    world = world or SINGLE
    run = open_for(out, config, world, overwrite, allow_env_change)
    if world.main:  # timings.json records this call from now on, whether it finishes or not
        run.start_invocation({"batch_size": run.config.get("batch_size"), "ranks": world.size})
    return run


def finish(run, world) -> list[dict]:
    """All rows of the run; under torchrun, rank 0 first merges every rank's rows into results.jsonl."""
    return run.merge() if world.distributed else run.rows()


def write_timings(run, load_s: float, work_s: float, world, extra: Optional[dict] = None) -> dict:
    """Complete this invocation's record in timings.json (`open_run` started it: its command line, batch size;
    now its model loading and work, the peak GPU memory of rank 0's devices, and `extra`: e.g. the batch size
    `--batch-size auto` chose and its measurements); `total` sums every invocation, so a resumed run keeps what the
    earlier ones took, interrupted ones included."""
    import torch

    t = {"load_s": round(load_s, 1), "work_s": round(work_s, 1), **(extra or {})}
    if torch.cuda.is_available():
        t["peak_gb"] = {i: round(torch.cuda.max_memory_allocated(i) / 2**30, 2)
                        for i in range(torch.cuda.device_count()) if torch.cuda.max_memory_allocated(i)}
    return run.log_invocation(t)
