"""Every registered pixel parameterization: valid pixels, reproducible starts, state round-trip, gradients, its lr."""

import pytest
import torch

from mirage.inputs import PARAMS, PIXEL_PARAMS, PixelInput, default_lr
from mirage.inputs.pixel_params import PixelParam


def _start(name: str, seed: int = 0) -> PixelParam:
    img = PIXEL_PARAMS.get(name)(3, 12, 10)
    for slot in range(3):
        img.reset_(slot, torch.Generator().manual_seed(seed * 10 + slot))
    return img


def test_the_param_names_are_the_registry():
    assert sorted(PARAMS) == sorted(PIXEL_PARAMS.names()) == ["fourier", "raw", "sigmoid"]


@pytest.mark.parametrize("name", PIXEL_PARAMS.names())
def test_round_trips_and_has_a_default_lr(name):
    img = _start(name)
    x = img(torch.tensor([2, 0]))  # [2, 3, H, W]
    assert x.shape == (2, 3, 12, 10) and ((x >= 0) & (x <= 1)).all() and x.std() > 0
    assert torch.equal(x, _start(name)(torch.tensor([2, 0])))  # same generator, same start
    assert not torch.equal(x, _start(name, seed=1)(torch.tensor([2, 0])))
    # state round-trip: a fresh module loaded from the state_dict gives the same pixels
    fresh = PIXEL_PARAMS.get(name)(3, 12, 10)
    fresh.load_state_dict(img.state_dict())
    assert torch.equal(fresh(), img())
    # gradients reach the parameters; after a large step and project_ the pixels are still valid
    img(torch.tensor([1])).sum().backward()
    grads = [p.grad for p in img.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        for p in img.parameters():
            p.add_(p.grad.sign() * 10)
    img.project_()
    y = img()
    assert ((y >= 0) & (y <= 1)).all()
    lr = PIXEL_PARAMS.get(name).lr
    assert isinstance(lr, float) and lr > 0 and default_lr("pixels", name) == lr


def test_the_defaults_did_not_move():
    assert {n: default_lr("pixels", n) for n in PARAMS} == {"raw": 0.02, "sigmoid": 0.1, "fourier": 0.005}


@pytest.mark.parametrize("name", ["raw", "sigmoid"])
def test_a_checkpoint_of_the_old_layout_resumes(tiny_model, name):
    """Before the parameterizations were modules, raw/sigmoid kept their pixels at "pixels" in the state_dict."""
    inp = PixelInput(tiny_model, 2, 16, name)
    inp.reset(1, "q1")
    old = {("pixels" if k == "image.pixels" else k): v.clone() for k, v in inp.state_dict().items()}
    assert "pixels" in old
    resumed = PixelInput(tiny_model, 2, 16, name)
    resumed.load_state_dict(old)
    assert torch.equal(resumed.pixels, inp.pixels)
