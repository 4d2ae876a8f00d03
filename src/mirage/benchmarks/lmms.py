"""lmms-eval's tasks as mirage benchmarks: `lmms:TASK` (a task or a group) through lmms-eval's own task objects,
used as a library (`TaskManager(...).load_task_or_group`): the eval split's docs, `doc_to_visual` for the images,
`doc_to_text` with the kwargs lmms-eval itself picks (its default, or the model family's where the task's YAML has
them) for the prompt, byte for byte, and `doc_to_target` for the gold. `--scoring generate` scores the responses
with the task's own filters, `process_results` and aggregation.

Options for letter scoring, one rule, the first that applies to a doc:
1. the task's `doc_to_choice` (when it gives the bare letters A, B, ... and the doc has columns of those names, the
   option texts are those columns);
2. a field of the doc holding a list of two or more strings, or its option columns (`A`, `B`, ... / `choice_a`,
   `choice_b`, ... / `option_a`, ...: consecutive, non-empty), when every one of them appears in the rendered
   prompt, in order;
3. the options the rendered prompt labels itself (`A. x` / `A: x` / `(A) x` / `A) x`, after the last `Options:`);
4. a yes/no gold (`doc_to_target` is yes or no in any case): the options yes, no.
The gold is `doc_to_target`: an option letter (`A`, `(A)`, `A.`), else an option's text, else an option index. A
doc none of whose rules applies takes bare letters, as many as most of the task's other docs have (MMStar's few
questions without written options); a task none of whose docs has options is refused by name.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import MirageError
from .hooks import labelled_in_text
from .question import LETTERS, Benchmark, Question

PREFIX = "lmms:"
TESTED_VERSIONS = ("0.7.3",)  # the lmms-eval releases mirage's tests ran against (the `lmms` extra pins them)
# A mirage model family (its transformers model_type) -> the name lmms-eval's YAMLs key model-specific kwargs by
# (`lmms_eval_specific_kwargs: {default: ..., qwen2_5_vl: ...}`): the name of lmms-eval's wrapper for that family.
LMMS_MODEL_NAMES = {"llava": "llava", "llava_next": "llava", "llava_onevision": "llava_onevision",
                    "qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl",
                    "idefics3": "idefics2", "gemma3": "gemma3", "internvl": "internvl3", "phi3_v": "phi3v",
                    "mllama": "llama_vision", "paligemma": "paligemma", "cambrian": "cambrians"}
_YES_NO = ("yes", "no")


class LmmsError(MirageError):
    """An lmms-eval task that cannot be asked (not installed, unknown, no data offline, no options)."""


# ----------------------------------------------------------------------------------------------- import


def _lmms():
    """lmms-eval's task package, imported once: a missing install is one line naming the extra. MathVista's utils
    build an OpenAI client at import, which needs some OPENAI_API_KEY; mirage sends nothing to it."""
    if "lmms_eval.tasks" in sys.modules:
        return sys.modules["lmms_eval.tasks"]
    try:
        version = metadata.version("lmms_eval")
    except metadata.PackageNotFoundError:
        raise LmmsError("lmms: tasks need lmms-eval: pip install 'mirage[lmms]' (see the README)") from None
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-mirage")
    _quiet_loguru()
    import lmms_eval.tasks as tasks

    if version not in TESTED_VERSIONS:
        from ..progress import warn

        warn(f"lmms-eval {version} is installed; mirage was tested with {', '.join(TESTED_VERSIONS)}")
    return tasks


def _quiet_loguru() -> None:
    """lmms-eval logs every YAML it indexes at DEBUG through loguru: keep its warnings and errors only."""
    try:
        from loguru import logger
    except ImportError:
        return
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("MIRAGE_LMMS_LOG_LEVEL", "ERROR"))


# ----------------------------------------------------------------------------------------------- task index

_INDEX: dict[str, dict] = {}
_NAMES: dict[str, Path] = {}
_NAME_LINE = re.compile(r"^(?:task|group|tag):\s*['\"]?([A-Za-z0-9_.+\-]+)['\"]?\s*$", re.M)
_TAG_LIST = re.compile(r"^tag:\s*\n((?:[ \t]*-[ \t]*\S+[ \t]*\n)+)", re.M)


def _tasks_dir() -> Path:
    import lmms_eval

    return Path(lmms_eval.__file__).parent / "tasks"


def task_folders() -> dict[str, Path]:
    """Every task, group and tag name lmms-eval's YAMLs declare -> the folder declaring it first. A text scan of
    the files (~0.3 s); lmms-eval's own index parses every YAML (~10 s)."""
    if not _NAMES:
        for path in sorted(_tasks_dir().rglob("*yaml*")):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            names = _NAME_LINE.findall(text) + [n.strip(" -\t'\"") for block in _TAG_LIST.findall(text)
                                                for n in block.splitlines() if n.strip()]
            for name in names:
                _NAMES.setdefault(name, path.parent)
    return _NAMES


def task_manager(name: str | None = None, model_name: str | None = None):
    """An lmms-eval TaskManager indexing the folder of task `name` (every task when None, ~10 s); an unknown name
    is refused with the names that come closest."""
    tasks = _lmms()
    folder = None
    if name is not None:
        folders = task_folders()
        if name not in folders:
            from ..registry import did_you_mean

            raise LmmsError(did_you_mean("lmms-eval task", name, sorted(folders)))
        folder = folders[name]
    return _cached_manager(tasks.TaskManager)(verbosity="ERROR", include_path=None if folder is None else str(folder),
                                             include_defaults=folder is None, model_name=model_name)


def task_manager_for(folder: Path):
    """An lmms-eval TaskManager indexing one folder of its tasks (made once per process)."""
    return _cached_manager(_lmms().TaskManager)(verbosity="ERROR", include_path=str(folder), include_defaults=False)


def _cached_manager(base):
    """lmms-eval's TaskManager whose index of a folder is made once per process."""

    class CachedIndex(base):
        def initialize_tasks(self, include_path=None, include_defaults=True):
            key = f"{include_path}|{include_defaults}"
            if key not in _INDEX:
                _INDEX[key] = super().initialize_tasks(include_path=include_path, include_defaults=include_defaults)
            return dict(_INDEX[key])

    return CachedIndex


def _leaves(loaded: dict) -> list[tuple[str, Any]]:
    """(name, task object) of every task in lmms-eval's nested {group: {task: obj}} result, in order."""
    out = []
    for key, value in loaded.items():
        if isinstance(value, dict):
            out.extend(_leaves(value))
        else:
            out.append((getattr(value, "task_name", None) or str(key), value))
    return out


def load_tasks(name: str, data_dir: str | Path | None = None, model_name: str | None = None) -> list[tuple[str, Any]]:
    """lmms-eval's task objects of task or group `name` (each subtask of a group), their data from `data_dir` (a
    local copy in the hub's layout) or the hub; `model_name`: whose lmms-eval kwargs the prompts take."""
    tm = task_manager(name, model_name)
    if name not in tm.all_tasks:  # declared in the folder, yet lmms-eval does not index it (a broken YAML)
        raise LmmsError(f"lmms:{name}: lmms-eval cannot index it (its YAML does not load as a task or group)")
    entry: Any = name
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"lmms:{name}: data directory {str(root)!r} does not exist")
        entry = {"task": name, "dataset_path": str(root.resolve())}
    # lmms-eval retries a failing download 5 times, 2 s apart: pointless for a local copy or an offline hub
    from lmms_eval.api.task import ConfigurableTask

    download = ConfigurableTask.download
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE",
                                                                                 "HF_DATASETS_OFFLINE"))
    if (data_dir is not None or offline) and hasattr(download, "retry_with"):
        from tenacity import stop_after_attempt

        ConfigurableTask.download = download.retry_with(stop=stop_after_attempt(1))
    try:
        loaded = tm.load_task_or_group([entry])
    except Exception as e:  # noqa: BLE001 (datasets, tenacity and the task's own code raise anything)
        raise _load_error(name, data_dir, e) from None
    finally:
        ConfigurableTask.download = download
    return _leaves(loaded)


def _load_error(name: str, data_dir, e: Exception) -> LmmsError:
    """One line for a task that could not be built: its data offline, or the task's code."""
    inner = e
    while getattr(inner, "last_attempt", None) is not None:  # tenacity.RetryError: the last attempt's error
        inner = inner.last_attempt.exception() or inner
        if not hasattr(inner, "last_attempt"):
            break
    first = (str(inner).strip().splitlines() or [type(inner).__name__])[0][:300]
    if data_dir is None:
        return LmmsError(f"lmms:{name}: cannot load its data from the hub ({type(inner).__name__}: {first}); give "
                         "--data-dir DIR with a local copy in the hub's layout (the dataset repository's files)")
    return LmmsError(f"lmms:{name}: cannot load it from {str(data_dir)!r} ({type(inner).__name__}: {first}); "
                     "--data-dir must hold the dataset repository's files in the hub's layout")


# ----------------------------------------------------------------------------------------------- images


@dataclass(eq=False)
class _Docs:
    """A task's eval docs and its doc_to_visual; the last doc's images kept (a question's several images and its
    conditions open them one after another)."""

    task: Any
    docs: Any
    last: tuple[int, list] | None = field(default=None, repr=False)

    def visuals(self, index: int) -> list:
        if self.last is None or self.last[0] != index:
            self.last = (index, list(self.task.doc_to_visual(self.docs[index])))
        return self.last[1]


@dataclass(frozen=True, eq=False)
class LazyImage:
    """The `k`-th image lmms-eval's doc_to_visual gives for doc `index`, made when opened (a split's images are
    not all held in memory)."""

    source: _Docs
    index: int
    k: int

    def open(self):
        from PIL import Image

        im = self.source.visuals(self.index)[self.k]
        if isinstance(im, dict):  # a struct the docs left undecoded ({bytes, path})
            im = Image.open(io.BytesIO(im["bytes"])) if im.get("bytes") else Image.open(im["path"])
        if isinstance(im, (str, Path)):
            im = Image.open(im)
        return im.convert("RGB")

    def __str__(self) -> str:
        return f"image {self.k} of {self.source.task.task_name} doc {self.index}"


# ----------------------------------------------------------------------------------------------- options and gold

_OPTION_COLUMNS = ("{L}", "choice_{l}", "option_{l}", "Option_{l}", "{l}")


def _in_order(texts: list[str], prompt: str) -> bool:
    pos = 0
    for t in texts:
        i = prompt.find(t.strip(), pos)
        if i < 0:
            return False
        pos = i + len(t.strip())
    return True


def _field_options(doc: dict, prompt: str) -> tuple[str, ...] | None:
    """Rule 2: a list-of-strings field, or consecutive option columns, all shown in the prompt in order."""
    for value in doc.values():
        if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, str) and v.strip() for v in value):
            if _in_order(list(value), prompt):
                return tuple(value)
    for pattern in _OPTION_COLUMNS:
        texts = []
        for letter in LETTERS:
            col = pattern.format(L=letter, l=letter.lower())
            v = doc.get(col)
            if not isinstance(v, str) or not v.strip():
                break
            texts.append(v)
        if len(texts) >= 2 and _in_order(texts, prompt):
            return tuple(texts)
    return None


def _prompt_options(prompt: str) -> tuple[str, ...] | None:
    """Rule 3: the options labelled in the rendered prompt (after the last `Options:` when there is one)."""
    found = labelled_in_text(prompt, "Options:")
    return found if len(found) >= 2 else None


_LETTER = re.compile(r"^\(?([A-Z])\)?[.:]?$")


def _gold(target: Any, options: tuple[str, ...]) -> int | None:
    """The gold index: a letter, else an option's text, else an index."""
    if isinstance(target, (list, tuple)) and len(target) == 1:
        target = target[0]
    if isinstance(target, str):
        m = _LETTER.match(target.strip())
        if m and LETTERS.index(m.group(1)) < len(options):
            return LETTERS.index(m.group(1))
        folded = [o.strip().casefold() for o in options]
        if target.strip().casefold() in folded:
            return folded.index(target.strip().casefold())
        if target.strip().isdigit() and int(target) < len(options):
            return int(target)
        return None
    if isinstance(target, bool):
        return None
    if isinstance(target, int) and 0 <= target < len(options):
        return target
    return None


def doc_options(task, doc: dict, prompt: str) -> tuple[tuple[str, ...] | None, int | None, str]:
    """(options, gold index, which rule) of one doc by the module's rule; options None when no rule applies."""
    target = task.doc_to_target(doc)
    if task.config.doc_to_choice is not None:
        choices = list(task.doc_to_choice(doc))
        if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(choices):
            gold = target
        else:
            gold = _gold(target, tuple(str(c) for c in choices))
        if choices == list(LETTERS[: len(choices)]) and all(isinstance(doc.get(c), str) for c in choices):
            choices = [doc[c] for c in choices]
        return tuple(str(c) for c in choices), gold, "doc_to_choice"
    for rule, options in (("fields", _field_options(doc, prompt)), ("prompt", _prompt_options(prompt))):
        if options:
            return options, _gold(target, options), rule
    if isinstance(target, str) and target.strip().casefold() in _YES_NO:
        return _YES_NO, _YES_NO.index(target.strip().casefold()), "yes/no"
    return None, None, "none"


# ----------------------------------------------------------------------------------------------- the benchmark


def _model_names(task) -> list[str]:
    """The mirage families' lmms-eval names that the task's YAML gives kwargs of their own."""
    kwargs = task.config.lmms_eval_specific_kwargs or {}
    return sorted({n for n in LMMS_MODEL_NAMES.values() if n in kwargs})


def _prompt_for(task, doc, model_name: str | None) -> str:
    """doc_to_text with the kwargs lmms-eval picks for `model_name` (its `_prepare_model_specific_config`)."""
    task.model_name = model_name
    task._prepare_model_specific_config()
    return task.doc_to_text(doc)


def model_name_of(model) -> str | None:
    """The lmms-eval name of `model`'s family (None: lmms-eval's default kwargs)."""
    inner = getattr(model, "model", None)
    kind = getattr(getattr(inner, "config", None), "model_type", None)
    if kind is None and type(model).__name__.lower().startswith("cambrian"):
        kind = "cambrian"
    return LMMS_MODEL_NAMES.get(kind)


def _json_safe(value: Any) -> Any:
    """process_results output as JSON (rows are appended to results.jsonl): numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _responses_filtered(task, doc, response: str) -> list:
    """The response as lmms-eval's evaluator hands it to process_results: through the task's first filter
    pipeline (`take_first` when it has none) and its reasoning-tag stripping."""
    resps = [[response]]
    for f in task._filters[0].filters:
        resps = f.apply(resps, [doc])
    out = list(resps)[0]
    try:
        from lmms_eval.api.reasoning import parse_reasoning_tags_config, strip_reasoning_tags

        tags = parse_reasoning_tags_config(cli_value=None, task_value=getattr(task.config, "reasoning_tags", None))
        if tags is not None and isinstance(out, str):
            out = strip_reasoning_tags(out, tags)
    except ImportError:
        pass
    return [out]


def _aggregate(tasks: dict[str, Any]):
    """Rows' `metrics` (process_results, by task) -> lmms-eval's aggregation per task and metric."""
    import inspect

    def metrics(values: list[dict]) -> dict:
        out = {}
        for name, task in tasks.items():
            items: dict[str, list] = {}
            for v in values:
                if v.get("task") == name:
                    for metric, value in v["scores"].items():
                        items.setdefault(metric, []).append(value)
            for metric, agg in task.aggregation().items():
                if metric not in items:
                    continue
                try:
                    value = agg(items[metric], args=None) if "args" in inspect.signature(agg).parameters \
                        else agg(items[metric])
                except Exception as e:  # noqa: BLE001 (a submission-writing aggregation, e.g. of a test split)
                    value = f"not computed: {type(e).__name__}: {e}"[:200]
                out[f"{name}/{metric}" if len(tasks) > 1 else metric] = _json_safe(value)
        return out

    return metrics


def load_lmms(task: str, split: str | None = None, data_dir: str | Path | None = None) -> Benchmark:
    """lmms-eval task or group `task` as a Benchmark (options and gold: the module's rule). `split`, when given,
    must be the task's own eval split (lmms-eval evaluates one). Prompts are lmms-eval's default kwargs'; a model
    family whose name the task's YAML gives kwargs of its own is asked in those (`Benchmark.for_model`)."""
    leaves = load_tasks(task, data_dir)
    questions: list[Question] = []
    objects: dict[str, tuple[Any, _Docs]] = {}
    unfound: list[tuple[Question, Any]] = []
    splits = []
    for name, obj in leaves:
        own = obj.config.test_split if obj.has_test_docs() else obj.config.validation_split
        splits.append(own)
        if split is not None and split != own:
            raise LmmsError(f"lmms:{task}: {name} evaluates its split {own!r}, not {split!r} (leave --split out)")
        docs = obj.test_docs() if obj.has_test_docs() else obj.validation_docs()
        source = _Docs(obj, docs)
        objects[name] = (obj, source)
        names = _model_names(obj)
        for i in range(len(docs)):
            doc = docs[i]
            prompts = {n: _prompt_for(obj, doc, n) for n in names}
            text = _prompt_for(obj, doc, None)  # last: the task is left on lmms-eval's default kwargs
            if not isinstance(text, str):
                raise LmmsError(f"lmms:{name}: doc_to_text gives {type(text).__name__}, not a prompt (a loglikelihood "
                                "task mirage cannot ask)")
            visuals = source.visuals(i)
            if any(isinstance(v, str) for v in visuals):
                raise LmmsError(f"lmms:{name}: doc {i} has video or file visuals ({visuals[0]!r}); mirage asks images")
            options, gold, rule = doc_options(obj, doc, text)
            qid = f"{name}-{i:05d}"
            meta = {"lmms_task": name, "lmms_doc": i, "options_rule": rule,
                    "prompts": {n: p for n, p in prompts.items() if p != text}}
            category = doc.get("category")
            qtype = category if isinstance(category, str) else (name if len(leaves) > 1 else "")
            images = tuple(LazyImage(source, i, k) for k in range(len(visuals)))
            if options is None:
                unfound.append((Question(qid, text, ("A", "B"), 0, images, qtype, meta), obj.doc_to_target(doc)))
                continue
            if gold is None:
                raise LmmsError(f"lmms:{name}: doc {i}: its gold {obj.doc_to_target(doc)!r} is none of its options "
                                f"{list(options)} (found by the {rule} rule)")
            questions.append(Question(qid, text, options, gold, images, qtype, meta))
    if unfound:
        from collections import Counter

        where = f"doc {unfound[0][0].meta['lmms_doc']} of {unfound[0][0].meta['lmms_task']}"
        if not questions:
            raise LmmsError(f"lmms:{task}: cannot find the options of its questions (no doc_to_choice, no options "
                            f"field shown in the prompt, no labelled options in the prompt, no yes/no gold; e.g. "
                            f"{where}, gold {unfound[0][1]!r}): mirage cannot score it by letter")
        # the most common number of options among the others (ties: the larger)
        k = max(Counter(len(q.choices) for q in questions).items(), key=lambda kv: (kv[1], kv[0]))[0]
        for q, target in unfound:
            bare = tuple(LETTERS[:k])
            gold = _gold(target, bare)
            if gold is None:
                raise LmmsError(f"lmms:{q.meta['lmms_task']}: doc {q.meta['lmms_doc']}: no options found and its gold "
                                f"{target!r} is no letter of the {k} the task's other questions have")
            questions.append(Question(q.id, q.text, bare, gold, q.images, q.type, q.meta | {"options_rule": "bare"}))
        rank = {name: n for n, (name, _) in enumerate(leaves)}
        questions.sort(key=lambda q: (rank[q.meta["lmms_task"]], q.meta["lmms_doc"]))
    if not questions:
        raise LmmsError(f"lmms:{task}: its eval split has no docs")

    def prompt(q: Question, model_name: str | None = None) -> str:
        return q.meta["prompts"].get(model_name, q.text) if model_name else q.text

    def family_prompt(model):
        name = model_name_of(model)
        return None if name is None else (lambda q: prompt(q, name))

    def judging(q: Question, response: str, seed: int = 0):
        from .mmmu_judge import judge_response

        pred, answer, correct = judge_response(q, response, seed)
        obj, source = objects[q.meta["lmms_task"]]
        doc = source.docs[q.meta["lmms_doc"]]
        scores = obj.process_results(doc, _responses_filtered(obj, doc, response))
        return pred, answer, correct, {"task": q.meta["lmms_task"], "scores": _json_safe(scores)}

    prompt.__doc__ = f"lmms-eval {task}: doc_to_text"
    return Benchmark(f"{PREFIX}{task}", splits[0] if len(set(splits)) == 1 else "+".join(dict.fromkeys(splits)),
                     questions, prompt, judging=judging, family_prompt=family_prompt, all_images=True,
                     metrics=_aggregate({n: o for n, (o, _) in objects.items()}))


# ----------------------------------------------------------------------------------------------- listing

_MEDIA_KWARGS = ("video", "From_YouTube", "load_from_disk", "builder_script")


def why_not(config: dict) -> str | None:
    """Why mirage cannot ask a task (its full YAML config), or None when it can try: a `generate_until` task with
    images. Whether its options are found shows when its data loads (the rule above)."""
    output = config.get("output_type", "generate_until")
    if output != "generate_until":
        return f"output type {output} (mirage asks generate_until tasks)"
    if config.get("doc_to_visual") is None:
        return "text only (no doc_to_visual)"
    kwargs = config.get("dataset_kwargs") or {}
    media = [k for k in _MEDIA_KWARGS if kwargs.get(k)]
    if media:
        return f"video or a data set read another way ({', '.join(media)})"
    if not callable(config.get("doc_to_text")) and not isinstance(config.get("doc_to_text"), str):
        return "no doc_to_text"
    return None


_MC_WORDS = re.compile(r"\b(letter|option|options|choice|choices|yes or no|respond with)\b", re.I)


def _looks_multiple_choice(config: dict) -> bool:
    """A doc_to_choice, or prompt kwargs asking for an option's letter (or yes or no)."""
    if config.get("doc_to_choice") is not None:
        return True
    return bool(_MC_WORDS.search(json.dumps(config.get("lmms_eval_specific_kwargs") or {}, default=str)))


class _hub_offline:
    """huggingface_hub offline for a while (its constant, read when a download starts)."""

    def __enter__(self):
        import huggingface_hub.constants as constants

        self.constants, self.saved = constants, constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True

    def __exit__(self, *exc):
        self.constants.HF_HUB_OFFLINE = self.saved


def list_lmms(match: str = "*") -> list[dict]:
    """lmms-eval's tasks whose names match `match` (fnmatch), each with its data set, whether mirage can ask it
    ("yes": multiple choice with images; "maybe": images, but its YAML shows no sign of options; "no") and why.
    A task that may run has its YAML read with its code (imported); the others' code is not imported."""
    import fnmatch

    from lmms_eval import utils

    out, seen = [], set()
    for folder in dict.fromkeys(f for n, f in task_folders().items() if fnmatch.fnmatch(n, match)):
        index = task_manager_for(folder).task_index
        for name in sorted(n for n, e in index.items() if e["type"] == "task" and fnmatch.fnmatch(n, match)):
            if name in seen:
                continue
            seen.add(name)
            path = index[name]["yaml_path"]
            simple = utils.load_yaml_config(path, mode="simple")
            entry = {"name": name, "dataset": str(simple.get("dataset_path") or ""), "runs": "no",
                     "why": why_not({**simple, "doc_to_visual": True, "doc_to_text": "(read with its code)"}
                                    if "doc_to_visual" in simple else simple)}
            if entry["why"] is None:
                try:
                    with _hub_offline():  # some tasks' code fetches files from the hub at import: not for a listing
                        config = utils.load_yaml_config(path, mode="full")
                except Exception as e:  # noqa: BLE001 (a task's code may raise anything at import)
                    first = (str(e).strip().splitlines() or [""])[0][:160]
                    entry["why"] = f"its code does not import ({type(e).__name__}: {first})"
                else:
                    entry["why"] = why_not(config)
                    if entry["why"] is None and _looks_multiple_choice(config):
                        entry["runs"], entry["why"] = "yes", "multiple choice: options found when its data loads"
                    elif entry["why"] is None:
                        entry["runs"], entry["why"] = "maybe", "no sign of options in its YAML (open answers?): " \
                                                               "refused when its data loads if none are found"
            out.append(entry)
    return sorted(out, key=lambda e: e["name"])
