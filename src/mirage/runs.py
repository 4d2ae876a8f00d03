"""A run directory: config.json, append-only results.jsonl, summary.json and artifacts/.

Appends are fsynced and a torn last line is repaired, so a run survives SIGKILL and resumes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence

from .environment import library_changes, library_versions
from .errors import MirageError

CONFIG = "config.json"
TIMINGS = "timings.json"
LOCK = ".lock"  # held (flock) by the process writing the run; names it (pid, host, command) for a second one
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


class RunLocked(MirageError):
    """Another process is writing this run directory."""


class RunConfigMismatch(MirageError):
    """An existing run directory was made with a different config."""


class EnvironmentChanged(MirageError):
    """An existing run directory was made under other library versions (or another image-processor backend): its
    rows and new ones would mix two environments."""


LIBRARIES_KEY = "libraries"  # config.json: the library versions the run was made under
ENV_CHANGES_KEY = "environment_changes"  # config.json: each resume under another environment that was allowed
BACKEND_KEYS = ("image_processor", "image_processor_backend")  # environment facts that change pixel values
# questions a run left out because an image of theirs cannot be decoded, id -> why (`Benchmark.readable`)
SKIPPED_KEY = "skipped_unreadable"


def _fsync_dir(path: Path) -> None:
    # Makes a rename or new file in `path` itself durable, not only the file's contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide summaries from colleagues on a shared filesystem
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


def _more(a, b):
    """The larger of two question counts, None (every question) largest."""
    return None if a is None or b is None else max(a, b)


# the commands whose runs take more questions: each question's rows are computed on their own (an optimization's
# universal inputs train on the first `train` questions however many follow: the new ones are held out)
GROWING_COMMANDS = ("eval", "optimize", "study")


def _grown(old: dict, new: dict, grows: Mapping[str, Collection[str]] = {}) -> tuple[dict, list[str]]:
    """A run grows instead of being refused where the new call only adds rows whose keys the run does not have yet
    (rows are keyed by question and source): more conditions, a text model where it had none, captions where it had
    none (the `caption:` conditions' settings), more questions (`GROWING_COMMANDS`), and larger counts of nested
    settings `grows` names (a study's plan: key -> its counts that may grow, all else in it equal). Returns the
    run's config after this call (old, grown) and the keys left to compare as they are; anything that would change
    what existing rows mean (model, seed, prompt, scoring, preprocessing, another text model, a smaller count)
    stays in the comparison and is refused."""
    merged, grew = dict(old), []
    if isinstance(old.get("conditions"), list) and isinstance(new.get("conditions"), list):
        merged["conditions"] = old["conditions"] + [c for c in new["conditions"] if c not in old["conditions"]]
        grew.append("conditions")
    if old.get("text_model") is None or new.get("text_model") in (None, old.get("text_model")):
        if new.get("text_model") is not None:
            merged["text_model"] = new["text_model"]
        grew.append("text_model")
    if old.get("captions") is None or new.get("captions") in (None, old.get("captions")):  # caption: conditions
        if new.get("captions") is not None:
            merged["captions"] = new["captions"]
        grew.append("captions")
    if SKIPPED_KEY in old or SKIPPED_KEY in new:  # more questions asked, more of them skipped
        merged[SKIPPED_KEY] = {**old.get(SKIPPED_KEY, {}), **new.get(SKIPPED_KEY, {})}
        grew.append(SKIPPED_KEY)
    if old.get("command") == new.get("command") and new.get("command") in GROWING_COMMANDS:
        merged["limit"] = _more(old.get("limit"), new.get("limit"))
        merged["n_questions"] = max(old.get("n_questions", 0), new.get("n_questions", 0))
        grew += ["limit", "n_questions"]
    for key, counts in grows.items():
        a, b = old.get(key), new.get(key)
        if (isinstance(a, dict) and isinstance(b, dict) and a != b
                and all(a.get(k, _MISSING) == b.get(k, _MISSING) for k in a.keys() | b.keys() if k not in counts)
                and all(_more(a.get(k), b.get(k)) == b.get(k) for k in counts)):
            merged[key] = b
            grew.append(key)
    return merged, grew


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
             allow_env_change: bool = False, lock: bool = True, grows: Mapping[str, Collection[str]] = {}
             ) -> "RunDir":
        """Create a run directory, or resume one whose config matches (ignoring NEUTRAL_KEYS).

        `overwrite` discards previous results, summary and artifacts instead of resuming. On resume, rows that ranks
        of a killed `torchrun` left in `results.rank<r>.jsonl` are folded into results.jsonl first (unless `fold`
        is False: a rank other than 0 joining a live run must not). `grows`: nested counts that may grow (`_grown`).
        A run made under other library versions is refused, naming them, unless `allow_env_change` (then the change
        is recorded in config.json). The directory is locked for this process (`lock_run`; not with `lock` False: torchrun's other ranks share rank 0's)."""
        run = cls(path)
        run.allow_env_change = allow_env_change
        # The round trip makes tuples and lists (and other JSON-equal values) compare equal.
        run.config = json.loads(json.dumps(config))
        versions = library_versions()
        if run.path.exists() and not run.path.is_dir():
            raise MirageError(f"run directory {str(run.path)!r} exists and is not a directory")
        config_path = run.path / CONFIG
        if lock and config_path.is_file():  # before reading it: another process may be writing the run
            lock_run(run.path)

        if not overwrite and config_path.exists():
            try:
                old = json.loads(config_path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise MirageError(f"{config_path}: not valid JSON ({e})") from e
            grown, growable = _grown(old, run.config, grows)
            diff = _config_diff(old, run.config, cls.NEUTRAL_KEYS | frozenset(growable))
            if diff and not run.holds_work():
                overwrite = True  # a start that failed before any work (a typo, a missing flag): nothing to keep
            elif diff:
                raise RunConfigMismatch(
                    f"run directory {str(run.path)!r} was made with a different config: "
                    + "; ".join(diff)
                    + ". A run takes more conditions, a text model or more questions, not a change to what its rows "
                    "mean: use --overwrite to start over, or another --out."
                )
            else:
                run.stored_config = old
                if grown != old:  # more sources or questions: the run's config says what it holds now
                    run._record(**{k: v for k, v in grown.items() if old.get(k, _MISSING) != v})
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
        if not overwrite and run.path.is_dir() and any(p.name != LOCK for p in run.path.iterdir()):
            raise MirageError(
                f"{str(run.path)!r} is a non-empty directory without {CONFIG}, so not a run directory; "
                "refusing to write into it. Use --overwrite or another --out."
            )

        try:
            if not run.path.exists():
                _STARTED[run.path.resolve()] = True  # made by this call: removed whole if the start fails
            else:
                _STARTED.setdefault(run.path.resolve(), False)
            run.path.mkdir(parents=True, exist_ok=True)
            if lock:
                lock_run(run.path)
            run._clear()
            run.config[LIBRARIES_KEY] = versions
            _atomic_write(config_path, json.dumps(run.config, indent=2, sort_keys=True) + "\n")
        except OSError as e:  # a read-only --out, or one below a file: one line, not fifty of OSError
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
                raise
            why = "a path above it is a file" if e.errno in (errno.ENOTDIR, errno.EEXIST) else e.strerror
            raise MirageError(f"cannot write the run directory {str(run.path)!r}: {why} "
                              f"({e.filename}); choose a writable --out") from None
        run.stored_config = json.loads(json.dumps(run.config))
        return run

    def holds_work(self) -> bool:
        """Whether anything but config.json (and the lock and timings of calls) was written: rows, artifacts,
        summaries, checkpoints."""
        return any(p.is_file() and p.name not in (CONFIG, LOCK, TIMINGS) and p.stat().st_size > 0
                   for p in self.path.rglob("*"))

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
        """All result rows, one per (question, source) (`unique_rows`); a torn last line (a kill mid-append) is
        dropped and cut from the file.

        A corrupt line elsewhere raises ValueError naming the file and line number."""
        return unique_rows(read_rows(self.results_path))

    def done(self) -> set[tuple[str, str]]:
        """The (question_id, source) pairs that already have a result."""
        return {(r["question_id"], r["source"]) for r in self.rows()}

    def append(self, rows: Sequence[dict]) -> None:
        """Append rows as JSON lines and fsync, so a kill loses at most this batch."""
        append_rows(self.results_path, rows)
        self.tick()

    # --- timings.json: every invocation, recorded from its start, so an interrupted or killed one counts too -----
    def start_invocation(self, record: dict | None = None) -> None:
        """Add this invocation to timings.json now (status `running`, its command line and start), so that an
        interrupted or killed call is recorded too; `tick` keeps its `elapsed_s` current as rows are appended,
        `log_invocation` completes it. Earlier calls still `running` were killed (this process holds the lock)."""
        log = self._timings()
        for inv in log["invocations"]:
            if inv.get("status") == "running":
                inv["status"] = "killed"
        torch = sys.modules.get("torch")  # the thread count chosen at start-up from the machine's load
        self._invocation = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": " ".join(sys.argv[1:]),
                            "pid": os.getpid(), "status": "running", "elapsed_s": 0.0,
                            **({"threads": torch.get_num_threads()} if torch else {}), **(record or {})}
        self._t0 = self._ticked = time.time()
        self._index = len(log["invocations"])  # its place in the log (this process holds the run's lock)
        self._write_timings(log["invocations"] + [self._invocation])
        _OPEN_INVOCATIONS.add(self)

    def tick(self, every: float = 10.0, **fields) -> None:
        """Update the running invocation's `elapsed_s` (and `fields`, e.g. finished parts) in timings.json, at most
        every `every` seconds unless fields are given."""
        if getattr(self, "_invocation", None) is None or (not fields and time.time() - self._ticked < every):
            return
        self._ticked = time.time()
        self._invocation.update(json.loads(json.dumps(fields)), elapsed_s=round(self._ticked - self._t0, 1))
        self._replace_invocation()

    def tick_entry(self, field: str, name: str, value) -> None:
        """Add `name: value` to the running invocation's `field` (a dict, e.g. each part's batch choice) in
        timings.json now."""
        if getattr(self, "_invocation", None) is None:
            return
        self._invocation.setdefault(field, {})[name] = json.loads(json.dumps(value))
        self._replace_invocation()

    def interrupted(self, status: str = "interrupted") -> None:
        """Ctrl-C (or a user error mid-run: `failed`): the running invocation is recorded so, with its time."""
        if getattr(self, "_invocation", None) is not None:
            self._invocation.update(status=status, elapsed_s=round(time.time() - self._t0, 1))
            self._replace_invocation()
            self._invocation = None

    def log_invocation(self, record: dict) -> dict:
        """Complete this invocation's record (its times, batch size, ...) in timings.json (appended when
        `start_invocation` was not called), whose `total` sums every invocation's seconds: a resumed run adds to the
        record instead of replacing it, and interrupted or killed calls count their `elapsed_s`. Returns the log."""
        record = json.loads(json.dumps(record))
        if getattr(self, "_invocation", None) is not None:
            for key in ("status", "elapsed_s"):
                self._invocation.pop(key)
            self._invocation.update(record, status="finished")
            log = self._replace_invocation()
            self._invocation = None
            return log
        return self._write_timings(self._timings()["invocations"] + [record | {"status": "finished"}])

    def _timings(self) -> dict:
        path = self.path / TIMINGS
        log = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if log and "invocations" not in log:  # a log from before invocations were kept: its one invocation
            log = {"invocations": [log]}
        return {"invocations": log.get("invocations", [])}

    def _replace_invocation(self) -> dict:
        invocations = self._timings()["invocations"]
        return self._write_timings(invocations[:self._index] + [self._invocation] + invocations[self._index + 1:])

    def _write_timings(self, invocations: list[dict]) -> dict:
        total: dict = {}
        for inv in invocations:
            unfinished = inv.get("status") in ("running", "interrupted", "killed", "failed")
            for key, value in inv.items():
                if key.endswith("_s") and isinstance(value, (int, float)):
                    total[key] = round(total.get(key, 0.0) + value, 1)
            for part, value in inv.get("parts", {}).items():
                total.setdefault("parts", {})[part] = round(total.get("parts", {}).get(part, 0.0) + value, 1)
            if unfinished and inv.get("parts"):  # its time outside the parts it finished: the one it was in
                rest = round(max(inv.get("elapsed_s", 0.0) - sum(inv["parts"].values()), 0.0), 1)
                total["parts"][UNFINISHED_PART] = round(total["parts"].get(UNFINISHED_PART, 0.0) + rest, 1)
        parts = total.get("parts", {})
        total["wall_s"] = round(sum(v for k, v in total.items() if k.endswith("_s") and k not in ("wall_s",
                                "elapsed_s")) + sum(parts.values()) + sum(
            inv.get("elapsed_s", 0.0) for inv in invocations if not inv.get("parts")), 1)
        log = {"invocations": invocations, "total": total}
        self.write_json(TIMINGS, log)
        return log

    def write_json(self, name: str, obj) -> Path:
        """Atomically write `obj` as JSON to `name` in the run directory; returns its path."""
        path = self.path / name
        _atomic_write(path, json.dumps(obj, indent=2) + "\n")
        return path


# timings.json: the time interrupted or killed invocations spent in parts they did not finish
UNFINISHED_PART = "unfinished (interrupted or killed)"
_OPEN_INVOCATIONS: "weakref.WeakSet[RunDir]" = weakref.WeakSet()


def interrupted(status: str = "interrupted") -> None:
    """Ctrl-C (or a user error) reached the command: every run this process was writing records its invocation
    so (`status`), with its time."""
    for run in list(_OPEN_INVOCATIONS):
        run.interrupted(status)


_LOCKS: dict[Path, int] = {}  # run directory -> the open lock file this process holds (until release_locks)


def lock_run(path: Path) -> None:
    """Hold `path/.lock` for this process until `release_locks` (flock: the kernel releases it when the process
    ends, however it ends, so a killed run leaves no stale lock), and write in it who holds it. A directory another process holds is
    refused in one line naming that process (pid, host, command, start)."""
    import fcntl

    path = Path(path).resolve()
    if path in _LOCKS:
        return
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.read(fd, 65536) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}: "
               f"mirage {holder.get('argv', '?')}")
        raise RunLocked(f"run directory {str(path)!r} is being written by another process ({who}); wait for it "
                        "to finish, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "argv": " ".join(sys.argv[1:]),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
    _LOCKS[path] = fd


_STARTED: dict[Path, bool] = {}  # runs this process started afresh -> whether it made the directory too


def discard_unstarted() -> None:
    """A command failed (or was interrupted) before any work: the runs it started afresh hold only what starting
    wrote (config.json, the lock, timings.json); remove that, and a directory it made, so no config-only directory
    is left behind to be mistaken for a run."""
    for path, made in list(_STARTED.items()):
        del _STARTED[path]
        run = RunDir(path)
        if not path.is_dir() or run.holds_work():
            continue
        for name in (CONFIG, TIMINGS, LOCK):
            (path / name).unlink(missing_ok=True)
        if made and not any(path.iterdir()):
            path.rmdir()


def release_locks() -> None:
    """The command is done: let other processes write the runs this one held."""
    import fcntl

    _STARTED.clear()
    for path in list(_LOCKS):
        fd = _LOCKS.pop(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def unique_rows(rows: Sequence[dict]) -> list[dict]:
    """One row per (question, source): the first written. Two writers of one run (before the lock) left
    duplicates; reading keeps going instead of refusing the run."""
    seen: set = set()
    out = []
    for r in rows:
        key = (r.get("question_id"), r.get("source"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


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


class BehindAppends:
    """Rows appended to `run` on one worker thread, each after the files it names are written, while the caller goes
    on (an optimization loop keeps the GPU busy instead of waiting on the disk: Cambrian-1's per-question features
    are 220 MB a question). In submission order, so a run cut short holds a prefix of the rows, each with its files,
    and resumes from there. At most `limit` submissions wait; the next one waits for the oldest. An error in a write
    is raised at the next `submit` or at `close`; `close` waits for every write."""

    def __init__(self, run: "RunDir", limit: int = 8):
        self.run, self.limit = run, limit
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mirage-writes")
        self.pending: deque = deque()

    def submit(self, write: Callable[[], None], rows: Sequence[dict]) -> None:
        """Run `write()` (the rows' files), then append `rows`, behind the caller."""
        while self.pending and (self.pending[0].done() or len(self.pending) >= self.limit):
            self.pending.popleft().result()

        def job() -> None:
            write()
            self.run.append(rows)

        self.pending.append(self.pool.submit(job))

    def close(self) -> None:
        """Wait for every submission; raise the first error."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "BehindAppends":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
            return
        try:  # the caller's own error is the one to see; what was submitted is still written
            self.close()
        except Exception:  # noqa: BLE001
            pass


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
