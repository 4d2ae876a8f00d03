"""ShapesQA question templates: visual types, text-prior facts, and seeded question sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import COLOURS, GRID, SHAPES, SIZES, Obj, Scene, sample_scene

NUMBERS = ("one", "two", "three", "four")
DIRECTIONS = ("left", "right", "above", "below")
N_CHOICES = 4

# Question type -> sampling weight; `prior` questions are answerable from the text alone (~20%).
TYPE_WEIGHTS = {"colour": 0.16, "shape": 0.16, "count": 0.16, "position": 0.16, "size": 0.16, "prior": 0.20}
TYPES = tuple(TYPE_WEIGHTS)

# (question, answer, pool of choices). Facts a language model can know without looking.
PRIOR_FACTS = [
    *[(f"how many {part} does a {s} have ?", n, NUMBERS) for part in ("sides", "corners")
      for s, n in (("triangle", "three"), ("square", "four"))],
    *[(f"what is {a} {op} {b} ?", NUMBERS[r - 1], NUMBERS)
      for a, op, b, r in (("one", "plus", "one", 2), ("one", "plus", "two", 3), ("two", "plus", "one", 3),
                          ("one", "plus", "three", 4), ("three", "plus", "one", 4), ("two", "plus", "two", 4),
                          ("four", "minus", "three", 1), ("three", "minus", "one", 2), ("four", "minus", "two", 2),
                          ("four", "minus", "one", 3), ("two", "minus", "one", 1))],
    ("which shape is perfectly round ?", "circle", SHAPES),
    ("which shape has three corners ?", "triangle", SHAPES),
    ("which shape has four equal sides ?", "square", SHAPES),
    ("which shape looks like a plus sign ?", "cross", SHAPES),
    ("what colour is a banana ?", "yellow", tuple(COLOURS)),
    ("what colour is a lemon ?", "yellow", tuple(COLOURS)),
    ("what colour is grass ?", "green", tuple(COLOURS)),
    ("what colour is the sky on a clear day ?", "blue", tuple(COLOURS)),
    ("what colour is a ripe tomato ?", "red", tuple(COLOURS)),
    ("what colour is a carrot ?", "orange", tuple(COLOURS)),
    ("what colour is a grape ?", "purple", tuple(COLOURS)),
    ("what colour do you get by mixing red and blue ?", "purple", tuple(COLOURS)),
    ("what colour do you get by mixing blue and yellow ?", "green", tuple(COLOURS)),
    ("what colour do you get by mixing red and yellow ?", "orange", tuple(COLOURS)),
    ("which size is the smallest ?", "tiny", tuple(SIZES)),
    ("which size is the biggest ?", "large", tuple(SIZES)),
    ("which word is the opposite of left ?", "right", DIRECTIONS),
    ("which word is the opposite of right ?", "left", DIRECTIONS),
    ("which word is the opposite of above ?", "below", DIRECTIONS),
    ("which word is the opposite of below ?", "above", DIRECTIONS),
]


@dataclass
class Item:
    """A sampled question with its scene; `target` indexes the objects the answer is about."""

    scene: Scene
    type: str
    text: str
    choices: tuple[str, ...]
    answer: int
    target: list[int]

    @property
    def answer_word(self) -> str:
        return self.choices[self.answer]


def _choices(rng: np.random.Generator, correct: str, pool) -> tuple[tuple[str, ...], int]:
    """Four choices with the correct one at a uniformly drawn letter, distractors from `pool`."""
    others = [p for p in pool if p != correct]
    picked = [others[i] for i in rng.permutation(len(others))[: N_CHOICES - 1]]
    answer = int(rng.integers(N_CHOICES))
    picked.insert(answer, correct)
    return tuple(picked), answer


def referring_phrase(rng: np.random.Generator, o: Obj, avoid: str) -> str:
    """A unique referring phrase for `o` that does not give away the asked attribute `avoid`."""
    options = {"colour": [o.shape, f"{o.size} {o.shape}"], "shape": [f"{o.colour} object", f"{o.colour} one"],
               "size": [f"{o.colour} {o.shape}", o.shape, f"{o.colour} object"],
               "position": [f"{o.colour} {o.shape}", o.shape, f"{o.colour} object"]}[avoid]
    return options[rng.integers(len(options))]


def _position_scene(rng: np.random.Generator) -> tuple[Scene, str]:
    """A scene whose first two objects share a row or a column, and the direction of object 0 from object 1."""
    n = int(rng.integers(2, 5))
    r0, c0 = (int(v) for v in rng.integers(GRID, size=2))
    if rng.integers(2):
        c1 = int(rng.choice([c for c in range(GRID) if c != c0]))
        cells, direction = [(r0, c0), (r0, c1)], "left" if c0 < c1 else "right"
    else:
        r1 = int(rng.choice([r for r in range(GRID) if r != r0]))
        cells, direction = [(r0, c0), (r1, c0)], "above" if r0 < r1 else "below"
    return sample_scene(rng, n, cells), direction


def sample_item(rng: np.random.Generator, qtype: str | None = None) -> Item:
    """Draw one question (type by TYPE_WEIGHTS unless given) and its scene from `rng`."""
    if qtype is None:
        qtype = TYPES[rng.choice(len(TYPES), p=list(TYPE_WEIGHTS.values()))]
    if qtype == "position":
        scene, direction = _position_scene(rng)
        a, b = scene.objects[0], scene.objects[1]
        text = f"where is the {referring_phrase(rng, a, 'position')} relative to the {referring_phrase(rng, b, 'position')} ?"
        choices, answer = _choices(rng, direction, DIRECTIONS)
        return Item(scene, qtype, text, choices, answer, [0, 1])
    scene = sample_scene(rng, int(rng.integers(1, 5)))
    k = int(rng.integers(len(scene.objects)))
    o = scene.objects[k]
    if qtype == "colour":
        text, correct, pool = f"what colour is the {referring_phrase(rng, o, 'colour')} ?", o.colour, tuple(COLOURS)
    elif qtype == "shape":
        text, correct, pool = f"what shape is the {referring_phrase(rng, o, 'shape')} ?", o.shape, SHAPES
    elif qtype == "size":
        text, correct, pool = f"what size is the {referring_phrase(rng, o, 'size')} ?", o.size, tuple(SIZES)
    elif qtype == "count":
        phr = ("how many objects are there ?", "how many shapes are in the picture ?")[rng.integers(2)]
        text, correct, pool = phr, NUMBERS[len(scene.objects) - 1], NUMBERS
        k = -1
    elif qtype == "prior":
        text, correct, pool = PRIOR_FACTS[rng.integers(len(PRIOR_FACTS))]
        k = -2
    else:
        raise ValueError(f"unknown ShapesQA question type {qtype!r} (allowed: {', '.join(TYPES)})")
    choices, answer = _choices(rng, correct, pool)
    target = list(range(len(scene.objects))) if k == -1 else [] if k == -2 else [k]
    return Item(scene, qtype, text, choices, answer, target)


def vocabulary() -> list[str]:
    """Every word ShapesQA questions, choices and prompts use (for the demo model's word-level tokenizer)."""
    words: set[str] = set()
    texts = [q for q, _, _ in PRIOR_FACTS] + [
        "what colour is the ?", "what shape is the object one ?", "what size is the ?",
        "how many objects are there ?", "how many shapes are in the picture ?",
        "where is the relative to the ?", "answer with the letter .",
    ]
    for t in texts:
        words.update(t.split())
    words.update(SHAPES, COLOURS, SIZES, NUMBERS, DIRECTIONS)
    return sorted(words)
