import pytest
import torch

from mirage.inputs import INPUTS, build_input
from mirage.inputs.generator import GeneratorConfig, GeneratorInput, QuestionGenerator, ddim_step, draw_noise

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = GeneratorConfig(resolution=8, channels=(8, 16), cond_dim=16, steps=3, text_layers=1)


def test_ddim_policy_step_is_diffusers_ddim_step():
    net = QuestionGenerator(TINY, 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)
    for t in net.scheduler.timesteps.tolist():
        x0, noise = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.randn(2, 3, 8, 8, generator=g)
        mine, mean, std = ddim_step(net.scheduler, x0, t, x, 1.0, noise)
        theirs = net.scheduler.step(x0, t, x, eta=1.0, variance_noise=noise).prev_sample
        assert torch.allclose(mine, theirs, atol=1e-5) and float(std) > 0  # every step is a proper Gaussian
        x = mine


def test_generator_is_a_registered_input(tiny_model):
    gen = build_input("generator", tiny_model, 1, None, generator=TINY)
    assert "generator" in INPUTS and isinstance(gen, GeneratorInput)
    noise = draw_noise(2, TINY.steps, gen.noise_shape, torch.Generator().manual_seed(0))
    visual = gen.images(["what colour is the circle ?", "how many objects ?"], noise)
    r = max(s.image_size for s in tiny_model.encoders)
    assert visual.stage == "pixels" and visual.value.shape == (2, 3, r, r)
    assert 0 <= visual.value.min() and visual.value.max() <= 1
    with pytest.raises(ValueError, match="prompts"):
        gen.images(["one prompt"], noise)
