"""The one loader of hub-layout benchmarks: a `BenchmarkSpec` says which parquet files of which config and split to
read (from the hub through huggingface_hub, cached, or from a local copy `data_dir`) and how a row is a Question."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

from ..errors import MirageError
from .hooks import CHOICE_PARSERS, JUDGES, PROMPT_STYLES, ROW_HOOKS
from .question import LETTERS, Benchmark, Question
from .spec import BenchmarkSpec


class _RowError(ValueError):
    """A bad row; the caller adds the benchmark, file and row."""


# ----------------------------------------------------------------------------------------------- files


def split_files(spec: BenchmarkSpec, config: str, split: str, data_dir: str | Path | None = None,
                repo: str | None = None) -> list[Path]:
    """The parquet files of one config and split, in order: matched in `data_dir` by the spec's globs, or
    downloaded (only those files) from the hub into huggingface_hub's cache."""
    globs = spec.files(config, split)
    if data_dir is None:
        root = Path(_download(spec, globs, repo))
    else:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{spec.name}: data directory {str(root)!r} does not exist")
    files = sorted({p for g in globs for p in root.glob(g) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"{spec.name}: no {split!r} files of config {config!r} in {str(root)!r} "
                                f"(expected {', '.join(globs)}, the layout of the hub's {spec.hub})")
    return files


def download(spec: BenchmarkSpec, globs, repo: str | None = None) -> str:
    """The local folder of a snapshot of the spec's hub repository holding (only) the files matching `globs`."""
    return _download(spec, tuple(globs), repo)


def _download(spec: BenchmarkSpec, globs: tuple[str, ...], repo: str | None) -> str:
    from huggingface_hub import snapshot_download

    repo = repo or spec.hub
    if repo not in (spec.hub, *spec.mirrors):
        raise ValueError(f"{spec.name}: hub repository {repo!r} is neither {spec.hub!r} nor a known mirror "
                         f"({', '.join(spec.mirrors) or 'none'})")
    try:
        return snapshot_download(repo_id=repo, repo_type="dataset", allow_patterns=list(globs))
    except OSError as e:  # offline, not cached, no such repository: one line with the way around it
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        layout = ", ".join(globs[:2]) + (f", ... ({len(globs)} patterns)" if len(globs) > 2 else "")
        raise MirageError(f"{spec.name}: cannot download from the hub's {repo} ({first}); give --data-dir DIR with "
                          f"a local copy in the hub's layout ({layout})") from None


# ----------------------------------------------------------------------------------------------- rows


def _get(row: dict, path: str) -> Any:
    """A column, or a field inside a struct column with a dotted path ("metadata.task")."""
    value = row[path.split(".")[0]]
    for key in path.split(".")[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _missing(v: Any) -> bool:
    return v is None or v == "" or v == "nan" or (isinstance(v, float) and math.isnan(v))


def _choices(spec: BenchmarkSpec, row: dict) -> tuple[str, ...]:
    if spec.choices_fixed:
        return spec.choices_fixed
    if spec.choices:
        value = row[spec.choices]
        if isinstance(value, str):  # MMMU-style repositories store the list as its Python repr
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as e:
                raise _RowError(f"field {spec.choices!r}: not a list ({e})") from e
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise _RowError(f"field {spec.choices!r}: expected a list of strings, got {value!r}")
        return tuple(value)
    if spec.choice_columns:
        present = [not _missing(row.get(c)) for c in spec.choice_columns]
        n = present.index(False) if False in present else len(present)
        if any(present[n:]):
            raise _RowError(f"field {spec.choice_columns[present.index(True, n)]!r}: an option after the missing "
                            f"option {spec.choice_columns[n]!r}")
        return tuple(str(row[c]) for c in spec.choice_columns[:n])
    parsed = CHOICE_PARSERS.get(spec.choices_hook)(row[spec.question], spec.choices_marker)
    return parsed if len(parsed) >= 2 or not spec.bare_letters else tuple(LETTERS[: spec.bare_letters])


def _answer_index(spec: BenchmarkSpec, raw: Any, choices: tuple[str, ...]) -> int | None:
    """The gold index, or None when the answer is none of the choices."""
    fmt = spec.answer_format
    if fmt == "index":
        try:
            i = int(raw)
        except (TypeError, ValueError):
            return None
        return i if 0 <= i < len(choices) else None
    if fmt == "text":
        if raw in choices:
            return choices.index(raw)
        folded = [c.strip().casefold() for c in choices]
        return folded.index(raw.strip().casefold()) if isinstance(raw, str) and raw.strip().casefold() in folded else None
    if not isinstance(raw, str):
        return None
    letter = raw.strip().strip("()") if fmt == "paren_letter" else raw.strip()
    return LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS[: len(choices)] else None


def _image_refs(value: Any, column: str, folder: Path) -> list:
    """A hub image cell ({bytes, path}, a list of them, or null) as stored refs. Not decoded here: the questions
    asked are (`Benchmark.readable`, from `load_benchmark`), and one that cannot be is skipped, not the split."""
    cells = value if isinstance(value, list) else [value]
    refs = []
    for cell in cells:
        if cell is None:
            continue
        if not isinstance(cell, dict):
            raise _RowError(f"field {column!r}: expected an image struct {{bytes, path}}, got {type(cell).__name__}")
        ref = cell.get("bytes") or cell.get("path")
        if not ref:
            continue
        if isinstance(ref, str) and not Path(ref).is_absolute():
            ref = str(folder / ref)
        refs.append(ref)
    return refs


def tagged_images(text: str, choices: tuple[str, ...], columns: tuple[str, ...]) -> list[str]:
    """The image columns named by `<image N>` tags in the question and its choices (image_N), each once, sorted by
    name, as lmms-eval's mmmu_pro_doc_to_visual picks them from its prompt; only columns the spec lists."""
    tags = re.findall(r"<image \d+>", " ".join([text, *choices]))
    return [c for c in sorted({t.strip("<>").replace(" ", "_") for t in tags}) if c in columns]


def row_question(spec: BenchmarkSpec, row: dict, qid: str, config: str, folder: Path) -> Question:
    """One hub row as a Question, multiple choice or (with `open_answers`) open; raises _RowError naming the field."""
    text = row[spec.question]
    if not isinstance(text, str):
        raise _RowError(f"field {spec.question!r}: expected text, got {text!r}")
    choices = _choices(spec, row)
    raw = row[spec.answer]
    gold = _answer_index(spec, raw, choices) if len(choices) >= 2 else None
    columns = tagged_images(text, choices, spec.images) if spec.images_tagged else spec.images
    images = tuple(r for col in columns for r in _image_refs(row[col], col, folder))
    raw_type = None if spec.type is None else _get(row, spec.type)
    qtype = config if spec.type_from_config else ("" if raw_type is None else str(raw_type))
    meta: dict[str, Any] = {c: ("" if _get(row, c) is None else _get(row, c)) for c in spec.meta}
    if spec.hint:
        meta["hint"] = row[spec.hint]
    if gold is None:
        if not spec.open_answers:
            raise _RowError(f"field {spec.answer!r}: answer {raw!r} is not one of the {len(choices)} choices "
                            f"{list(choices)} (answer_format {spec.answer_format!r})")
        meta["answer"] = raw
        return Question(id=qid, text=text, choices=(), answer=-1, images=images,
                        type=spec.type_names.get(qtype, qtype), meta=meta, kind="open")
    return Question(id=qid, text=text, choices=choices, answer=gold, images=images,
                    type=spec.type_names.get(qtype, qtype), meta=meta)


def _columns(spec: BenchmarkSpec) -> list[str]:
    cols = [spec.question, spec.answer, *spec.images, *spec.meta, *(f.column for f in spec.filters)]
    cols += [c for c in (spec.id, spec.choices, spec.hint, spec.type) if c]
    cols += list(spec.choice_columns[:2])  # a third option onwards may be absent (MMBench's "E")
    return list(dict.fromkeys(c.split(".")[0] for c in cols))


def read_questions(spec: BenchmarkSpec, files: list[Path], config: str, split: str,
                   filtered: bool = True) -> list[Question]:
    """Questions from the files in order; a missing column or bad row is an error naming benchmark, file, row and
    field. Row numbers count every row of the split (filtered ones too), so ids stay stable under filters."""
    import pyarrow.parquet as pq

    questions, seen, start = [], {}, 0
    for path in files:
        names = pq.read_schema(path).names
        missing = [c for c in _columns(spec) if c not in names]
        if missing:
            raise ValueError(f"{spec.name}: {path}: column(s) {missing} missing (the file has {names})")
        wanted = set(_columns(spec)) | set(spec.choice_columns)
        table = pq.read_table(path, columns=[c for c in names if spec.row_hook or c in wanted])  # only what is used
        for i, row in enumerate(table.to_pylist()):
            n = start + i
            qid = str(row[spec.id]) if spec.id else f"{spec.name}-{split}-{n:05d}"
            try:
                if filtered and not all(f.keep(row) for f in spec.filters):
                    continue
                if qid in seen:
                    raise _RowError(f"field {spec.id!r}: duplicate id {qid!r} (first at {seen[qid]})")
                q = (ROW_HOOKS.get(spec.row_hook)(row, config) if spec.row_hook
                     else row_question(spec, row, qid, config, path.parent))
            except (_RowError, ValueError) as e:
                raise ValueError(f"{spec.name}: {path}, row {i}: {e}") from e
            seen[qid] = f"{path.name}, row {i}"
            questions.append(q)
        start += table.num_rows
    return questions


def spec_prompt(spec: BenchmarkSpec, variant: str | None = None):
    """The Benchmark's prompt style: the spec's named style with its arguments, or those of its prompt `variant`."""
    if variant is None:
        name, args, follows = spec.prompt_style, dict(spec.prompt), spec.follows
    else:
        args = dict(spec.prompt_variants[variant])
        name, follows = args.pop("style", spec.prompt_style), args.pop("follows", "")
    style = PROMPT_STYLES.get(name)

    def prompt(question: Question) -> str:
        return style(question, args)

    prompt.__doc__ = f"{spec.name}: {follows}"
    return prompt


def spec_prompts(spec: BenchmarkSpec) -> dict:
    """Every prompt the spec names, by name (its own under `prompt_name`, then its variants)."""
    return {spec.prompt_name: spec_prompt(spec), **{v: spec_prompt(spec, v) for v in spec.prompt_variants}}


def load_spec_benchmark(spec: BenchmarkSpec, split: str | None = None, data_dir: str | Path | None = None,
                        circular: bool = False, repo: str | None = None, **options) -> Benchmark:
    """A spec's benchmark at `split` (default the spec's), config from the spec's option (`config=`, mmmu-pro:
    `options=`), from `data_dir` or the hub (`repo`: the spec's hub id or a mirror). `circular`: every rotation
    of each question's options (`mirage.benchmarks.circular`)."""
    unknown = set(options) - {spec.config_option, spec.unfiltered_option}
    if unknown:
        raise TypeError(f"{spec.name}: unknown option(s) {sorted(unknown)} (takes {spec.config_option}=, data_dir=, "
                        "circular=)")
    filtered = not options.get(spec.unfiltered_option) if spec.unfiltered_option else True
    config = str(options.get(spec.config_option) or spec.default_config)
    split = split or spec.default_split
    files = split_files(spec, config, split, data_dir, repo)
    name = spec.name if config == spec.default_config else f"{spec.name}-{config}".replace(" ", "_")
    judging = JUDGES.get(spec.judge) if spec.judge else None
    bench = Benchmark(name, split, read_questions(spec, files, config, split, filtered), spec_prompt(spec),
                      judging=judging, prompts=spec_prompts(spec), prompt_name=spec.prompt_name)
    if not bench.questions:
        raise ValueError(f"{spec.name}: no questions in {', '.join(str(f) for f in files)} after the filters")
    if circular:
        from .circular import circular_benchmark

        bench = circular_benchmark(bench)
    return bench
