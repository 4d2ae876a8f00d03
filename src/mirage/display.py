"""Terminal tables of run summaries (rich)."""

from __future__ import annotations

from rich.table import Table


def summary_table(summary: dict, title: str | None = None) -> Table:
    """Source, n, accuracy, 95% interval, per question type, and the paired test against `real`."""
    types = sorted({t for by in summary.get("by_type", {}).values() for t in by})
    table = Table(title=title)
    for col in ("source", "n", "accuracy", "95% CI", *(t or "(no type)" for t in types), "vs real (p)"):
        # a narrow terminal folds a long source name instead of cutting two alike names to the same prefix
        table.add_column(col, justify="left" if col == "source" else "right",
                         overflow="fold" if col == "source" else "ellipsis")
    for src, n in summary["n"].items():
        lo, hi = summary["ci95"][src]
        by = summary.get("by_type", {}).get(src, {})
        paired = summary.get("paired", {}).get(src, {}).get("real")
        table.add_row(src, str(n), f"{summary['accuracy'][src]:.3f}", f"[{lo:.3f}, {hi:.3f}]",
                      *(f"{by[t]:.2f}" if t in by else "" for t in types),
                      f"{paired['p']:.2g}" if paired else "")
    return table


def _cell(m: dict | None, signed: bool = False) -> str:
    if not m or m.get("value", m.get("difference")) is None:
        return ""
    v = m.get("value", m.get("difference"))
    lo, hi = m["ci95"]
    return f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]" if signed else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def study_table(table: list[dict], title: str | None = None) -> Table:
    """The cross-benchmark table of a study: per benchmark S_v, S_wv, S_t, MG, ML, the trained-blind accuracies and
    gaps where the study has them, the shuffle decomposition (image alone, text alone, neither, and the differences)
    and the best crafted input against real, each with its 95% interval."""
    from .blind import SHUFFLE_NAMES

    out = Table(title=title)
    trained = [m for m in ("TsT_lm", "TsT_rf", "gap_lm", "gap_rf") if any(line.get(m) for line in table)]
    shuffles = [m for m in STUDY_SHUFFLE if any(m in (line.get("shuffle") or {}) for line in table)]
    for col in ("benchmark", "S_v", "S_wv", "S_t", "MG", "ML", *trained, *(SHUFFLE_NAMES[m] for m in shuffles),
                "best crafted input", "minus real"):
        out.add_column(col, justify="left" if col in ("benchmark", "best crafted input") else "right")
    for line in table:
        best = line.get("best_crafted") or {}
        shuffle = line.get("shuffle") or {}
        out.add_row(line["benchmark"], *(_cell(line.get(m)) for m in ("S_v", "S_wv", "S_t")),
                    *(_cell(line.get(m), signed=True) for m in ("MG", "ML")),
                    *(_cell(line.get(m), signed=m.startswith("gap")) for m in trained),
                    *(_cell(shuffle.get(m), signed=m in STUDY_SHUFFLE[3:]) for m in shuffles),
                    f"{best['source']} {_cell(best)}" if best else "", _cell(best.get("vs_real"), signed=True))
    return out


# the shuffle decomposition's columns of the study table (the pair is S_v): image alone, text alone, neither, and
# the three paired differences
STUDY_SHUFFLE = ("image_only", "text_only", "neither", "image_adds", "text_adds", "pair_beyond")


def blind_table(blind: dict, title: str = "image-free measures (MMStar)") -> Table:
    """S_v, S_wv, S_t, MG, ML with their 95% intervals, overall and per question type (see `mirage.blind`)."""
    from .blind import MEASURES

    measures = [m for m in MEASURES if m in blind or any(m in b for b in blind["by_type"].values())]
    table = Table(title=title, caption="S_v real, S_wv no image, S_t text model; MG = S_v - S_wv; "
                                       "ML = max(0, S_wv - S_t); TsT_lm / TsT_rf trained blind (LoRA LM / random "
                                       "forest, cross-fitted); gap = trained - zero-shot blind; paired intervals "
                                       "for MG, ML and the gaps")
    for col in ("questions", *measures):
        table.add_column(col, justify="left" if col == "questions" else "right")
    cell = lambda b, m: (f"{b[m]['value']:.3f} [{b[m]['ci95'][0]:.3f}, {b[m]['ci95'][1]:.3f}]" if m in b else "")
    table.add_row("all", *(cell(blind, m) for m in measures))
    for t, b in blind["by_type"].items():
        table.add_row(t, *(cell(b, m) for m in measures))
    return table


def soft_prompt_table(control: dict, title: str = "crafted inputs against the soft prompt") -> Table:
    """Per scope: each crafted input and the soft prompt with accuracy, gain over blank, difference from the soft
    prompt (paired 95% intervals) and the median steps to a right answer (`mirage.blind.soft_prompt_control`)."""
    table = Table(title=title, caption="soft prompt: free vectors in the text-only prompt, the crafted inputs' "
                                       "optimizer, steps and seeds; paired intervals")
    for col in ("source", "n", "accuracy", "minus blank", "minus soft prompt", "within", "median steps"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for scope in ("question", "universal"):
        for name, e in control.get(scope, {}).get("sources", {}).items():
            steps = e.get("steps")
            table.add_row(name, str(e["n"]), _cell(e), _cell(e.get("vs_blank"), signed=True),
                          _cell(e.get("vs_soft"), signed=True),
                          "" if "within_soft" not in e else ("yes" if e["within_soft"] else "no"),
                          f"{steps['median']:g}" if steps else "")
    return table


def shuffle_table(shuffle: dict, title: str = "where the score comes from (Multi-modal Data Spectrum)") -> Table:
    """Accuracy with the pair, the image alone, the text alone, neither, chance, and the paired differences (image
    adds to text, text adds to image, pair beyond either alone) with their 95% intervals, overall and per type."""
    from .blind import SHUFFLE_MEASURES, SHUFFLE_NAMES

    measures = [m for m in (*SHUFFLE_MEASURES[:4], "chance", *SHUFFLE_MEASURES[4:])
                if m in shuffle or any(m in b for b in shuffle["by_type"].values())]
    table = Table(title=title, caption="pair: real; image alone: image-only (another question's words); text alone: "
                  "wrong (another question's image); neither: both. Differences paired (Newcombe); pair beyond "
                  "either alone = pair - correct with the image alone or the text alone")
    for m in ("questions", *measures):
        table.add_column(SHUFFLE_NAMES.get(m, m), justify="left" if m == "questions" else "right")

    def cell(b: dict, m: str) -> str:
        if m not in b:
            return ""
        if m == "chance":
            return f"{b[m]['value']:.3f}"
        lo, hi = b[m]["ci95"]
        sign = "+" if m not in SHUFFLE_MEASURES[:4] else ""
        return f"{b[m]['value']:{sign}.3f}\n[{lo:{sign}.3f}, {hi:{sign}.3f}]"

    table.add_row("all", *(cell(shuffle, m) for m in measures))
    for t, b in shuffle["by_type"].items():
        table.add_row(t, *(cell(b, m) for m in measures))
    return table


def difference_table(difference: dict, first: str, second: str, title: str | None = None) -> Table:
    """Every measure under two runs (two prompt variants) and its difference, second minus first, with its paired
    95% interval (`blind.run_difference`)."""
    table = Table(title=title, caption=f"accuracies: {difference['intervals']['accuracy']}; differences of "
                                       f"differences (MG, ML, ...): {difference['intervals']['difference']}")
    for col in ("measure", "n", first, second, f"{second} - {first}"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for name, m in difference["measures"].items():
        lo, hi = m["ci95"]
        table.add_row(name, str(m["n"]), f"{m['a']:+.3f}" if m["a"] < 0 else f"{m['a']:.3f}",
                      f"{m['b']:+.3f}" if m["b"] < 0 else f"{m['b']:.3f}",
                      f"{m['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return table


def metrics_table(metrics: dict, title: str = "the benchmark's own metrics (lmms-eval process_results + aggregation)"
                  ) -> Table:
    """Per source, the benchmark's own aggregated metrics of its generated answers (`summary["metrics"]`)."""
    names = list(dict.fromkeys(m for values in metrics.values() for m in values))
    table = Table(title=title)
    for col in ("source", *names):
        table.add_column(col, justify="left" if col == "source" else "right")
    fmt = lambda v: f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    for source, values in metrics.items():
        table.add_row(source, *(fmt(values[m]) if m in values else "" for m in names))
    return table
