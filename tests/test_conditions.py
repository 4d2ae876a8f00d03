import io

import numpy as np
import pytest
from PIL import Image

from mirage.benchmarks.question import Benchmark, ImageLoadError, Question
from mirage.conditions import (
    CONDITIONS,
    ConditionContext,
    get_condition,
    parse_conditions,
    seed_for,
)
from mirage.registry import UnknownNameError

ODD_SIZE = (50, 37)  # width, height: neither divisible by 8


def png(w: int, h: int, seed: int) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def question(qid: str, *images: bytes) -> Question:
    return Question(id=qid, text=f"what is in {qid}?", choices=("yes", "no"), answer=0, images=images)


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    qs = [question(f"q{i}", png(224, 224, i)) for i in range(6)]
    qs.append(question("odd", png(*ODD_SIZE, 99)))
    return Benchmark("tiny", "test", qs)


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and arr(a).tobytes() == arr(b).tobytes()


def test_every_condition_is_rgb_right_size_and_deterministic(bench):
    assert set(CONDITIONS.names()) == {"real", "blank", "noise", "wrong", "blur", "shuffle", "none", "image-only",
                                       "both"}
    for name in CONDITIONS.names():
        cond = get_condition(name)
        if cond.image_free:  # `none` shows no image (test_none_gives_no_image)
            continue
        for q in (bench[0], bench[-1]):
            ctx = ConditionContext(bench, seed=3)
            im = cond.image(q, ctx)
            assert im.mode == "RGB" and arr(im).dtype == np.uint8, name
            assert im.size == q.image(0).size, name
            assert same(im, cond.image(q, ConditionContext(bench, seed=3))), name


def test_question_without_image_gets_default_size():
    bench = Benchmark("t", "test", [question("none"), question("a", png(30, 20, 1))])
    ctx = ConditionContext(bench)
    for name in ("blank", "noise", "wrong"):
        assert get_condition(name).image(bench[0], ctx).size == (224, 224), name


@pytest.mark.parametrize("name", ["noise", "shuffle"])
def test_random_conditions_vary_with_seed_and_question(bench, name):
    cond = get_condition(name)
    a = cond.image(bench[0], ConditionContext(bench, seed=0))
    assert not same(a, cond.image(bench[0], ConditionContext(bench, seed=1)))
    if name == "noise":  # shuffles of different images differ trivially; noise must not repeat per question
        assert not same(a, cond.image(bench[1], ConditionContext(bench, seed=0)))


def test_noise_statistics(bench):
    a = arr(get_condition("noise").image(bench[0], ConditionContext(bench))) / 255.0
    assert abs(a.mean() - 0.5) < 0.01
    assert 0.2 < a.std() < 0.25  # 0.25 before clipping to [0, 1]


def test_blank_is_grey(bench):
    a = arr(get_condition("blank").image(bench[-1], ConditionContext(bench)))
    assert (a == 128).all()


def test_blur_keeps_mean_and_smooths(bench):
    cond = get_condition("blur")
    # A non-uniform image (a bright corner), where an edge-extending blur would shift the mean.
    a = np.zeros((120, 90, 3), dtype=np.uint8)
    a[:30, :20] = (255, 200, 10)
    a += np.random.default_rng(0).integers(0, 40, size=a.shape, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    cases = [*bench, question("corner", buf.getvalue())]
    for q in cases:
        src = arr(q.image(0)).astype(float)
        out = arr(cond.image(q, ConditionContext(bench))).astype(float)
        assert np.abs(out.mean(axis=(0, 1)) - src.mean(axis=(0, 1))).max() <= 1.0, q.id
        assert out.std(axis=(0, 1)).max() < 0.1 * src.std(axis=(0, 1)).min(), q.id


def test_blur_is_the_periodic_gaussian_of_a_full_fft(bench):
    """The band-limited separable blur gives the uint8 pixels of the full 2-D float64 FFT filter (numpy's, as an
    independent reference) it replaced, on sizes whose kept band is a few bins and on odd, tall and 1-px sizes."""
    from mirage.conditions import BLUR_SIGMA

    rng = np.random.default_rng(3)
    for h, w in [(37, 50), (1, 1), (301, 7), (700, 1203)]:
        a = np.clip(rng.normal(0, 30, size=(h, w, 3)) + np.linspace(0, 220, w)[None, :, None]
                    + 30 * np.sin(np.arange(h) / 40.0)[:, None, None], 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out = arr(get_condition("blur").image(question("b", buf.getvalue()), ConditionContext(bench)))
        f2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2
        t = np.exp(-2 * np.pi ** 2 * BLUR_SIGMA ** 2 * f2)
        ref = np.stack([np.fft.irfft2(np.fft.rfft2(a[..., c].astype(float)) * t, s=(h, w)) for c in range(3)], -1)
        tie = np.abs(ref - np.floor(ref) - 0.5) < 1e-9  # a value this close to .5 may round either way
        assert out.shape == a.shape and np.array_equal(out[~tie], np.clip(np.rint(ref), 0, 255)[~tie]), (h, w)


def test_blur_holds_no_float_copy_of_a_large_image(bench, monkeypatch):
    """A huge photo is blurred a block of rows at a time: numpy's peak stays a few bytes a pixel (the 2-D FFT it
    replaced held the image and its result in float64, over 48 bytes a pixel, 10.8 GB on a 10000x10000 JPEG)."""
    import tracemalloc

    import mirage.conditions as conditions

    monkeypatch.setattr(conditions, "BLUR_BLOCK", 1 << 15, raising=False)  # blocks of 32 rows of this 1024-px-wide image
    q = question("big", png(1024, 768, 5))
    tracemalloc.start()
    try:
        get_condition("blur").image(q, ConditionContext(bench))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 768, peak  # the uint8 image, its bytes and the result: about 9 bytes a pixel


def test_shuffle_keeps_pixels_and_moves_patches(bench):
    cond = get_condition("shuffle")
    for q in (bench[0], bench[-1]):
        src = arr(q.image(0))
        out = arr(cond.image(q, ConditionContext(bench)))
        assert np.array_equal(np.sort(src.reshape(-1, 3), axis=0), np.sort(out.reshape(-1, 3), axis=0)), q.id
        assert not np.array_equal(src, out), q.id
        h, w = src.shape[:2]
        # Remainder strips (right and bottom) stay where they were.
        assert np.array_equal(src[h // 8 * 8 :], out[h // 8 * 8 :]), q.id
        assert np.array_equal(src[:, w // 8 * 8 :], out[:, w // 8 * 8 :]), q.id
        # Every patch of the output is some patch of the input.
        ph, pw = h // 8, w // 8
        patches = {src[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw].tobytes() for r in range(8) for c in range(8)}
        for r in range(8):
            for c in range(8):
                assert out[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw].tobytes() in patches, q.id


def test_wrong_is_always_another_questions_image(bench):
    cond = get_condition("wrong")
    for seed in range(5):
        ctx = ConditionContext(bench, seed=seed)
        sources = []
        for q in bench:
            im = cond.image(q, ctx)
            assert not same(im, q.image(0)), (q.id, seed)
            others = [o for o in bench if o.id != q.id]
            matches = [o.id for o in others if same(im, o.image(0).resize(im.size, Image.BICUBIC))]
            assert len(matches) == 1, (q.id, seed)
            sources.append(matches[0])
        assert len(set(sources)) == len(bench)  # a permutation: every image is shown exactly once


def test_wrong_skips_questions_sharing_the_same_image():
    shared = png(32, 32, 7)
    bench = Benchmark("t", "test", [question("a", shared), question("b", shared), question("c", png(32, 32, 8))])
    for seed in range(10):
        ctx = ConditionContext(bench, seed=seed)
        for q in bench:
            assert not same(get_condition("wrong").image(q, ctx), q.image(0)), (q.id, seed)


def test_wrong_refuses_single_question_benchmark():
    bench = Benchmark("t", "test", [question("a", png(8, 8, 0))])
    with pytest.raises(ValueError, match="at least 2 questions"):
        get_condition("wrong").image(bench[0], ConditionContext(bench))


def test_file_condition(bench, tmp_path, monkeypatch):
    path = tmp_path / "fixed.png"
    path.write_bytes(png(40, 30, 5))
    expected = Image.open(path).convert("RGB")
    monkeypatch.chdir(tmp_path)  # PATH is relative to the cwd
    [cond] = parse_conditions("file:fixed.png")
    assert cond.name == "file:fixed.png"
    for q in bench:
        assert same(cond.image(q, ConditionContext(bench)), expected)


def test_file_condition_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError, match="missing.png") as e:
        parse_conditions(["real", f"file:{missing}"])
    assert str(missing) in str(e.value)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError) as e:
        get_condition(f"file:{text}")
    assert str(text) in str(e.value)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError) as e:
        get_condition("bluur")
    assert "did you mean 'blur'" in str(e.value)
    with pytest.raises(UnknownNameError):
        parse_conditions("real,bluur")


@pytest.mark.parametrize(
    "spec, problem",
    [("real,,blank", "empty"), ("real,blank,real", "duplicate"), ("", "no conditions"), ([], "no conditions")],
)
def test_parse_conditions_refuses_bad_lists(spec, problem):
    with pytest.raises(ValueError, match=problem):
        parse_conditions(spec)


def test_parse_conditions_keeps_order():
    assert [c.name for c in parse_conditions(" real, blank,noise ")] == ["real", "blank", "noise"]
    assert [c.name for c in parse_conditions(["shuffle", "wrong"])] == ["shuffle", "wrong"]


def test_seed_for_is_stable():
    assert seed_for("noise", 0, "q1") == 12705261415255409768  # sha256-based, so fixed across processes
    assert 0 <= seed_for("x") < 2**64
    assert seed_for("noise", 0, "q1") != seed_for("noise", 1, "q1")



def test_none_gives_no_image(bench, tiny_model):
    """`none` is an ordinary condition whose visual is no image at all, for a question with or without one."""
    from mirage.models.vlm import NONE

    (cond,) = parse_conditions("none")
    assert cond.image_free and not cond.needs_image and not get_condition("blank").image_free
    visual = cond.visual(tiny_model, bench.questions[:2], ConditionContext(bench))
    assert visual.stage == NONE and visual.value is None and visual.select([0]) is visual
    with pytest.raises(ValueError, match="condition 'none' shows no image"):
        cond.image(bench[0], ConditionContext(bench))
    with pytest.raises(ValueError, match="no image tokens"):
        tiny_model.to_tokens(visual)


def test_wrong_on_a_limited_run_is_a_prefix_of_the_full_run(bench):
    # The derangement covers the whole split, so `--limit N` shows each question what the full run shows it.
    cond = get_condition("wrong")
    for seed in range(3):
        full = ConditionContext(bench, seed=seed)
        for n in (2, 4):
            limited = ConditionContext(bench.subset(n), seed=seed)
            for q in bench.subset(n):
                assert same(cond.image(q, limited), cond.image(q, full)), (n, q.id, seed)
    assert bench.subset(3).subset(2).split_questions == bench.questions  # kept through any number of limits


def _image_source(im: Image.Image, bench: Benchmark) -> str:
    [match] = [o.id for o in bench if same(im, o.image(0).resize(im.size, Image.BICUBIC))]
    return match


def test_shuffles_take_another_questions_words_and_image(bench):
    """image-only: own image, another's words; both: another's words and a third question's image; never a fixed
    point, options and gold always the question's own."""
    image_only, both = get_condition("image-only"), get_condition("both")
    texts = {q.id: f"what is shown in picture {q.id} ?" for q in bench}
    bench = Benchmark("t", "test", [Question(q.id, texts[q.id], ("yes", "no", "maybe"), i % 3, q.images, meta={
        "hint": f"hint of {q.id}"}) for i, q in enumerate(bench)])
    for seed in range(4):
        ctx = ConditionContext(bench, seed=seed)
        words_from = []
        for q in bench:
            a, b = image_only.ask(q, ctx), both.ask(q, ctx)
            assert a.id == q.id and a.choices == q.choices and a.answer == q.answer and a.images == q.images
            src = a.meta["asked"]["words_from"]
            assert src != q.id and a.text == texts[src] and a.meta["hint"] == f"hint of {src}"
            assert b.text == a.text  # one derangement of the words for both conditions
            assert same(image_only.image(a, ctx), q.image(0))
            shown = _image_source(both.image(b, ctx), bench)
            assert shown not in (q.id, src), (seed, q.id)
            words_from.append(src)
        assert sorted(words_from) == sorted(q.id for q in bench)  # a permutation: every question's words once
        # independent of `wrong`'s derangement of the images
        assert words_from != [_image_source(get_condition("wrong").image(q, ctx), bench) for q in bench]


def test_shuffles_on_a_limited_run_are_a_prefix_of_the_full_run(bench):
    for name in ("image-only", "both"):
        cond = get_condition(name)
        for seed in range(3):
            full = ConditionContext(bench, seed=seed)
            limited = ConditionContext(bench.subset(3), seed=seed)
            for q in bench.subset(3):
                assert cond.ask(q, limited) == cond.ask(q, full), (name, q.id)
                assert cond.ask(q, limited).meta == cond.ask(q, full).meta
                assert same(cond.image(cond.ask(q, limited), limited), cond.image(cond.ask(q, full), full))


def test_several_image_questions_take_words_placing_as_many_images():
    """MuirBench asks 2 to 9 images per question, each at an `<image>` marker of its text: `image-only` and `both`
    take another question's words that place as many images as the question holds, so every image has its place."""
    from dataclasses import replace

    from mirage.errors import MirageError

    pngs = [png(8, 8, k) for k in range(3)]
    qs = [Question(f"q{i}", f"Which one {i}?" + " <image>" * n, ("a", "b"), 0, images=tuple(pngs[:n]))
          for i, n in enumerate([2, 3, 2, 3, 2, 3])]
    bench = Benchmark("multi", "test", qs, all_images=True)
    ctx = ConditionContext(bench, seed=0)
    for name in ("image-only", "both"):
        for q in bench:
            asked = get_condition(name).ask(q, ctx)
            assert asked.text.count("<image>") == len(q.images) and asked.meta["asked"]["words_from"] != q.id
    lonely = Benchmark("multi", "test", qs[:2] + [replace(qs[2], text="Which one 2? <image> <image> <image>",
                                                          images=tuple(pngs))], all_images=True)
    with pytest.raises(MirageError, match="no other question of 'multi' has different words placing 2 images"):
        get_condition("image-only").ask(lonely[0], ConditionContext(lonely, seed=0))


def test_image_only_keeps_options_written_in_the_text():
    """MMStar writes its options in the question ("Options: A: ..."): as the paper's code, the other question's
    words up to its "Options:" and the question's own options after it. Repeated words are skipped."""
    img = png(8, 8, 1)
    qs = [Question("a", "What is it?\nOptions: A: cat, B: dog", ("cat", "dog"), 0, (img,)),
          Question("b", "What is it?\nOptions: A: red, B: blue", ("red", "blue"), 1, (img,)),
          Question("c", "Which colour?\nChoices: A: red, B: blue", ("red", "blue"), 1, (img,))]
    bench = Benchmark("t", "test", qs)
    for seed in range(6):
        ctx = ConditionContext(bench, seed=seed)
        asked = {q.id: get_condition("image-only").ask(q, ctx) for q in qs}
        # a and b share their words: each takes c's
        assert asked["a"].text == "Which colour?\nOptions: A: cat, B: dog"
        assert asked["b"].text == "Which colour?\nOptions: A: red, B: blue"
        assert asked["c"].text == "What is it?\nChoices: A: red, B: blue"
