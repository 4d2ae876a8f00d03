"""A run directory: config.json, append-only results.jsonl, summary.json and artifacts/.

Appends are fsynced and a torn last line is repaired, so a run survives SIGKILL and resumes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

CONFIG = "config.json"
TIMINGS = "timings.json"
from .environment import library_changes, library_versions
from .errors import MirageError

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
ARTIFACTS = "artifacts"
# saliency's rows and summary (experiments.saliency): rows without `correct`, so beside results.jsonl, not in it
SALIENCY_ROWS = "saliency.jsonl"
SALIENCY_SUMMARY = "saliency-summary.json"
CAPTIONS = "captions.jsonl"  # the `caption:` conditions' captions (mirage.captions), made once
# what a run writes beside config.json, rank files and artifacts/: what --overwrite discards
OUTPUTS = (RESULTS, TIMINGS, SUMMARY, SALIENCY_ROWS, SALIENCY_SUMMARY, CAPTIONS)

_MISSING = "<missing>"


class RunConfigMismatch(MirageError):
    """An existing run directory was made with a different config."""


class EnvironmentChanged(MirageError):
    """An existing run directory was made under other library versions (or another image-processor backend): its
    rows and new ones would mix two environments."""


LIBRARIES_KEY = "libraries"  # config.json: the library versions the run was made under
ENV_CHANGES_KEY = "environment_changes"  # config.json: each resume under another environment that was allowed
BACKEND_KEYS = ("image_processor", "image_processor_backend")  # environment facts that change pixel values


def _fsync_dir(path: Path) -> None:
    # Makes a rename or new file in `path` itself durable, not only the file's contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _config_diff(old: dict, new: dict, ignore: frozenset[str], prefix: str = "") -> list[str]:
    """`key: old -> new` for each differing key; nested dicts name the inner key (`spec.scope`), not the whole dict."""
    out = []
    for k in sorted((old.keys() | new.keys()) - ignore):
        a, b = old.get(k, _MISSING), new.get(k, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, frozenset(), f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


def _parse_line(line: bytes) -> dict | None:
    if not line.strip():
        return None
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    return row


class RunDir:
    """One run's directory; use `RunDir.open` to create or resume it."""

    # may change between resumes; `environment` holds what is learned after loading (attention kernel, dtype)
    NEUTRAL_KEYS = frozenset({"batch_size", "quiet", "device", "environment", "compile",  # speed, not results
                              LIBRARIES_KEY, ENV_CHANGES_KEY})  # compared on their own (allow_env_change)

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.config: dict = {}  # this invocation's
        self.stored_config: dict = {}  # config.json's: the run's first call, plus its environment
        self.allow_env_change = False

    @classmethod
    def open(cls, path, config: dict, overwrite: bool = False, fold: bool = True,
             allow_env_change: bool = False) -> "RunDir":
        """Create a run directory, or resume one whose config matches (ignoring NEUTRAL_KEYS).

        `overwrite` discards previous results, summary and artifacts instead of resuming. On resume, rows that ranks
        of a killed `torchrun` left in `results.rank<r>.jsonl` are folded into results.jsonl first (unless `fold`
        is False: a rank other than 0 joining a live run must not). A run made under other library versions is
        refused, naming them, unless `allow_env_change` (then the change is recorded in config.json)."""
        run = cls(path)
        run.allow_env_change = allow_env_change
        # The round trip makes tuples and lists (and other JSON-equal values) compare equal.
        run.config = json.loads(json.dumps(config))
        versions = library_versions()
        if run.path.exists() and not run.path.is_dir():
            raise MirageError(f"run directory {str(run.path)!r} exists and is not a directory")
        config_path = run.path / CONFIG

        if not overwrite and config_path.exists():
            try:
                old = json.loads(config_path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise MirageError(f"{config_path}: not valid JSON ({e})") from e
            diff = _config_diff(old, run.config, cls.NEUTRAL_KEYS)
            if diff and not run.holds_work():
                overwrite = True  # a start that failed before any work (a typo, a missing flag): nothing to keep
            elif diff:
                raise RunConfigMismatch(
                    f"run directory {str(run.path)!r} was made with a different config: "
                    + "; ".join(diff)
                    + ". Use --overwrite to start over, or another --out."
                )
            else:
                run.stored_config = old
                run.config = {**run.config, **{k: old[k] for k in ("environment", LIBRARIES_KEY, ENV_CHANGES_KEY)
                                               if k in old}}
                recorded = old.get(LIBRARIES_KEY)
                if recorded is None:  # a run made before versions were recorded: record them from now on
                    run._record(**{LIBRARIES_KEY: versions})
                elif recorded != versions:
                    run._environment_changed(library_changes(recorded, versions), versions)
                if fold:
                    run.fold_rank_files()
                return run
        if not overwrite and run.path.is_dir() and any(run.path.iterdir()):
            raise MirageError(
                f"{str(run.path)!r} is a non-empty directory without {CONFIG}, so not a run directory; "
                "refusing to write into it. Use --overwrite or another --out."
            )

        try:
            run.path.mkdir(parents=True, exist_ok=True)
            run._clear()
            run.config[LIBRARIES_KEY] = versions
            _atomic_write(config_path, json.dumps(run.config, indent=2, sort_keys=True) + "\n")
        except OSError as e:  # a read-only --out: one line, not fifty of OSError
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise MirageError(f"cannot write the run directory {str(run.path)!r}: {e.strerror} "
                              f"({e.filename}); choose a writable --out") from None
        run.stored_config = json.loads(json.dumps(run.config))
        return run

    def holds_work(self) -> bool:
        """Whether anything but config.json was written: rows, artifacts, summaries, checkpoints."""
        return any(p.is_file() and p.name != CONFIG and p.stat().st_size > 0 for p in self.path.rglob("*"))

    def _record(self, **entries) -> None:
        """Add `entries` to config.json (the stored config: the run's first call's values) and to this call's."""
        entries = json.loads(json.dumps(entries))
        self.config.update(entries)
        self.stored_config.update(entries)
        _atomic_write(self.path / CONFIG, json.dumps(self.stored_config, indent=2, sort_keys=True) + "\n")

    def _environment_changed(self, changes: list[str], versions: dict | None = None) -> None:
        """Refuse a resume under another environment, or (allowed) record the change and carry on."""
        if not self.allow_env_change:
            raise EnvironmentChanged(
                f"run directory {str(self.path)!r} was made under another environment: " + "; ".join(changes)
                + ". Its rows and new ones would mix the two: use --allow-env-change to resume anyway, --overwrite"
                " to start over, or another --out.")
        entry = {"changes": changes}
        if versions is not None:
            entry[LIBRARIES_KEY] = versions
        self._record(**{ENV_CHANGES_KEY: [*self.config.get(ENV_CHANGES_KEY, []), entry],
                        **({LIBRARIES_KEY: versions} if versions is not None else {})})

    def rank_files(self) -> list[Path]:
        return sorted(self.path.glob("results.rank*.jsonl"))

    def fold_rank_files(self) -> None:
        """Append the rows of per-rank files (a sharded run's) that results.jsonl lacks, then remove the files."""
        files = self.rank_files()
        if not files:
            return
        have = {(r["question_id"], r["source"]) for r in read_rows(self.results_path)}  # not self.rows(): a
        new = []  # sharded run's rows() already includes the rank files
        for f in files:
            for r in read_rows(f):
                if (r["question_id"], r["source"]) not in have:
                    have.add((r["question_id"], r["source"]))
                    new.append(r)
        append_rows(self.results_path, new)
        for f in files:
            f.unlink()

    def annotate(self, **facts) -> None:
        """Record facts known only once the model is loaded in config.json's `environment` (not part of the
        identity compared on resume, except the image-processor backend: another one is another environment)."""
        facts = json.loads(json.dumps(facts))
        old = self.config.get("environment", {})
        changed = [f"{k} {old[k]} -> {facts[k]}" for k in BACKEND_KEYS
                   if k in old and k in facts and old[k] != facts[k]]
        if changed:
            self._environment_changed(changed)
        self.config.setdefault("environment", {}).update(facts)
        self.stored_config.setdefault("environment", {}).update(facts)
        # the stored config keeps the first call's neutral keys (batch size ...): each call's go to timings.json
        _atomic_write(self.path / CONFIG, json.dumps(self.stored_config, indent=2, sort_keys=True) + "\n")

    def _clear(self) -> None:
        # Only our own outputs: the directory may hold files the user put there.
        for name in OUTPUTS:  # a new run's timings log starts empty too
            (self.path / name).unlink(missing_ok=True)
        for f in [*self.rank_files(), *self.path.glob("captions.rank*.jsonl")]:
            f.unlink()
        if self.artifacts_dir.is_dir():
            shutil.rmtree(self.artifacts_dir)
        else:
            self.artifacts_dir.unlink(missing_ok=True)

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def artifacts_dir(self) -> Path:
        return self.path / ARTIFACTS

    def rows(self) -> list[dict]:
        """All result rows; a torn last line (a kill mid-append) is dropped and cut from the file.

        A corrupt line elsewhere raises ValueError naming the file and line number."""
        return read_rows(self.results_path)

    def done(self) -> set[tuple[str, str]]:
        """The (question_id, source) pairs that already have a result."""
        return {(r["question_id"], r["source"]) for r in self.rows()}

    def append(self, rows: Sequence[dict]) -> None:
        """Append rows as JSON lines and fsync, so a kill loses at most this batch."""
        append_rows(self.results_path, rows)

    def log_invocation(self, record: dict) -> dict:
        """Append this invocation's record (its times, batch size, ...) to timings.json, whose `total` sums every
        invocation's seconds: a resumed run adds to the record instead of replacing it. Returns the whole log."""
        path = self.path / TIMINGS
        log = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if log and "invocations" not in log:  # a log from before invocations were kept: its one invocation
            log = {"invocations": [log]}
        invocations = log.get("invocations", []) + [json.loads(json.dumps(record))]
        total: dict = {}
        for inv in invocations:
            for key, value in inv.items():
                if key.endswith("_s") and isinstance(value, (int, float)):
                    total[key] = round(total.get(key, 0.0) + value, 1)
            for part, value in inv.get("parts", {}).items():
                total.setdefault("parts", {})[part] = round(total.get("parts", {}).get(part, 0.0) + value, 1)
        total["wall_s"] = round(sum(v for k, v in total.items() if k.endswith("_s") and k != "wall_s")
                                + sum(total.get("parts", {}).values()), 1)
        log = {"invocations": invocations, "total": total}
        self.write_json(TIMINGS, log)
        return log

    def write_json(self, name: str, obj) -> Path:
        """Atomically write `obj` as JSON to `name` in the run directory; returns its path."""
        path = self.path / name
        _atomic_write(path, json.dumps(obj, indent=2) + "\n")
        return path


def read_rows(path: Path, repair: bool = True) -> list[dict]:
    """The rows of a JSON-lines file. A torn last line (a kill mid-append) is dropped, and cut from the file when
    `repair` (only the file's writer may repair it: another process may be appending). A corrupt line elsewhere
    raises ValueError naming the file and line number."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # bytes after the final newline: an unfinished write
    out: list[dict] = []
    end = 0  # byte offset just past the last good line
    for i, line in enumerate(lines, 1):
        try:
            row = _parse_line(line)
        except ValueError as e:
            if i == len(lines) and not torn:
                torn = True  # an unparsable final line is what a kill mid-append leaves
                break
            raise MirageError(f"{path}: line {i} is corrupt ({e})") from e
        if row is not None:
            out.append(row)
        end += len(line) + 1
    if torn and repair:
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return out


def append_rows(path: Path, rows: Sequence[dict]) -> None:
    """Append rows to a JSON-lines file and fsync; a torn tail left by a kill is repaired first (appending onto it
    would corrupt a middle line)."""
    if not rows:
        return
    if _torn_tail(path):
        read_rows(path)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _torn_tail(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False
