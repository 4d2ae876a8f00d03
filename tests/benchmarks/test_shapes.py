import collections

import numpy as np
import pytest
import torch

from mirage.benchmarks import load_benchmark
from mirage.benchmarks.shapes import generate_questions
from mirage.benchmarks.shapes.dataset import split_path
from mirage.benchmarks.shapes.scene import Obj, object_masks
from mirage.registry import UnknownNameError


def test_same_seed_same_bytes_and_prefix_stable():
    a = generate_questions("val", seed=3, n=30)
    b = generate_questions("val", seed=3, n=10)
    assert [q.images[0] for q in a[:10]] == [q.images[0] for q in b]
    assert [(q.text, q.choices, q.answer) for q in a[:10]] == [(q.text, q.choices, q.answer) for q in b]
    c = generate_questions("val", seed=4, n=10)
    assert [q.images[0] for q in c] != [q.images[0] for q in b]


def test_cached_split_round_trip():
    bench = load_benchmark("shapes", split="test")
    assert len(bench) == 1000 and split_path("test", 0).exists()
    again = load_benchmark("shapes", split="test")
    assert [(q.id, q.text, q.choices, q.answer, q.images, q.type, q.meta) for q in bench] == \
        [(q.id, q.text, q.choices, q.answer, q.images, q.type, q.meta) for q in again]
    fresh = generate_questions("test", 0, 5)
    assert [q.images[0] for q in fresh] == [q.images[0] for q in bench.questions[:5]]


def test_question_mix_letters_and_types():
    qs = load_benchmark("shapes", split="test").questions
    letters = collections.Counter(q.answer for q in qs)
    assert all(200 <= letters[i] <= 300 for i in range(4)), letters  # uniform letters
    types = collections.Counter(q.type for q in qs)
    assert set(types) == {"colour", "shape", "count", "position", "size", "prior"}
    assert 0.15 <= types["prior"] / len(qs) <= 0.25
    assert all(len(q.choices) == 4 and len(set(q.choices)) == 4 for q in qs)


def test_metadata_boxes_cover_target_objects_and_answers_match_scene():
    for q in load_benchmark("shapes", split="test").questions[:200]:
        img = np.asarray(q.image())
        objs = [Obj.from_meta(o) for o in q.meta["objects"]]
        for k, box in zip(q.meta["target"], q.meta["boxes"]):
            o = objs[k]
            t = lambda v, **kw: torch.tensor([v], **kw)
            mask = object_masks(t([list(o.center)]), t([float(o.radius)]),
                                t([["circle", "square", "triangle", "cross"].index(o.shape)]), t([True]), 224)[0, 0]
            ys, xs = np.nonzero(mask.numpy())
            assert box[0] <= xs.min() and xs.max() < box[2] and box[1] <= ys.min() and ys.max() < box[3]
            assert (np.abs(img[ys, xs].astype(int) - np.array(o.rgb)).max()) == 0  # the object is drawn there
        answer = q.choices[q.answer]
        if q.type == "count":
            assert answer == ["one", "two", "three", "four"][len(objs) - 1]
        elif q.type in ("colour", "shape", "size"):
            assert answer == getattr(objs[q.meta["target"][0]], q.type)
        elif q.type == "position":
            (ra, ca), (rb, cb) = objs[0].cell, objs[1].cell
            want = {(0, -1): "left", (0, 1): "right", (-1, 0): "above", (1, 0): "below"}[
                (int(np.sign(ra - rb)), int(np.sign(ca - cb)))]
            assert answer == want


def test_bad_split_and_benchmark_names():
    with pytest.raises(ValueError, match="did you mean 'test'"):
        load_benchmark("shapes", split="tset")
    with pytest.raises(UnknownNameError, match="did you mean 'shapes'"):
        load_benchmark("shape")
