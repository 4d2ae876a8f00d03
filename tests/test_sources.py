import pytest

from mirage import sources
from mirage.sources import parse_source


@pytest.mark.parametrize("name, group, suffix, encoders", [
    ("blur", "condition", None, ()), ("pixels-universal-png", "optimized", "png", ()),
    ("features-universal-train", "optimized", "train", ()),
    ("features-question-clip", "single-encoder", None, ("clip",)),
    ("features-question-clip+dino-png", "single-encoder", "png", ("clip", "dino")), ("saliency", "other", None, ())])
def test_parse_source(name, group, suffix, encoders):
    info = parse_source(name)
    assert (info.group, info.suffix, info.encoders) == (group, suffix, encoders)


def test_built_names_parse_back():
    name = sources.optimized("pixels", "universal", ["clip", "dino"])
    assert name == "pixels-universal-clip+dino"
    info = parse_source(sources.png(name))
    assert (info.input, info.scope, info.encoders, info.suffix, info.base) == \
        ("pixels", "universal", ("clip", "dino"), "png", name)
    assert parse_source(sources.train(sources.optimized("features", "universal"))).suffix == "train"
    assert sources.is_universal("tokens-universal") and not sources.is_universal("features-question")
    assert parse_source("file:x.png").group == "condition"
    assert sources.inversion(["clip"], "blank") == "inversion_blank-clip"
    assert sources.patch("targeted", "B") == "patch-targeted-B" and sources.saliency("ig", "dino") == "saliency-ig-dino"
