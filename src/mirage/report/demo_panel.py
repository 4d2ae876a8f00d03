"""The demo panel: random noise, the optimized universal noise and a real image, side by side, each with the
model's accuracy on the same held-out questions, and the question "which does the model do best with?" answered."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from ..stats import accuracy_ci, mcnemar_exact
from .images import noise_picture, png_uri
from .questions import real_image
from .rundata import RunData
from ..sources import parse_source


@dataclass
class PanelImage:
    """One picture of the panel and the accuracy of its source on the panel's questions."""

    label: str
    source: str
    uri: str | None  # None: no picture available (the caption says why)
    caption: str
    n: int = 0
    accuracy: float = float("nan")
    ci95: tuple[float, float] = (float("nan"), float("nan"))
    correct: dict[str, bool] = field(default_factory=dict, repr=False)


@dataclass
class DemoPanel:
    """Three pictures and the sentences that compare them."""

    source: str
    n_questions: int
    images: list[PanelImage]
    verdict: list[str]

    def is_best(self, image: PanelImage) -> bool:
        """Whether `image` has the panel's highest accuracy (ties included)."""
        scored = [im.accuracy for im in self.images if im.n]
        return bool(image.n) and image.accuracy == max(scored)


def _score(item: PanelImage, rows: dict[str, dict], ids: list[str]) -> None:
    shared = [q for q in ids if q in rows]  # sorted ids, as stats.summarize orders them
    item.correct = {q: bool(rows[q]["correct"]) for q in shared}
    acc, lo, hi = accuracy_ci(list(item.correct.values()))
    item.n, item.accuracy, item.ci95 = len(shared), acc, (lo, hi)


def _compare(a: PanelImage, b: PanelImage) -> str | None:
    shared = sorted(a.correct.keys() & b.correct.keys())
    if not shared:
        return None
    t = mcnemar_exact([a.correct[q] for q in shared], [b.correct[q] for q in shared])
    diff = (sum(a.correct[q] for q in shared) - sum(b.correct[q] for q in shared)) / len(shared)
    test = (f"exact McNemar p = {t['p']:.2g}; {t['a_only']} right only with {a.label.lower()}, "
            f"{t['b_only']} only with {b.label.lower()}")
    if diff == 0:
        return f"{a.label} and {b.label.lower()} tie on the {len(shared)} questions both have ({test})."
    verb = "beats" if diff > 0 else "trails"
    return f"{a.label} {verb} {b.label.lower()} by {abs(diff):.3f} on the {len(shared)} questions both have ({test})."


def _verdict(images: list[PanelImage]) -> list[str]:
    scored = [im for im in images if im.n]
    if not scored:
        return ["None of these sources was evaluated on these questions."]
    best = max(im.accuracy for im in scored)
    top = [im for im in scored if im.accuracy == best]
    names = " and ".join(im.label.lower() for im in top)
    missing = [im for im in images if not im.n]
    # a run without one of the three (a generator run has no `real` rows) answers only among what it evaluated
    lead = "Of the pictures this run evaluated, the model does best with" if missing else "The model does best with"
    lines = [f"{lead} {names}: accuracy {best:.3f} "
             f"(95% CI {top[0].ci95[0]:.3f}–{top[0].ci95[1]:.3f}, n = {top[0].n})."
             + (" (a tie)" if len(top) > 1 else "")]
    if missing:
        lines.append("Not evaluated in this run, so not compared: "
                     + ", ".join(f"{im.label.lower()} (no {im.source!r} rows)" for im in missing) + ".")
    noise, optimized, real = images
    for a, b in ((optimized, noise), (real, optimized)):
        if a.n and b.n:
            line = _compare(a, b)
            if line:
                lines.append(line)
    return lines


def demo_panels(data: RunData, questions: dict, question_note: str) -> list[DemoPanel]:
    """One panel per universal pixel input that has its PNG in artifacts/ (none when the run has no such input)."""
    panels = []
    seed = int(data.config.get("seed", 0) or 0)
    for name in data.sources:
        info = parse_source(name)
        if info.input != "pixels" or info.scope != "universal" or info.suffix or name not in data.root_images:
            continue
        rows = data.rows_of(name)
        ids = sorted(rows, key=str)
        with Image.open(data.root_images[name]) as im:
            universal = im.convert("RGB")
        first = questions.get(ids[0]) if ids else None
        real = real_image(first)
        noise_img, exact = noise_picture(first if real is not None else None, universal.size, seed)
        noise_caption = (f"The noise image the model saw for question {ids[0]}; every question gets its own draw."
                         if exact else "A random-noise picture drawn as the noise condition draws it (Gaussian, "
                         "mean 0.5, std 0.25), for display only: each question got its own draw.")
        if real is not None:
            real_uri, real_caption = png_uri(real), f"The real image of question {ids[0]}."
        else:
            why = f"question {ids[0]} has no readable image" if first is not None else question_note
            real_uri, real_caption = None, f"No real image to show: {why}."
        recheck = data.rows_of(f"{name}-png")
        opt_caption = f"artifacts/{data.root_images[name].name}: one image for every question."
        if recheck:
            acc, lo, hi = accuracy_ci([bool(recheck[q]["correct"]) for q in sorted(recheck, key=str)])
            opt_caption += (f" Re-checked from this 8-bit PNG through the model's processor: {acc:.3f} "
                            f"[{lo:.3f}, {hi:.3f}], n = {len(recheck)}.")
        images = [PanelImage("Random noise", "noise", png_uri(noise_img), noise_caption),
                  PanelImage("Optimized universal noise", name, png_uri(universal), opt_caption),
                  PanelImage("The real image", "real", real_uri, real_caption)]
        for item in images:
            _score(item, rows if item.source == name else data.rows_of(item.source), ids)
            if not item.n:
                item.caption += f" The run has no {item.source!r} rows for these questions."
        panels.append(DemoPanel(name, len(ids), images, _verdict(images)))
    return panels
