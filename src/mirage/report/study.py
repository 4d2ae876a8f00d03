"""The report of a study directory: each benchmark's demo panel, the cross-benchmark table (read from the study's
summary.json), then each benchmark's full report as a section of the same page, with ids made unique per section."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from markupsafe import Markup

from ..errors import MirageError
from ..runs import CONFIG, SUMMARY
from ..blind import SHUFFLE_NAMES
from ..display import STUDY_SHUFFLE
from .build import environment, report_context
from .plots import shuffle_plot
from .rundata import TIMINGS

from ..blind import MEASURES  # the cross-benchmark table's columns: every image-free measure


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise MirageError(f"{path}: not valid JSON ({e})") from e


def is_study(path: str | Path) -> bool:
    """Whether `path` is a study directory: its config.json names its benchmarks' sub-directories."""
    config = Path(path) / CONFIG
    try:
        return isinstance(_read(config).get("dirs"), dict)
    except (FileNotFoundError, MirageError):
        return False


def prefix_ids(html: str, prefix: str) -> str:
    """`html` (a rendered run report) with every id and in-page link prefixed, so that sections of one page do
    not share ids. Text is escaped by the template (a quote becomes &#34;), so only attributes match."""
    html = re.sub(r'(\s)id="([^"]+)"', lambda m: f'{m.group(1)}id="{prefix}{m.group(2)}"', html)
    return re.sub(r'(\s)href="#([^"]+)"', lambda m: f'{m.group(1)}href="#{prefix}{m.group(2)}"', html)


def anchor(directory: str) -> str:
    return f"bench-{directory}"


def build_study_report(study_dir: str | Path, max_images: int, questions: bool = True) -> str:
    """The study's page: facts, the demo panel of each benchmark, the cross-benchmark table, and one section per
    benchmark (its run's report)."""
    path = Path(study_dir)
    config = _read(path / CONFIG)
    if not (path / SUMMARY).is_file():
        raise MirageError(f"{path / SUMMARY} is missing: the study has not finished; rerun the same `mirage study` "
                          "command to resume it")
    summary = _read(path / SUMMARY)
    env = environment()
    run_template = env.get_template("report.html.j2")
    sections = []
    for name in config["benchmarks"]:
        directory = config["dirs"][name]
        ctx = report_context(path / directory, max_images, questions)
        prefix = f"{anchor(directory)}-"
        # the demo panels lead the page, one benchmark after another; each section holds the rest of its report
        panels = "".join(run_template.blocks["panels"](run_template.new_context(ctx)))
        body = "".join(run_template.blocks["content"](run_template.new_context(ctx | {"panels": []})))
        sections.append({"name": name, "anchor": anchor(directory), "has_panels": bool(ctx["panels"]),
                         "panels": Markup(prefix_ids(panels, prefix)), "html": Markup(prefix_ids(body, prefix))})
    table = [line | {"anchor": anchor(line["dir"])} for line in summary["table"]]
    # the shuffle decomposition across benchmarks: its columns where any benchmark has them, and one picture
    shuffles = [m for m in STUDY_SHUFFLE if any(m in (line.get("shuffle") or {}) for line in table)]
    picture = shuffle_plot({line["benchmark"]: line["shuffle"] for line in table if line.get("shuffle")},
                           "Every benchmark: pair, image alone, text alone, neither", "shuffle-benchmarks")
    # each benchmark's own timings.json: every invocation's parts, interrupted and killed ones included
    per_bench = {}
    for name in config["benchmarks"]:
        log = path / config["dirs"][name] / TIMINGS
        parts = (_read(log) or {}).get("total", {}).get("parts") if log.is_file() else None
        if parts:
            per_bench[name] = round(sum(parts.values()), 1)
    total = sum(per_bench.values())
    facts = [("model", config.get("model")), ("benchmarks", ", ".join(config["benchmarks"])),
             ("preset", config.get("preset")), ("limit", config.get("limit")), ("seed", config.get("seed")),
             ("text model", config.get("text_model")),
             ("time in the parts", f"{total:.1f} s ({total / 60:.1f} min)" if per_bench else None)]
    from .. import __version__

    return env.get_template("study.html.j2").render(
        title=f"mirage study: {config.get('model', '?')} on {', '.join(config['benchmarks'])}", run_path=str(path),
        facts=[(k, str(v)) for k, v in facts if v is not None], table=table, measures=MEASURES, sections=sections,
        text_only_match=summary.get("text_only_match", []),
        shuffles=shuffles, shuffle_names=SHUFFLE_NAMES, signed=STUDY_SHUFFLE[3:], picture=picture,
        prompts=summary.get("prompts"),
        timings=per_bench, config_json=json.dumps(config, indent=2, sort_keys=True), version=__version__,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"))
