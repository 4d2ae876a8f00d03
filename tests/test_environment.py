from types import SimpleNamespace

import torch
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mirage.environment import image_processor_backend, library_changes, library_versions, model_environment


def test_library_versions_name_the_installed_ones():
    v = library_versions()
    assert v["torch"] == torch.__version__.split("+")[0] or v["torch"] == torch.__version__
    assert v["mirage"] and v["python"].count(".") == 2
    assert library_changes(v, {**v, "torch": "0.1"}) == [f"torch {v['torch']} -> 0.1"]


def test_the_image_processor_backend_is_found_behind_a_processor():
    ip = CLIPImageProcessorPil()
    assert image_processor_backend(SimpleNamespace(image_processor=ip)) == {
        "image_processor": "CLIPImageProcessorPil", "image_processor_backend": "pil"}
    wrapped = SimpleNamespace(processor=SimpleNamespace(image_processor=ip))  # as LLaVA holds it
    assert image_processor_backend(wrapped)["image_processor_backend"] == "pil"
    assert image_processor_backend(SimpleNamespace()) == {}  # the model preprocesses itself (demo, Cambrian)


def test_model_environment_records_how_the_model_ran(tiny_model):
    env = model_environment(tiny_model)
    assert env["device"] == "cpu" and env["dtype"] == "float32" and "transformers" in env
    assert "image_processor" not in env
