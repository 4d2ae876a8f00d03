"""The analyses' own measures, read from the run's files: saliency (pointing game and energy in the target's box
against the random-map baseline), inversion (feature cosines per encoder), the adversarial patch (attack success
and the drop beyond the random patch's occlusion). Each is a small table; the report shows those a run has."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..blind import soft_prompt_control
from ..runs import SALIENCY_SUMMARY  # runs owns the run directory's file names


@dataclass
class MeasureTable:
    """A titled table: column names, and rows of cells (numbers are formatted by the template)."""

    id: str
    title: str
    note: str
    columns: list[str]
    rows: list[list]
    sentences: list[str] = field(default_factory=list)  # what the table says, in words (shown under it)


def saliency_table(path: Path) -> MeasureTable | None:
    """Per saliency source and question type: pointing game and energy in box, real and wrong image, baseline."""
    file = path / SALIENCY_SUMMARY
    if not file.is_file():
        return None
    summary = json.loads(file.read_text(encoding="utf-8"))
    rows = [[source, qtype, f["n"], f["pointing_real"], f["pointing_wrong"], f["energy_real"], f["energy_wrong"],
             f["baseline"]] for source, per in summary.items() for qtype, f in per.items()]
    return MeasureTable("saliency", "Saliency: does the map point at the target?",
                        "Pointing game: the share of maps whose peak falls in the target object's box; energy: the "
                        "share of the map inside it. A random map scores the baseline (the box's area fraction).",
                        ["source", "type", "n", "pointing real", "pointing wrong", "energy real", "energy wrong",
                         "baseline"], rows)


def inversion_table(rows: list[dict]) -> MeasureTable | None:
    """Per inversion source and encoder: mean cosine to the target features at the start, at the end, and of the
    real image's features."""
    out = []
    for source in dict.fromkeys(r["source"] for r in rows if "cos_end" in r):
        own = [r for r in rows if r["source"] == source and "cos_end" in r]
        for enc in own[0]["cos_end"]:
            mean = lambda key: round(float(np.mean([r[key][enc] for r in own if enc in r.get(key, {})])), 4)  # noqa: E731
            out.append([source, enc, len(own), mean("cos_start"), mean("cos_end"), mean("cos_real")])
    if not out:
        return None
    return MeasureTable("inversion", "Inversion: how close the pixels' features come to the targets",
                        "Mean cosine between the inverted image's encoder features and the stage-1 targets, at the "
                        "start and the end of stage 2, beside the real image's.",
                        ["source", "encoder", "n", "cosine start", "cosine end", "cosine real image"], out)


def patch_table(path: Path) -> MeasureTable | None:
    """Per patch evaluation: attack success rate (of the questions it can succeed on) and the accuracy drop beyond
    the random patch, with their 95% intervals."""
    out = []
    for file in sorted(path.glob("patch-*.summary.json")):
        summary = json.loads(file.read_text(encoding="utf-8"))
        for name, ev in summary.get("evaluations", {}).items():
            drop = ev.get("drop_vs_random") or {}
            out.append([name, ev.get("n_attackable", ev.get("n")), _interval(ev.get("success_rate")),
                        _interval(ev.get("drop")), _interval([drop.get("difference"), *drop.get("ci95", [None, None])])
                        if drop else ""])
    if not out:
        return None
    return MeasureTable("patch", "Adversarial patch: attack success",
                        "Success: the answer changed (untargeted) or became the target (targeted), over the questions "
                        "the attack can succeed on; drop: clean accuracy minus patched; beyond random: the patched "
                        "accuracy's drop below the untrained noise patch's on the same questions (occlusion removed).",
                        ["evaluation", "n", "success rate", "accuracy drop", "drop beyond random patch"], out)


def attack_success(path: Path) -> dict[str, dict]:
    """Per patch evaluation (a source of the rows): its attack success rate {"value", "ci95", "n"} (n: the questions
    it can succeed on), from the patch summary files; the main table shows it where accuracy misleads."""
    out = {}
    for file in sorted(path.glob("patch-*.summary.json")):
        for name, ev in json.loads(file.read_text(encoding="utf-8")).get("evaluations", {}).items():
            rate = ev.get("success_rate") or [None]
            if rate[0] is not None:
                out[name] = {"value": rate[0], "ci95": list(rate[1:3]), "n": ev.get("n_attackable")}
    return out


def _interval(v) -> str:
    """[value, lo, hi] (or {"value", "ci95"}) as `0.420 [0.300, 0.550]`; "" when absent."""
    if isinstance(v, dict):
        v = [v.get("value", v.get("estimate", v.get("difference"))), *v.get("ci95", [None, None])]
    if not v or v[0] is None:
        return ""
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if len(v) == 3 and None not in v else f"{v[0]:.3f}"


def soft_prompt_table(rows: list[dict]) -> MeasureTable | None:
    """Per scope: the crafted inputs, the soft prompt (free vectors in the text-only prompt) and their paired
    differences, with the steps each question took (`mirage.blind.soft_prompt_control`) and its sentences."""
    control = soft_prompt_control(rows)
    if control is None:
        return None
    out, sentences = [], []
    for scope in ("question", "universal"):
        if scope not in control:
            continue
        block = control[scope]
        for name, e in block["sources"].items():
            steps = e.get("steps")
            out.append([name, scope, e["n"], _interval(e), _interval(e.get("vs_blank")), _interval(e.get("vs_soft")),
                        "" if "within_soft" not in e else ("yes" if e["within_soft"] else "no"),
                        f"{steps['median']:g} ({steps['q25']:g}–{steps['q75']:g}; {steps['n_right']} right)"
                        if steps else ""])
        sentences += block["sentences"]
    return MeasureTable("soft-prompt", "Crafted inputs against the soft-prompt control",
                        "Soft prompt: as many free vectors as the model's image tokens, in the text-only prompt where "
                        "the image would stand, optimized with the crafted inputs' optimizer, steps, learning-rate "
                        "rule, early stop and seeds; no image at all. A crafted input whose gain lies within the soft "
                        "prompt's shows capacity as a prompt, not sight. Intervals: Wilson (accuracy), Newcombe "
                        "paired (differences). Steps: median (quartiles) over the questions that ended right.",
                        ["source", "scope", "n", "accuracy", "minus blank", "minus soft prompt",
                         "within soft prompt", "steps to right"], out, sentences)


def measure_tables(path: Path, rows: list[dict]) -> list[MeasureTable]:
    """Every measure table this run has."""
    return [t for t in (soft_prompt_table(rows), saliency_table(path), inversion_table(rows), patch_table(path))
            if t is not None]
