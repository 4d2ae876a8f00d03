"""Tests for mirage.inputs.fourier: shapes, slot indexing and gradients, resets, fitting, 1/f smoothness."""

import pytest
import torch
import torch.nn.functional as F

from mirage.inputs.fourier import FourierImage


@pytest.mark.parametrize("height,width", [(32, 32), (24, 40)])
def test_output_shape_and_range(height, width):
    torch.manual_seed(0)
    img = FourierImage(3, height, width)
    assert img.spectrum.shape == (3, 3, height, width // 2 + 1, 2)
    x = img()  # [3, 3, H, W]
    assert x.shape == (3, 3, height, width)
    assert torch.isfinite(x).all()
    assert (x > 0).all() and (x < 1).all()
    # A small init must still give visible contrast, not a flat grey image.
    assert x.std() > 0.01


def test_slots_select_repeat_and_sum_gradients():
    torch.manual_seed(0)
    img = FourierImage(3, 16, 16)
    full = img().detach()  # [3, 3, H, W]
    out = img(torch.tensor([1, 1, 0]))  # [3, 3, H, W]
    torch.testing.assert_close(out[0], full[1])
    torch.testing.assert_close(out[1], full[1])
    torch.testing.assert_close(out[2], full[0])

    out.sum().backward()
    g = img.spectrum.grad.clone()  # [S, 3, H, W//2+1, 2]
    assert g[0].abs().sum() > 0 and g[1].abs().sum() > 0
    assert (g[2] == 0).all()

    img.spectrum.grad = None
    img(torch.tensor([1])).sum().backward()
    torch.testing.assert_close(g[1], 2 * img.spectrum.grad[1], rtol=1e-4, atol=1e-6)


def test_reset_is_seeded_and_local():
    torch.manual_seed(0)
    img = FourierImage(3, 16, 16)
    before = img.spectrum.detach().clone()

    img.reset_(1, torch.Generator().manual_seed(7))
    first = img.spectrum[1].detach().clone()
    assert not torch.equal(first, before[1])
    torch.testing.assert_close(img.spectrum[0], before[0], rtol=0, atol=0)
    torch.testing.assert_close(img.spectrum[2], before[2], rtol=0, atol=0)
    assert first.std().item() == pytest.approx(img.init_std, rel=0.2)

    img.reset_(1, torch.Generator().manual_seed(7))
    assert torch.equal(img.spectrum[1], first)
    img.reset_(1, torch.Generator().manual_seed(8))
    assert not torch.equal(img.spectrum[1], first)


def test_reset_follows_parameter_dtype():
    img = FourierImage(2, 8, 8).double()
    img.reset_(0, torch.Generator().manual_seed(0))
    assert img.spectrum.dtype == torch.float64
    assert img().dtype == torch.float64


def test_first_decorrelated_channel_is_luminance():
    # Lucid maps t @ M.T, so decorrelated channel 0 drives RGB along M's first column (near grey);
    # the transposed orientation would make it mostly red.
    img = FourierImage(1, 8, 8).double()
    with torch.no_grad():
        img.spectrum.zero_()
        img.spectrum[0, 0, 0, 0, 0] = 1.0  # DC of channel 0 only
        rgb = torch.logit(img())[0, :, 0, 0]  # [3]
    col = torch.tensor([0.26, 0.27, 0.27], dtype=torch.float64)
    torch.testing.assert_close(rgb / rgb.norm(), col / col.norm())


def test_fits_a_smooth_target():
    torch.manual_seed(0)
    img = FourierImage(1, 32, 32)
    coarse = torch.rand(1, 3, 4, 4) * 0.6 + 0.2  # [1, 3, 4, 4] in (0.2, 0.8)
    target = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)  # [1, 3, 32, 32]
    opt = torch.optim.Adam(img.parameters(), lr=0.05)
    start = F.mse_loss(img(), target).item()
    for _ in range(150):
        opt.zero_grad()
        loss = F.mse_loss(img(), target)
        loss.backward()
        opt.step()
    final = F.mse_loss(img(), target).item()
    assert start > 0.015
    assert final < 0.01 and final < start / 10


def _roughness(decay: float) -> torch.Tensor:
    """Per-image mean |horizontal neighbour difference| / std of the pre-sigmoid image."""
    torch.manual_seed(0)
    img = FourierImage(4, 64, 64, decay=decay).double()
    with torch.no_grad():
        z = torch.logit(img())  # [S, 3, H, W]
    diff = (z[..., 1:] - z[..., :-1]).abs().mean(dim=(-2, -1))  # [S, 3]
    return diff / z.std(dim=(-2, -1))  # [S, 3]


def test_low_frequencies_dominate_at_init():
    pink, white = _roughness(1.0), _roughness(0.0)
    # Independent pixels give E|a - b| / std = 2 / sqrt(pi) ~ 1.13; a 1/f spectrum is much smoother.
    assert white.mean() == pytest.approx(2 / torch.pi**0.5, rel=0.1)
    assert pink.max() < 0.8
    assert pink.mean() < 0.7 * white.mean()
