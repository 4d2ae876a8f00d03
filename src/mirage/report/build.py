"""Assemble the report: read the run, build panel, tables, plots and galleries, render one self-contained page."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from .blind_panel import blind_panel
from .shuffle_panel import caption_rows, shuffle_panel
from ..errors import MirageError, UsageError
from ..runs import SKIPPED_KEY
from .demo_panel import demo_panels
from .gallery import DEFAULT_MAX_IMAGES, galleries, single_images
from .plots import (accuracy_plot, chance_level, encoder_plot, history_plot, per_question_plot, spectrum_plot,
                    transfer_plot)
from .measures import attack_success, measure_tables
from .questions import load_questions
from .rundata import RunData, load_run
from .sources import GROUP_TITLES
from .tables import baselines, question_types, source_rows

REPORT = "report.html"
TEMPLATES = Path(__file__).parent / "templates"


def _num(x, fmt: str = ".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["pval"] = lambda p: _num(p, ".2g")
    return env


def benchmark_title(config: dict) -> str:
    """`shapes/test`; a `file:`/`spec:` benchmark by its file's name (config.json holds the whole path); a `file:`
    set has no split of its own, so just its file (not `x/file`)."""
    name, split = str(config.get("benchmark", "?")), config.get("split", "?")
    if name.startswith(("file:", "spec:")):
        name = Path(name[len("file:"):]).stem
    return name if split == "file" or config.get("benchmark", "").startswith("file:") else f"{name}/{split}"


def run_facts(data: RunData) -> list[tuple[str, str]]:
    """Model, benchmark, split, seed, steps, device, versions and wall time, as (label, value) pairs."""
    c, env = data.config, data.config.get("environment", {})
    plan = c.get("plan", {})
    steps = c.get("steps", plan.get("steps"))
    if plan.get("universal_steps") not in (None, steps):
        steps = f"{steps} per question, {plan['universal_steps']} universal"
    facts = [("command", c.get("command")), ("model", c.get("model")), ("benchmark", c.get("benchmark")),
             ("split", c.get("split")), ("questions", c.get("n_questions")), ("limit", c.get("limit")),
             ("seed", c.get("seed")), ("steps", steps), ("batch size", c.get("batch_size")),
             ("device", env.get("device", c.get("device"))), ("dtype", env.get("dtype", c.get("dtype"))),
             ("attention", env.get("attn_implementation")), ("torch", env.get("torch")),
             ("transformers", env.get("transformers"))]
    sizes = list(dict.fromkeys(i["batch_size"] for i in data.invocations if i.get("batch_size") is not None))
    if len(sizes) > 1:  # resumed with another --batch-size: each call's, in order
        facts[[k for k, _ in facts].index("batch size")] = ("batch size", ", then ".join(map(str, sizes)))
    skipped = c.get(SKIPPED_KEY)
    if skipped:  # the questions the numbers do not stand on
        facts.insert(5, ("skipped (image cannot be decoded)", f"{len(skipped)}: {', '.join(skipped)}"))
    threads = list(dict.fromkeys(i["threads"] for i in data.invocations if i.get("threads") is not None))
    if threads:  # chosen at start-up from the machine's load: small differences between runs may come from it
        facts.append(("CPU threads", ", then ".join(map(str, threads))))
    if data.timings:
        total = sum(float(v) for v in data.timings.values() if isinstance(v, (int, float)))
        calls = f" in {len(data.invocations)} invocations" if len(data.invocations) > 1 else ""
        facts.append(("wall time", f"{total:.1f} s ({total / 60:.1f} min) over {len(data.timings)} parts{calls}"))
    facts.append(("result rows", f"{len(data.rows)} in {len(data.sources)} sources"))
    return [(k, str(v)) for k, v in facts if v is not None]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise MirageError(f"{path}: not valid JSON ({e})") from e


def report_context(run_dir: str | Path, max_images: int = DEFAULT_MAX_IMAGES, questions: bool = True) -> dict:
    """What the report template shows of the run in `run_dir`, read from its files (and, when `questions` and
    cheap, its benchmark's questions); never loads a model."""
    if max_images < 0:
        raise UsageError(f"--max-images must be >= 0, got {max_images}")
    data = load_run(run_dir)
    qs, question_note = load_questions(data.config) if questions else ({}, "question loading was turned off")
    table = source_rows(data.summary, data.rows, attack_success(data.path))
    panels = demo_panels(data, qs, question_note)
    plots = [accuracy_plot(table, chance_level(data.rows)) if table else None, spectrum_plot(table),
             history_plot(data.histories),
             per_question_plot(data.rows, [r.info for r in table]), encoder_plot(table),
             transfer_plot(_read_json(Path(run_dir) / "transfer.json"))]
    from .. import __version__

    return dict(
        title=f"mirage report: {data.config.get('model', '?')} on {benchmark_title(data.config)}",
        run_path=str(data.path), facts=run_facts(data), config_json=json.dumps(data.config, indent=2, sort_keys=True),
        timings=data.timings, measures=measure_tables(data.path, data.rows), panels=panels,
        blind=blind_panel(data.rows), shuffle=shuffle_panel(data), captions=caption_rows(data, qs),
        intervals=data.summary["intervals"],
        table=table, types=question_types(table), baselines=baselines(table), attacked=any(r.attack for r in table),
        plots=[p for p in plots if p is not None], galleries=galleries(data, qs, max_images),
        singles=single_images(data, {p.source for p in panels}), questions_loaded=bool(qs),
        question_note=question_note, skipped=data.summary_file.get("skipped_no_image", {}),
        other_artifacts=data.other_artifacts, max_images=max_images, version=__version__, group_titles=GROUP_TITLES,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"))


def build_run_report(run_dir: str | Path, max_images: int = DEFAULT_MAX_IMAGES, questions: bool = True) -> str:
    """The report of the run in `run_dir` as one HTML string (images and plots embedded)."""
    return environment().get_template("report.html.j2").render(**report_context(run_dir, max_images, questions))
