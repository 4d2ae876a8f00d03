"""Trained-blind baselines: the Test-set Stress-Test (TsT) of Brown et al., "Benchmark designers should 'train on
the test set' to expose exploitable non-visual shortcuts" (arXiv 2511.04655; code vision-x-nyu/test-set-training).

A text-only model learns the gold letter from the questions and options of k-1 folds of the benchmark itself and
answers the held-out fold, so every question gets an out-of-fold prediction and a bias score s(x) (the probability
of its gold answer) from a model that never trained on it:

    tst-rf   a scikit-learn random forest on features of the text (per option; below)
    tst-lm   LoRA fine-tuning (peft) of a causal LM: the VLM's own LM on its text-only path (`none`), or a text LM

What follows the paper and its code (TsT/core/cross_validation.py, evaluators/rf.py, evaluators/llm/config.py and
trainers/llamafactory.py):
  * k = 5 folds, stratified by the gold answer (`StratifiedKFold(shuffle=True)`); here `StratifiedGroupKFold`: the
    questions whose prompt is the same text share a fold, so a twin never scores its twin (no leakage by duplicates).
  * s(x): the held-out model's probability of the ground truth.
  * RF: `RandomForestClassifier(n_estimators=100, random_state=seed)`; the paper's feature families (question text,
    the options' text and length, the question type, the answer space). The paper's features are written per
    benchmark; mirage's are generic: each option is one row (hashed question words, option words, question x option
    word pairs, the option's letter, its length and overlap with the question, the question type), the forest's
    probability that the option is the answer, normalised over the options. (Question word x letter pairs found
    a planted keyword -> letter shortcut but, diluting the rest, cost ShapesQA's text-prior questions 0.94 -> 0.80.)
    Beside them, the paper's answer-frequency maps (its models' `fit_feature_maps` on the training folds, then
    `add_features` on both: VSI's `option_freq` = how often an option value was the gold answer, `tgt_option_pair_freq`
    = how often it was the answer beside the question's key object, `obj_count`), made generic with the whole
    question text as the key: per option, how often its text was the answer in the training folds (and the rate
    among the times it was offered), how often it answered a training question of the same text (and that rate),
    and how many training questions have that text. As in the paper the maps of the training rows include their own
    answers (leave-one-out counts, tried, invert on the training rows and made ShapesQA's counting questions look
    biased). A fact asked several times (ShapesQA's `prior` questions) is learnt from its copies in the other folds;
    the last copy of a fact left in a benchmark is not (nothing in the rest of the text teaches it).
  * LM: LoRA on every linear layer of the LM's decoder (LLaMA-Factory's `lora_target: all`), rank 8, alpha 16
    (2 x rank), dropout 0.1, lr 2e-4, AdamW, cosine schedule with 10% warm-up, 5 epochs, batch 32 (the paper's
    defaults). The objective is the SFT loss of the one-token response, the gold letter: cross-entropy of the
    next-token logits after the prompt. Unlike the paper (its own "Answer the following question ..." template), the
    model reads the benchmark's prompt through its text-only path, the same text `none`/`text-model` score, so
    trained and zero-shot blind accuracies compare on the same prompts; it is scored by mirage's letter scoring.
  * Steps are batched by length: the training questions sorted by prompt length, cut into batches, the batches'
    order shuffled each epoch (seeded). bf16 weights on a GPU (fp32 adapters), fp32 on the CPU.

Rows (`tst-rf`, `tst-lm`) go to the run directory fold by fold with their `fold`; a killed run resumes at the first
fold with questions left. The fold assignment and settings are kept in artifacts/tst.json. Under torchrun fold f
runs on rank f % world size.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .. import memory
from ..benchmarks.question import LETTERS, Benchmark, Question
from ..distributed import SINGLE, World
from ..errors import MirageError, UsageError
from ..models.vlm import VLM, Visual
from ..progress import progress_bar
from ..runs import RunDir
from ..sources import TEXT_MODEL, TST_LM, TST_RF

STATE = "tst.json"  # artifacts/: fold assignment and each diagnostic's settings
DIAGNOSTICS = {"rf": TST_RF, "lm": TST_LM}


@dataclass(frozen=True)
class LoraSettings:
    """tst-lm's fine-tuning (the paper's defaults)."""

    epochs: int = 5
    lr: float = 2e-4
    rank: int = 8
    alpha: int | None = None  # None: 2 x rank
    dropout: float = 0.1
    batch_size: int = 32
    warmup: float = 0.1
    # recompute the decoder's activations in backward. None (auto): only for the batches whose training step does
    # not fit the memory without it, measured per fold (a 7B LM's batch of 32 prompts up to 429 tokens ran out of
    # an H100's 80 GB without it: bench/RESULTS.md). On the CPU, auto measures only under `memory_gib`, else leaves
    # it off
    checkpointing: bool | None = None
    memory_gib: float | None = None  # auto's budget (default: a GPU's free memory)

    def record(self) -> dict:  # what changes the rows (checkpointing and its budget do not)
        return ({k: v for k, v in asdict(self).items() if k not in ("checkpointing", "memory_gib")}
                | {"alpha": self.alpha or 2 * self.rank})


@dataclass(frozen=True)
class ForestSettings:
    """tst-rf's forest (the paper's classifier)."""

    n_estimators: int = 100
    n_jobs: int | None = None  # scikit-learn's: None is one core (the paper: -1, every core)
    max_columns: int = 4096  # the training folds' most frequent features (of those in 2 rows or more)
    answer_maps: bool = True  # the training folds' answer-frequency features (the paper's feature maps; below)


# --- folds ------------------------------------------------------------------------------------------------------


def assign_folds(questions: Sequence[Question], prompts: Sequence[str], k: int = 5, seed: int = 0) -> dict[str, int]:
    """Question id -> fold in 0..k-1: stratified by the gold letter, questions with the same prompt in one fold,
    deterministic in (the questions, k, seed)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if k < 2:
        raise UsageError(f"--folds {k}: cross-fitting needs at least 2 folds")
    group_of = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    if len(group_of) < k:
        raise UsageError(f"--folds {k}: the benchmark has {len(group_of)} distinct question texts, fewer than the "
                         "folds")
    groups = [group_of[p] for p in prompts]
    y = [q.answer for q in questions]
    # every letter rarer than k (a handful of questions): groups alone, unstratified
    splitter = (StratifiedGroupKFold if max(np.bincount(y)) >= k else GroupKFold)(n_splits=k, shuffle=True,
                                                                                  random_state=seed)
    out = {}
    with warnings.catch_warnings():  # a letter rarer than k: sklearn warns, the folds are still valid
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            out.update({questions[i].id: fold for i in test})
    return out


# --- the random forest --------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def option_features(q: Question) -> list[tuple[list[str], list[float]]]:
    """Per option: tokens (question type, letter, type x letter, question words, option words, question word x
    option word pairs) and numbers (letter index, option length in characters and words,
    words shared with the question, the number of options)."""
    qw = sorted(set(_words(q.text)))
    out = []
    for i, choice in enumerate(q.choices):
        ow = sorted(set(_words(choice)))
        tokens = [f"type={q.type}", f"letter={i}", f"type={q.type}|{i}", *(f"q:{w}" for w in qw),
                  *(f"o:{w}" for w in ow), *(f"qo:{a}|{b}" for a in qw for b in ow)]
        out.append((tokens, [i, len(choice), len(ow), len(set(qw) & set(ow)), len(q.choices)]))
    return out


def _key(text: str) -> str:
    return " ".join(_words(text))


@dataclass
class AnswerMaps:
    """The paper's feature maps, fitted on the training folds: counts of answer texts, overall and per question text
    (`_key`: lower-cased words)."""

    gold: dict[str, int]  # option text -> training questions it answered
    offered: dict[str, int]  # option text -> training questions that offered it
    pair_gold: dict[tuple[str, str], int]  # (question text, option text) -> training questions it answered
    pair_offered: dict[tuple[str, str], int]
    texts: dict[str, int]  # question text -> training questions

    @classmethod
    def fit(cls, train: Sequence[Question]) -> "AnswerMaps":
        from collections import Counter

        gold, offered, pair_gold, pair_offered, texts = Counter(), Counter(), Counter(), Counter(), Counter()
        for q in train:
            key = _key(q.text)
            texts[key] += 1
            for i, choice in enumerate(q.choices):
                o = _key(choice)
                offered[o] += 1
                pair_offered[key, o] += 1
                if i == q.answer:
                    gold[o] += 1
                    pair_gold[key, o] += 1
        return cls(gold, offered, pair_gold, pair_offered, texts)

    def features(self, q: Question) -> list[dict[str, float]]:
        """Per option: times its text was the answer (and the rate among the times it was offered; -1 never
        offered), the same for training questions of this question's text, and their number."""
        key, out = _key(q.text), []
        for choice in q.choices:
            o = _key(choice)
            g, n = self.gold.get(o, 0), self.offered.get(o, 0)
            pg, pn = self.pair_gold.get((key, o), 0), self.pair_offered.get((key, o), 0)
            out.append({"m:gold": g, "m:gold_rate": g / n if n else -1.0, "m:pair_gold": pg,
                        "m:pair_rate": pg / pn if pn else -1.0, "m:texts": self.texts.get(key, 0)})
        return out


def _rows_of(questions: Sequence[Question], maps: AnswerMaps | None = None) -> list[dict[str, float]]:
    rows = []
    for q in questions:
        extra = maps.features(q) if maps is not None else [{}] * len(q.choices)
        for (tokens, numbers), more in zip(option_features(q), extra):
            rows.append(dict.fromkeys(tokens, 1.0) | {f"#{i}": float(v) for i, v in enumerate(numbers)} | more)
    return rows


def forest_probs(train: Sequence[Question], test: Sequence[Question], seed: int = 0,
                 settings: ForestSettings = ForestSettings()) -> list[np.ndarray]:
    """Fit the forest on `train`'s options (is this option the answer?) and return, per `test` question, the
    probabilities of its options (normalised; uniform where the forest gives every option 0). The vocabulary of
    features and the answer maps are `train`'s (fitted on the training folds only, as the paper's encoders and
    feature maps are): the features of 2 rows or more, at most `max_columns` of them, the most frequent."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction import DictVectorizer

    maps = AnswerMaps.fit(train) if settings.answer_maps else None
    vec = DictVectorizer(dtype=np.float32)
    x = vec.fit_transform(_rows_of(train, maps))
    counts = np.asarray((x != 0).sum(0)).ravel()
    keep = np.flatnonzero(counts >= 2)  # a feature of one row cannot generalise
    keep = np.sort(keep[np.argsort(-counts[keep], kind="stable")[: settings.max_columns]])  # the most frequent
    x = x[:, keep].toarray()
    y = np.array([i == q.answer for q in train for i in range(len(q.choices))])
    forest = RandomForestClassifier(n_estimators=settings.n_estimators, random_state=seed, n_jobs=settings.n_jobs)
    forest.fit(x, y)
    p = np.zeros(sum(len(q.choices) for q in test))
    if True in forest.classes_:
        x_test = vec.transform(_rows_of(test, maps))[:, keep].toarray()
        p = forest.predict_proba(x_test)[:, list(forest.classes_).index(True)]
    out, at = [], 0
    for q in test:
        s = p[at : at + len(q.choices)]
        at += len(q.choices)
        out.append(s / s.sum() if s.sum() > 0 else np.full(len(q.choices), 1 / len(q.choices)))
    return out


def _row(q: Question, probs: Sequence[float], source: str, fold: int) -> dict:
    pred = int(np.argmax(probs))
    return {"question_id": q.id, "source": source, "pred": LETTERS[pred], "answer": q.answer_letter,
            "correct": pred == q.answer, "probs": [round(float(x), 4) for x in probs], "type": q.type, "fold": fold}


def forest_rows(train: Sequence[Question], test: Sequence[Question], fold: int, seed: int = 0,
                settings: ForestSettings = ForestSettings()) -> list[dict]:
    """tst-rf rows of `test` from a forest fitted on `train`."""
    return [_row(q, p, TST_RF, fold) for q, p in zip(test, forest_probs(train, test, seed, settings))]


# --- LoRA on the LM ------------------------------------------------------------------------------------------------


def decoder_of(model: VLM) -> torch.nn.Module:
    """The LM decoder (its layers, not the output head) of a mirage model: a text LM's, the demo's and Cambrian's
    (`lm`), and the transformers VLMs' (`inner.language_model`)."""
    inner = getattr(model, "inner", None)
    if inner is not None and hasattr(inner, "language_model"):
        return inner.language_model
    for name in ("lm", "model"):  # the demo, Cambrian: `lm`; TextLM: `model` (a causal LM)
        lm = getattr(model, name, None)
        if lm is not None and hasattr(lm, "get_decoder"):
            return lm.get_decoder()
    raise UsageError(f"tst-lm: cannot find the language model of {type(model).__name__} to fine-tune; give "
                     "--text-model hf:<causal LM>")


def lora_targets(decoder: torch.nn.Module) -> list[str]:
    """The names of the decoder's linear layers (LLaMA-Factory's `lora_target: all`)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in decoder.named_modules()
                   if isinstance(m, torch.nn.Linear)})


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def length_batches(questions: Sequence[Question], prompt: Callable[[Question], str], batch_size: int,
                   rng: np.random.Generator | None) -> list[list[Question]]:
    """The questions sorted by prompt length, cut into batches, the batches in a shuffled order (without `rng`:
    shortest first)."""
    ordered = sorted(questions, key=lambda q: (len(prompt(q)), q.id))
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    return batches if rng is None else [batches[i] for i in rng.permutation(len(batches))]


def batch_weight(batch: Sequence[Question], prompt: Callable[[Question], str]) -> int:
    """A batch's padded size in prompt characters, its rows times its longest prompt: what a training step's
    activations grow with. (The batches are cut from the length-sorted questions, so the last, often partial, batch
    holds the longest prompts but need not be the heaviest.)"""
    return len(batch) * max(len(prompt(q)) for q in batch)


def checkpointed_batches(model: VLM, decoder: torch.nn.Module, params: Sequence[torch.Tensor],
                         loss_of: Callable[[Sequence[Question]], torch.Tensor], batches: Sequence[Sequence[Question]],
                         weight: Callable[[Sequence[Question]], int], memory_gib: float | None = None) -> set[str]:
    """Which of tst-lm's batches need gradient checkpointing (by their first question's id): training steps without
    it, measured against the memory budget (`memory.budget`: a GPU's free memory, or `memory_gib`). The heaviest
    batch first: where it fits, none does; else a binary search over the batches ordered by `weight` finds the
    heaviest that fits, and only the heavier ones recompute (recomputation changes no number, only time). Each
    probe leaves no gradient behind and draws nothing from the random streams the training uses (dropout's).
    Without a budget (the CPU, no `memory_gib`) nothing is measured: none."""
    device = model.device
    limit = memory.budget(device, memory_gib)
    if limit is None or not batches:
        return set()
    order = sorted(range(len(batches)), key=lambda i: (weight(batches[i]), i))

    def fits(k: int) -> bool:
        def step() -> None:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                loss_of(batches[order[k]]).backward()

        try:
            return memory.peak(step, decoder, device) <= limit
        except memory.OutOfBudget:
            return False
        finally:
            for p in params:
                p.grad = None

    if fits(len(order) - 1):
        return set()
    lo, hi = -1, len(order) - 1  # order[lo] fits (-1: none known to), order[hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return {batches[order[k]][0].id for k in range(hi, len(order))}


def set_checkpointing(decoder: torch.nn.Module, on: bool) -> None:
    """Gradient checkpointing of a transformers decoder on or off (transformers >= 5.2x's names, or the older)."""
    if on:
        kwargs = {"use_reentrant": False}  # the frozen inputs need no grad; the adapters' still flow
        if hasattr(decoder, "activation_checkpointing_enable"):
            decoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        (getattr(decoder, "activation_checkpointing_disable", None) or decoder.gradient_checkpointing_disable)()


def lora_rows(model: VLM, bench: Benchmark, train: Sequence[Question], test: Sequence[Question], fold: int,
              seed: int = 0, settings: LoraSettings = LoraSettings(), quiet: bool = True,
              eval_batch_size: int = 32) -> list[dict]:
    """Fine-tune fresh LoRA adapters of `model`'s LM on `train` (gold letter after the text-only prompt), score
    `test` by mirage's letter scoring, and remove the adapters again (the model is left as it came)."""
    from peft import LoraConfig, LoraModel

    from ..evaluate import score

    decoder = decoder_of(model)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha or 2 * settings.rank,
                        lora_dropout=settings.dropout, target_modules=lora_targets(decoder), bias="none")
    torch.manual_seed(seed * 1000 + fold)
    was_training = decoder.training
    lora = LoraModel(decoder, config, f"tst{fold}")
    checkpoint = False
    try:
        params = [p for n, p in lora.named_parameters() if "lora_" in n]
        for p in params:  # fp32 adapters and optimizer over bf16 weights (peft casts the input to them)
            p.data = p.data.float()
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
        rng = np.random.default_rng([seed, fold])
        n_batches = math.ceil(len(train) / settings.batch_size)
        total = settings.epochs * n_batches
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: _cosine(s, total, int(settings.warmup * total)))
        letters = {n: torch.tensor(model.letter_ids(n), device=model.device) for n in {len(q.choices) for q in train}}

        def loss_of(batch: Sequence[Question]) -> torch.Tensor:
            logits = model.next_token_logits([bench.prompt(q) for q in batch], Visual.none())
            gold = torch.stack([letters[len(q.choices)][q.answer] for q in batch])
            return torch.nn.functional.cross_entropy(logits.float(), gold)

        def train_step(batch: Sequence[Question]) -> bool:
            """One optimizer step; False where a step without checkpointing ran out of GPU memory under auto (then
            nothing has changed: no update, no gradient, the random streams as they were before the step)."""
            cuda = model.device.type == "cuda"
            fallback = checkpoint is False and settings.checkpointing is None and can_checkpoint
            if fallback:
                streams = torch.get_rng_state(), torch.cuda.get_rng_state(model.device) if cuda else None
            opt.zero_grad(set_to_none=True)
            oom = False
            try:
                loss_of(batch).backward()
            except torch.cuda.OutOfMemoryError:
                if not fallback:
                    raise
                oom = True  # the error's traceback holds the step's tensors: freed once this block is left
            if oom:
                opt.zero_grad(set_to_none=True)
                torch.set_rng_state(streams[0])
                if cuda:
                    torch.cuda.set_rng_state(streams[1], model.device)
                memory.clear(model.device)
                return False
            opt.step()
            return True

        decoder.train()
        can_checkpoint = getattr(decoder, "supports_gradient_checkpointing", False)
        heavy: set[str] | None = set()  # the batches trained with checkpointing (None: all)
        if can_checkpoint and settings.checkpointing is not False:
            heavy = None
            if settings.checkpointing is None:
                batches = length_batches(train, bench.prompt, settings.batch_size, None)
                heavy = checkpointed_batches(model, decoder, params, loss_of, batches,
                                             lambda b: batch_weight(b, bench.prompt), settings.memory_gib)
                if not quiet:
                    print(f"tst-lm fold {fold}: gradient checkpointing for {len(heavy)} of {len(batches)} batches "
                          "(auto: the others fit without it)")
        with progress_bar(f"tst-lm fold {fold}", total, quiet) as advance:
            for _ in range(settings.epochs):
                for batch in length_batches(train, bench.prompt, settings.batch_size, rng):
                    want = heavy is None or batch[0].id in heavy
                    if want != checkpoint:
                        set_checkpointing(decoder, want)
                        checkpoint = want
                    if not train_step(batch):  # a batch the probes did not measure outgrew the memory without
                        heavy.add(batch[0].id)  # checkpointing: it recomputes from now on, this step again
                        set_checkpointing(decoder, True)
                        checkpoint = True
                        train_step(batch)
                    sched.step()
                    advance(1)
        decoder.eval()
        rows = []
        with torch.no_grad():
            for i in range(0, len(test), eval_batch_size):
                rows += score(model, bench, test[i : i + eval_batch_size], Visual.none(), TST_LM, seed=seed)
    finally:
        if checkpoint:
            set_checkpointing(decoder, False)
        lora.unload()  # the original linear layers back in place
        if hasattr(decoder, "peft_config"):  # what peft leaves on the model it wrapped
            del decoder.peft_config
        decoder.train(was_training)
    return [r | {"fold": fold} for r in rows]


# --- re-diagnosis (Iterative Bias Pruning's ComputeSampleBiasScores) -----------------------------------------------


def cross_fit(questions: Sequence[Question], prompts: Sequence[str], folds: int, seed: int,
              predict: Callable[[list[Question], list[Question], int], Sequence]) -> dict[str, tuple[float, bool]]:
    """Question id -> (s(x), answered right): the folds of `assign_folds`, `predict(train, test, fold)` giving each
    held-out question's option probabilities from a model fitted on the other folds."""
    assignment = assign_folds(questions, prompts, folds, seed)
    out = {}
    for fold in range(folds):
        test = [q for q in questions if assignment[q.id] == fold]
        train = [q for q in questions if assignment[q.id] != fold]
        for q, p in zip(test, predict(train, test, fold)):
            out[q.id] = (float(p[q.answer]), int(np.argmax(p)) == q.answer)
    return out


def forest_diagnostic(folds: int = 5, seed: int = 0, settings: ForestSettings = ForestSettings()) -> Callable:
    """The cross-fitted forest as a function of the questions (identical question texts and options in one fold)."""
    return lambda qs: cross_fit(qs, [f"{q.text}\n{q.choices}" for q in qs], folds, seed,
                                lambda train, test, fold: forest_probs(train, test, seed, settings))


def lora_diagnostic(model: VLM, bench: Benchmark, folds: int = 5, seed: int = 0,
                    settings: LoraSettings = LoraSettings()) -> Callable:
    """Cross-fitted LoRA of `model`'s LM as a function of the questions (folds grouped by prompt, as `run_tst`'s),
    fresh adapters per fold: every call fine-tunes `folds` times."""
    bench = bench.for_model(model)

    def predict(train: list[Question], test: list[Question], fold: int) -> list:
        probs = {r["question_id"]: r["probs"] for r in lora_rows(model, bench, train, test, fold, seed, settings)}
        return [probs[q.id] for q in test]

    return lambda qs: cross_fit(qs, [bench.prompt(q) for q in qs], folds, seed, predict)


# --- the runner -----------------------------------------------------------------------------------------------------


def _state(run: RunDir, source: str, folds: dict[str, int], k: int, seed: int, settings: dict, world: World) -> None:
    """artifacts/tst.json, per source: its folds and settings, written by its first call and checked by every later
    one (a resume must not mix folds or settings)."""
    import json

    path = run.artifacts_dir / STATE
    state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    new = {"k": k, "seed": seed, "stratify": "gold letter", "groups": "identical prompt", "settings": settings,
           "folds": folds}
    old = state.get(source)
    if old is not None:
        if (old["k"], old["seed"]) != (k, seed) or {q: f for q, f in old["folds"].items() if q in folds} != {
                q: f for q, f in folds.items() if q in old["folds"]}:
            raise MirageError(f"run {str(run.path)!r} holds {source} rows of other folds (k {old['k']}, seed "
                              f"{old['seed']}, {len(old['folds'])} questions): use another run directory")
        if old["settings"] != settings:
            changed = [f"{key}: {old['settings'].get(key)} -> {v}" for key, v in settings.items()
                       if old["settings"].get(key) != v]
            raise MirageError(f"run {str(run.path)!r} holds {source} rows made with other settings "
                              f"({'; '.join(changed)}): use another run directory")
        new["folds"] = old["folds"] | folds
    if world.main:
        run.artifacts_dir.mkdir(parents=True, exist_ok=True)
        run.write_json(f"{run.artifacts_dir.name}/{STATE}", state | {source: new})


def read_state(path) -> dict:
    """A run directory's artifacts/tst.json ({} when it has none)."""
    import json
    from pathlib import Path

    file = Path(path) / "artifacts" / STATE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def run_tst(model: VLM | None, bench: Benchmark, run: RunDir, diagnostics: Sequence[str] = ("rf", "lm"),
            folds: int = 5, seed: int = 0, lm: VLM | None = None, lm_name: str | None = None,
            lora: LoraSettings = LoraSettings(), forest: ForestSettings = ForestSettings(), quiet: bool = True,
            world: World = SINGLE) -> list[dict]:
    """Cross-fitted trained-blind rows of `bench` into `run` (resumable fold by fold): `tst-rf` and/or `tst-lm`
    (LoRA on `lm`, a text LM, or else on `model`'s own LM through its text-only path). Returns this call's rows."""
    unknown = [d for d in diagnostics if d not in DIAGNOSTICS]
    if unknown:
        raise UsageError(f"--diagnostics: unknown {', '.join(unknown)} (allowed: {', '.join(DIAGNOSTICS)})")
    target = lm if lm is not None else model
    if "lm" in diagnostics and target is None:
        raise UsageError("tst-lm needs a model or a text LM to fine-tune")
    questions = [q for q in bench if q.kind == "mc"]
    if "lm" in diagnostics:
        from ..evaluate import check_prompts

        bench = bench.for_model(target)
        check_prompts(target, bench, world=world)
    assignment = assign_folds(questions, [bench.prompt(q) for q in questions], folds, seed)
    zero_shot = TEXT_MODEL if lm is not None else "none"  # the same LM untrained: its zero-shot blind source
    if "rf" in diagnostics:
        _state(run, TST_RF, assignment, folds, seed, asdict(forest), world)
    if "lm" in diagnostics:
        _state(run, TST_LM, assignment, folds, seed, lora.record() | {
            "lm": lm_name or getattr(target, "name_or_path", type(target).__name__), "zero_shot": zero_shot}, world)
    done = run.done()
    out = []
    for fold in range(folds):
        if fold % world.size != world.rank:
            continue
        held = [q for q in questions if assignment[q.id] == fold]
        train = [q for q in questions if assignment[q.id] != fold]
        for d in diagnostics:
            source = DIAGNOSTICS[d]
            todo = [q for q in held if (q.id, source) not in done]
            if not todo:
                continue
            if d == "rf":
                rows = forest_rows(train, todo, fold, seed, forest)
            else:
                rows = [r | {"zero_shot": zero_shot} for r in
                        lora_rows(target, bench, train, todo, fold, seed, lora, quiet)]
            run.append(rows)
            out += rows
    return out


__all__ = ["DIAGNOSTICS", "AnswerMaps", "ForestSettings", "LoraSettings", "STATE", "assign_folds", "cross_fit",
           "decoder_of", "forest_diagnostic", "forest_probs", "forest_rows", "length_batches", "lora_diagnostic",
           "lora_rows", "lora_targets", "option_features", "read_state", "run_tst"]
