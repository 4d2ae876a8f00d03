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
    assert sources.inversion(["clip"], "blank") == "inversion-question-clip-from-blank"
    assert sources.patch("targeted", "B") == "patch-targeted-B" and sources.saliency("ig", "dino") == "saliency-ig-dino"


def test_every_optimized_name_follows_input_scope_grammar():
    # `features_blank-question` and `inversion_blank` broke `<input>-<scope>`: the start is a `-from-<start>` part.
    for name, start, encoders in ((sources.optimized("features", "question", start="blank"), "blank", ()),
                                  (sources.inversion(), None, ()), (sources.inversion(["clip"], "blank"), "blank", ("clip",))):
        info = sources.parse_source(name)
        assert (info.scope, info.start, info.encoders) == ("question", start, encoders), name
        assert sources.parse_source(sources.png(name)).suffix == "png"
