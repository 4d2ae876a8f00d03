"""ShapesQA: a procedural multiple-choice benchmark of coloured shapes, with text-prior questions."""

from .dataset import SPLITS, generate_questions, load_shapes
from .questions import TYPES, sample_item
from .scene import render, scene_tensors

__all__ = ["SPLITS", "TYPES", "generate_questions", "load_shapes", "render", "sample_item", "scene_tensors"]
