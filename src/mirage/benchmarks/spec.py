"""`BenchmarkSpec`: a benchmark as data (one TOML file under `specs/`): where its files lie on the hub, which
columns hold what, which rows count, and the prompt style with its lmms-eval arguments."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).parent / "specs"
ANSWER_FORMATS = ("letter", "index", "paren_letter", "text")
FILTER_OPS = ("equals", "not_equals", "below", "not_null")


@dataclass(frozen=True)
class RowFilter:
    """Keep a row only when `column` passes `op` against `value` (e.g. data_type equals "image")."""

    column: str
    op: str
    value: Any = None

    def keep(self, row: dict) -> bool:
        v = row.get(self.column)
        if self.op == "equals":
            return v == self.value
        if self.op == "not_equals":
            return v != self.value
        if self.op == "below":  # numbers stored as text count as numbers (MMBench's "en" index is a string)
            try:
                return v is not None and float(v) < self.value
            except ValueError:
                raise ValueError(f"field {self.column!r}: {v!r} is not a number") from None
        if isinstance(v, dict):  # an image struct with neither bytes nor path holds no image
            return any(x for x in v.values())
        return v is not None and v != ""  # not_null: a missing hint is null or ""


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything the hub loader needs to know about one benchmark (see specs/*.toml for the fields in use)."""

    name: str
    hub: str
    follows: str  # the lmms-eval file(s) whose doc_to_text the prompt reproduces
    configs: dict[str, dict[str, tuple[str, ...]]]  # config -> split -> file globs (relative to the repo root)
    default_config: str
    default_split: str
    question: str
    answer: str
    answer_format: str
    prompt_style: str
    mirrors: tuple[str, ...] = ()  # other hub ids with the same files (lmms-eval's lmms-lab-encoder/*)
    config_option: str = "config"  # the loader keyword that picks a config (mmmu-pro: "options")
    id: str | None = None  # None: "<name>-<split>-<row in split, 5 digits>"
    choices: str | None = None  # a list column
    choice_columns: tuple[str, ...] = ()  # one column per letter; missing trailing options are dropped
    choices_fixed: tuple[str, ...] = ()  # the same choices for every row (POPE: yes, no)
    choices_hook: str | None = None  # a named parser of the options written in the question text
    choices_marker: str | None = None  # the parser looks after the last occurrence of this text
    bare_letters: int = 0  # when the parser finds fewer than 2 options: this many bare letters (A, B, ...)
    open_answers: bool = False  # a row whose answer is no option's label becomes an open question
    images: tuple[str, ...] = ()  # image columns ({bytes, path} structs, or lists of them)
    # only the image columns that `<image N>` tags in the question and choices name (image_N), each once, in name
    # order: what lmms-eval passes for MMMU-Pro (mmmu_pro_doc_to_visual)
    images_tagged: bool = False
    hint: str | None = None
    type: str | None = None
    type_names: dict[str, str] = field(default_factory=dict)  # raw type value -> name (SEED-Bench's type ids)
    type_from_config: bool = False
    meta: tuple[str, ...] = ()
    filters: tuple[RowFilter, ...] = ()
    unfiltered_option: str | None = None  # a loader keyword that, when true, keeps the rows the filters drop
    prompt: dict[str, Any] = field(default_factory=dict)  # the prompt style's arguments (lmms-eval kwargs)
    prompt_name: str = "lmms-eval"  # whose prompt that is: lmms-eval's task, or the benchmark's official runner's
    # other published prompts by name ("lmms-eval", "official", a model family such as "qwen"): each a table of
    # the style's arguments, with `style` (default: prompt_style) and `follows` (where it is published)
    prompt_variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    judge: str | None = None  # a named judge of generated answers (POPE: exact_text); None: MMMU's parser
    row_hook: str | None = None  # a named function row -> Question, for rows the column map cannot describe
    sizes: dict[str, int] = field(default_factory=dict)  # "<config>/<split>" -> questions after the filters
    source: str = ""  # the file this spec was read from

    def files(self, config: str, split: str) -> tuple[str, ...]:
        """The file globs of one config and split; unknown names get a did-you-mean error."""
        from ..registry import did_you_mean

        if config not in self.configs:
            raise ValueError(did_you_mean(f"{self.name} {self.config_option}", config, list(self.configs)))
        splits = self.configs[config]
        if split not in splits:
            raise ValueError(did_you_mean(f"{self.name} split", split, list(splits)))
        return splits[split]


def _tuple(v) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


def _row_filter(table: dict, where: str) -> RowFilter:
    ops = [op for op in FILTER_OPS if op in table]
    if "column" not in table or len(ops) != 1:
        raise ValueError(f"benchmark spec {where}: a filter needs a column and one of {FILTER_OPS}, got {table}")
    return RowFilter(table["column"], ops[0], table[ops[0]])


def spec_from_dict(d: dict, source: str = "") -> BenchmarkSpec:
    """A spec from a parsed TOML table; a missing or unknown field is an error naming the file."""
    where = source or d.get("name", "spec")
    d = dict(d)
    try:
        if "files_template" in d:  # many configs alike (MMMU's 30 subjects): "{config}/{split}-*.parquet"
            template, splits = d.pop("files_template"), d.pop("split_names")
            d["configs"] = {c: {s: template.format(config=c, split=s) for s in splits} for c in d.pop("config_names")}
        configs = {str(c): {s: _tuple(g) for s, g in splits.items()} for c, splits in d.pop("configs").items()}
        filters = tuple(_row_filter(f, where) for f in d.pop("filters", []))
        for key in ("images", "choice_columns", "choices_fixed", "meta", "mirrors"):
            if key in d:
                d[key] = _tuple(d[key])
        d["type_names"] = {str(k): v for k, v in d.get("type_names", {}).items()}
        d.setdefault("default_config", next(iter(configs)))
        spec = BenchmarkSpec(configs=configs, filters=filters, source=source, **d)
    except TypeError as e:
        raise ValueError(f"benchmark spec {where}: {e}") from e
    except KeyError as e:
        raise ValueError(f"benchmark spec {where}: field {e} is missing") from e
    if spec.answer_format not in ANSWER_FORMATS:
        raise ValueError(f"benchmark spec {where}: answer_format {spec.answer_format!r} not in {ANSWER_FORMATS}")
    if sum(bool(x) for x in (spec.choices, spec.choice_columns, spec.choices_fixed, spec.choices_hook)) != 1:
        raise ValueError(f"benchmark spec {where}: give exactly one of choices, choice_columns, choices_fixed, "
                         "choices_hook")
    spec.files(spec.default_config, spec.default_split)  # the defaults must name a real config and split
    return spec


def load_spec(path: str | Path) -> BenchmarkSpec:
    """Read one spec file (TOML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark spec {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"benchmark spec {str(path)!r}: not valid TOML ({e})") from e
    return spec_from_dict(data, str(path))


def bundled_specs() -> dict[str, BenchmarkSpec]:
    """The specs shipped with mirage, by name."""
    specs = [load_spec(p) for p in sorted(SPEC_DIR.glob("*.toml"))]
    return {s.name: s for s in specs}
