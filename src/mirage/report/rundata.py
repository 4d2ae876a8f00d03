"""Everything the report reads from a run directory, read once: config, rows, summary, timings, artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MirageError
from ..runs import ARTIFACTS, CONFIG, RESULTS, SALIENCY_SUMMARY, SUMMARY, TIMINGS, unique_rows
from ..stats import summarize

MEASURE_FILES = (SALIENCY_SUMMARY,)  # a run may hold only these (saliency)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
HISTORY_SUFFIX = ".history.json"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise MirageError(f"{path}: not valid JSON ({e})") from e


@dataclass
class RunData:
    """A run directory's files as the report uses them; `summary` is `stats.summarize` of the rows."""

    path: Path
    config: dict
    rows: list[dict]
    summary: dict
    summary_file: dict = field(default_factory=dict)  # summary.json as written (for notes such as skipped images)
    timings: dict = field(default_factory=dict)  # seconds per part (or loading / work), summed over invocations
    invocations: list[dict] = field(default_factory=list)  # timings.json's record of each call of the command
    histories: dict[str, list[dict]] = field(default_factory=dict)  # universal loss histories by source
    image_dirs: dict[str, list[Path]] = field(default_factory=dict)  # artifacts/<key>/*.png by key, sorted
    root_images: dict[str, Path] = field(default_factory=dict)  # artifacts/<key>.png by key
    other_artifacts: dict[str, int] = field(default_factory=dict)  # "folder/*.safetensors" -> count, and the like

    def rows_of(self, source: str) -> dict[str, dict]:
        """The rows of `source` by question id."""
        return {r["question_id"]: r for r in self.rows if r["source"] == source}

    @property
    def sources(self) -> list[str]:
        return list(self.summary["n"])


def read_rows(path: Path) -> list[dict]:
    """Result rows, read only: an unfinished last line (a run still writing) is skipped, never cut from the file."""
    lines = path.read_bytes().split(b"\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            if i == len(lines) or (i == len(lines) - 1 and not lines[-1]):
                break  # the last line: a write in progress or a kill mid-append
            raise MirageError(f"{path}: line {i} is corrupt ({e})") from e
    return rows


def _scan_artifacts(directory: Path, data: RunData) -> None:
    if not directory.is_dir():
        return
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):  # temporary files of a run still writing
            continue
        if entry.is_dir():
            images = sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if images:
                data.image_dirs[entry.name] = images
            for p in entry.iterdir():
                if p.suffix.lower() not in IMAGE_SUFFIXES and p.is_file():
                    key = f"{entry.name}/*{p.suffix}"
                    data.other_artifacts[key] = data.other_artifacts.get(key, 0) + 1
        elif entry.name.endswith(HISTORY_SUFFIX):
            history = _read_json(entry)
            if isinstance(history, list) and history:
                data.histories[entry.name[: -len(HISTORY_SUFFIX)]] = history
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            data.root_images[entry.stem] = entry
        elif entry.is_file():
            data.other_artifacts[entry.name] = 1


def load_run(path: str | Path) -> RunData:
    """Read a run directory; raises FileNotFoundError when it has no config.json or results.jsonl."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a run directory: it has no {CONFIG}")
    rows = unique_rows(read_rows(path / RESULTS)) if (path / RESULTS).is_file() else []
    measured = any((path / f).is_file() for f in MEASURE_FILES) or any(path.glob("patch-*.summary.json"))
    if not rows and not measured:  # a saliency run has no accuracy rows, only its measures
        raise MirageError(f"{path}: no result rows ({RESULTS}) and no measures to report")
    data = RunData(path, _read_json(path / CONFIG), rows, summarize(rows))
    if (path / SUMMARY).is_file():
        data.summary_file = _read_json(path / SUMMARY)
    if (path / TIMINGS).is_file():
        log = _read_json(path / TIMINGS)
        if "invocations" not in log:  # a log from before invocations were kept
            log = {"invocations": [log], "total": log}
        data.invocations = log["invocations"]
        total = log.get("total", {})
        data.timings = total.get("parts") or {k: v for k, v in total.items() if k.endswith("_s") and k != "wall_s"}
    _scan_artifacts(path / ARTIFACTS, data)
    return data
