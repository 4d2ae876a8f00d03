import os
import subprocess
import sys
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


def test_a_torchvision_that_cannot_load_beside_this_torch_is_hidden(tmp_path):
    """The package index's Linux torchvision is a CUDA build; beside the CPU torch its import fails
    (`operator torchvision::nms does not exist`) and with it every transformers image processor that picks the
    torchvision backend. `import mirage` hides it: imports of it fail as absent, transformers does not see it, and
    runs record it as hidden. Here a stand-in with the real wheel's version.py and metadata (0.28.0+cu130, torch
    pinned to this torch's release), whose import raises as the real one does."""
    site = tmp_path / "site"
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    (site / "torchvision" / "version.py").write_text("__version__ = '0.28.0+cu130'\ngit_version = 'x'\n")
    (site / "torchvision-0.28.0.dist-info").mkdir()
    release = torch.__version__.split("+")[0]
    (site / "torchvision-0.28.0.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\nRequires-Dist: torch (=={release})\n")
    code = ("import importlib.util, mirage, mirage.environment as e\n"
            "from transformers.utils import is_torchvision_available\n"
            "try:\n    import torchvision\nexcept ImportError as err:\n    print('ImportError')\n"
            "print(importlib.util.find_spec('torchvision'), is_torchvision_available())\n"
            "print(e.HIDDEN_TORCHVISION)\nprint(e.library_versions()['torchvision'])\n")
    env = {**os.environ, "PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if torch.version.cuda is None:  # this torch is a CPU build: the CUDA wheel is hidden
        assert lines == ["ImportError", "None False",
                         "torchvision 0.28.0+cu130 is a CUDA build and this torch is a CPU build",
                         "0.28.0 (hidden: unusable beside this torch)"]
    # a torchvision built for another torch release is hidden whatever the build
    (site / "torchvision" / "version.py").write_text("__version__ = '0.28.0'\n")
    (site / "torchvision-0.28.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\nRequires-Dist: torch (==1.0.0)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:3] == ["ImportError", "None False",
                                           f"torchvision was built for torch 1.0.0, this torch is {torch.__version__}"]
