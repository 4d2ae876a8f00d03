"""The report's plots: matplotlib figures drawn off-screen (Agg canvas, no pyplot state) and embedded as PNG."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

from ..sources import SourceInfo
from .sources import SPECTRUM
from .tables import SourceRow

GROUP_COLOURS = {"condition": "#4C72B0", "optimized": "#DD8452", "single-encoder": "#55A868", "other": "#8172B3"}
DPI = 100


@dataclass
class Plot:
    """An embedded figure: a title, the PNG data URI and a caption."""

    key: str
    title: str
    uri: str
    caption: str


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _errors(rows: list[SourceRow]) -> list[list[float]]:
    return [[max(r.accuracy - r.ci95[0], 0) for r in rows], [max(r.ci95[1] - r.accuracy, 0) for r in rows]]


def chance_level(rows: list[dict]) -> float | None:
    """Mean of 1/(number of choices) over the rows that carry choice probabilities."""
    inv = [1 / len(r["probs"]) for r in rows if r.get("probs")]
    return sum(inv) / len(inv) if inv else None


def accuracy_plot(table: list[SourceRow], chance: float | None) -> Plot:
    """Every source's accuracy with its 95% interval, one line each, coloured by group."""
    rows = [r for r in table if not math.isnan(r.accuracy)]
    fig = _figure(8, 0.8 + 0.3 * len(rows))
    ax = fig.add_subplot()
    y = list(range(len(rows)))[::-1]
    for group, colour in GROUP_COLOURS.items():
        idx = [i for i, r in enumerate(rows) if r.info.group == group]
        if idx:
            sub = [rows[i] for i in idx]
            ax.errorbar([r.accuracy for r in sub], [y[i] for i in idx], xerr=_errors(sub), fmt="o", color=colour,
                        capsize=3, label=group)
    if chance is not None:
        ax.axvline(chance, color="grey", ls="--", lw=1, label=f"chance {chance:.2f}")
    ax.set_yticks(y, [r.info.name for r in rows])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("accuracy (95% Wilson interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return Plot("accuracy", "Accuracy per source", _uri(fig),
                "Each source's accuracy on its own questions (n in the table), with its 95% interval.")


def spectrum_plot(table: list[SourceRow]) -> Plot | None:
    """Conditions from no image (none) or no information (blank) to full information (real), and the optimized
    inputs beside them."""
    by_name = {r.info.name: r for r in table}
    conds = [by_name[c] for c in SPECTRUM if c in by_name]
    optimized = [r for r in table if r.info.group == "optimized" and r.info.suffix != "train"]
    if len(conds) < 2:
        return None
    fig = _figure(max(6, 0.7 * (len(conds) + len(optimized)) + 1.5), 4)
    ax = fig.add_subplot()
    xs = list(range(len(conds)))
    ax.errorbar(xs, [r.accuracy for r in conds], yerr=_errors(conds), fmt="-o", color=GROUP_COLOURS["condition"],
                capsize=3, label="image conditions")
    ox = [len(conds) + 0.5 + i for i in range(len(optimized))]
    if optimized:
        ax.errorbar(ox, [r.accuracy for r in optimized], yerr=_errors(optimized), fmt="s",
                    color=GROUP_COLOURS["optimized"], capsize=3, label="optimized inputs")
        ax.axvline(len(conds) - 0.25, color="grey", lw=0.8)
    ax.set_xticks(xs + ox, [r.info.name for r in conds + optimized], rotation=35, ha="right")
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return Plot("spectrum", "From no image information to all of it", _uri(fig),
                "Left of the line: conditions ordered from no image at all (none) and no information about it (blank) "
                "to all of it (real). Right: the optimized inputs (universal inputs on their held-out questions).")


def _running_mean(ys: list[float], window: int = 5) -> list[float]:
    out = []
    for i in range(len(ys)):
        part = [y for y in ys[max(0, i - window + 1): i + 1] if not math.isnan(y)]
        out.append(sum(part) / len(part) if part else math.nan)
    return out


def history_figure(histories: dict[str, list[dict]]):
    """One row of panels per source (loss, and batch accuracy when recorded), each on its own step axis: a 100-step
    inversion beside a 10-step universal run would otherwise squash the short curve into the left edge."""
    has_acc = any("batch_accuracy" in h for hist in histories.values() for h in hist)
    fig = _figure(10 if has_acc else 6, 0.6 + 2.6 * len(histories))
    grid = fig.subplots(len(histories), 2 if has_acc else 1, squeeze=False)  # [sources, panels]
    for k, ((source, hist), axes) in enumerate(zip(histories.items(), grid)):
        steps = [h.get("step", i + 1) for i, h in enumerate(hist)]
        series = [[h.get("loss", math.nan) for h in hist]]
        if has_acc:
            series.append([h.get("batch_accuracy", math.nan) for h in hist])
        for ax, ys in zip(axes, series):
            # each step sees another mini-batch, so the raw curve is noisy: draw it faint under a running mean
            ax.plot(steps, ys, color=f"C{k}", alpha=0.3, lw=1)
            ax.plot(steps, _running_mean(ys), color=f"C{k}", lw=2, label=source)
            ax.grid(alpha=0.3)
        axes[0].set(xlabel="step", ylabel="training loss", title=f"{source}: loss ({len(hist)} steps)")
        if has_acc:
            axes[1].set(xlabel="step", ylabel="accuracy on the step's batch", title=f"{source}: batch accuracy",
                        ylim=(-0.02, 1.02))
    fig.tight_layout()
    return fig


def history_plot(histories: dict[str, list[dict]]) -> Plot | None:
    """Loss (and batch accuracy, when recorded) per step of each universal optimization."""
    if not histories:
        return None
    fig = history_figure(histories)
    return Plot("history", "Universal optimization: loss curves", _uri(fig),
                "From artifacts/<source>.history.json: one point per optimizer step, each on a new mini-batch of "
                "training questions (faint), and their running mean over 5 steps (bold); one row per source, each on its "
                "own step and loss scale.")


def per_question_plot(rows: list[dict], sources: list[SourceInfo]) -> Plot | None:
    """Steps used and final loss of per-question optimizations (their rows carry `steps` and `loss`)."""
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        if "steps" in r and "loss" in r:
            by_source.setdefault(r["source"], []).append(r)
    order = [s.name for s in sources if s.name in by_source]
    if not order:
        return None
    fig = _figure(10, 0.9 + 0.35 * len(order))
    ax_steps, ax_loss = fig.subplots(1, 2, sharey=True)
    data_steps = [[r["steps"] for r in by_source[s]] for s in order][::-1]
    data_loss = [[max(float(r["loss"]), 1e-6) for r in by_source[s]] for s in order][::-1]
    ax_steps.boxplot(data_steps, orientation="horizontal", tick_labels=order[::-1])
    ax_loss.boxplot(data_loss, orientation="horizontal", tick_labels=order[::-1])
    ax_loss.set_xscale("log")
    ax_steps.set(xlabel="optimizer steps until the question stopped", title="steps per question")
    ax_loss.set(xlabel="final loss (log scale)", title="final loss per question")
    for ax in (ax_steps, ax_loss):
        ax.grid(axis="x", alpha=0.3)
    return Plot("per-question", "Per-question optimization: steps and final loss", _uri(fig),
                "Per-question runs record only the end of each optimization (steps used, final loss), not a curve; "
                "a question stops early once its answer margin holds.")


def encoder_plot(table: list[SourceRow]) -> Plot | None:
    """Single-encoder runs beside the all-encoder run of the same input and scope."""
    singles = [r for r in table if r.info.group == "single-encoder" and not r.info.suffix]
    if not singles:
        return None
    by_name = {r.info.name: r for r in table}
    bases = list(dict.fromkeys(f"{r.info.input}-{r.info.scope}" for r in singles))
    bars = []
    for base in bases:
        if base in by_name:
            bars.append((by_name[base], "all encoders"))
        bars += [(r, " + ".join(r.info.encoders)) for r in singles if f"{r.info.input}-{r.info.scope}" == base]
    fig = _figure(max(5, 1.1 * len(bars) + 2), 3.8)
    ax = fig.add_subplot()
    rows = [b[0] for b in bars]
    colours = [GROUP_COLOURS["optimized"] if r.info.group == "optimized" else GROUP_COLOURS["single-encoder"]
               for r in rows]
    ax.bar(range(len(rows)), [r.accuracy for r in rows], yerr=_errors(rows), color=colours, capsize=3)
    for base, style in (("real", "-"), ("blank", "--")):
        if base in by_name:
            acc = by_name[base].accuracy
            ax.axhline(acc, color="grey", ls=style, lw=1, label=f"{base} {acc:.2f}")
    several = len(bases) > 1
    ax.set_xticks(range(len(rows)), [f"{label}\n{r.info.input}-{r.info.scope}" if several else label
                                     for r, label in bars], fontsize=8)
    if not several:
        ax.set_xlabel(f"{bases[0]}: through which encoders")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return Plot("encoders", "Through one encoder at a time", _uri(fig),
                "Inputs optimized through one encoder only (for features, the other encoders are held at their "
                "blank-image features), beside the input optimized through all encoders; lines: the real and blank "
                "conditions.")


def transfer_plot(transfer: dict | None) -> Plot | None:
    """The transfer matrix (`transfer.json`): rows trained on, columns evaluated on; colour = gain over blank on the
    same questions, text = accuracy, gain and its McNemar p."""
    if not transfer or not transfer.get("cells"):
        return None
    import numpy as np

    rows, cols, cells = transfer["rows"], transfer["columns"], transfer["cells"]
    gain = np.array([[c["gain"] if c.get("gain") is not None else np.nan for c in row] for row in cells], float)
    fig = _figure(1.6 + 1.3 * len(cols), 1.0 + 0.8 * len(rows))
    ax = fig.add_subplot()
    lim = max(0.05, float(np.nanmax(np.abs(gain)))) if np.isfinite(gain).any() else 0.05
    im = ax.imshow(gain, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            p = (c.get("mcnemar") or {}).get("p")
            text = f"{c['accuracy']:.2f}\n{c['gain']:+.2f}" + (f"\np={p:.2g}" if p is not None else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    fig.colorbar(im, ax=ax, label="gain over blank")
    return Plot("transfer", "Transfer across benchmarks", _uri(fig),
                "Universal inputs trained on one benchmark (row) evaluated on another (column). Each cell: accuracy, "
                "gain over the blank image on the same questions, and the exact McNemar p of that gain.")


SHUFFLE_BARS = (("pair", "pair (real)", "#de8f07"), ("image_only", "image alone (image-only)", "#0173b2"),
                ("text_only", "text alone (wrong)", "#019e73"), ("neither", "neither (both)", "#d55e00"))


def shuffle_plot(blocks: dict[str, dict], title: str = "Where the score comes from",
                 key: str = "shuffle") -> Plot | None:
    """One group of bars per entry of `blocks` (label -> a `blind.shuffle_decomposition` block: overall, a
    question type, a benchmark): the share answered right with the pair, the image alone, the text alone and
    neither, each with its 95% interval, beside chance (a black tick)."""
    blocks = {k: b for k, b in blocks.items() if any(m in b for m, _, _ in SHUFFLE_BARS)}
    if not blocks:
        return None
    fig = _figure(8, 0.9 + 0.75 * len(blocks))
    ax = fig.add_subplot()
    height = 0.8 / len(SHUFFLE_BARS)
    for g, (label, block) in enumerate(reversed(list(blocks.items()))):
        for k, (m, name, colour) in enumerate(SHUFFLE_BARS):
            if m not in block:
                continue
            v, (lo, hi) = block[m]["value"], block[m]["ci95"]
            y = g + 0.4 - (k + 0.5) * height
            ax.barh(y, v, height=height * 0.9, color=colour, label=name if g == 0 else None)
            ax.errorbar(v, y, xerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="none", color="black", lw=0.8, capsize=2)
        if "chance" in block:
            ax.plot([block["chance"]["value"]] * 2, [g - 0.45, g + 0.45], color="black", lw=1.5,
                    label="chance" if g == 0 else None)
    ax.set_yticks(range(len(blocks)), list(reversed(list(blocks))))
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("share answered right (95% Wilson interval)")
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: [n for _, n, _ in SHUFFLE_BARS].index(labels[i])
                   if labels[i] in [n for _, n, _ in SHUFFLE_BARS] else len(SHUFFLE_BARS))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8)
    return Plot(key, title, _uri(fig),
                "The question's own image and words (pair), its image with another question's words (image alone), "
                "its words with another question's image (text alone), and another's words and image (neither); the "
                "question's own options and gold in every case. The black tick: chance (1 / options).")
