import pytest
import torch

from mirage.inputs.patch import EOT, FIXED, fixed_placement, paste, sample_placements


def test_paste_is_differentiable_and_changes_only_the_warped_region():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 40, 40, generator=g)
    patch = torch.rand(3, 3, 9, 9, generator=g, requires_grad=True)
    where = sample_placements(3, 40, 9, EOT(scale=(0.8, 1.3), max_angle=45), g)
    out = paste(images, patch, where)
    mask = paste(torch.zeros_like(images), torch.ones_like(patch), where)[:, :1]  # the warped mask
    outside = (mask == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside])
    assert (out - images)[~outside].abs().max() > 0.05
    assert 0.5 * 81 * 0.8**2 < mask[0].sum() < 1.5 * 81 * 1.3**2  # about the scaled patch's area
    out.sum().backward()
    assert patch.grad is not None and patch.grad.abs().sum() > 0 and torch.isfinite(patch.grad).all()


@pytest.mark.parametrize("name", FIXED)
def test_fixed_places_copy_the_patch_exactly(name):
    images, patch = torch.rand(1, 3, 30, 30), torch.rand(1, 3, 7, 7)
    out = paste(images, patch, fixed_placement(name, 30, 7))
    x0, y0 = {"top-left": (0, 0), "top-right": (23, 0), "bottom-left": (0, 23), "bottom-right": (23, 23),
              "centre": (11, 11)}[name]
    assert torch.allclose(out[0, :, y0 : y0 + 7, x0 : x0 + 7], patch[0], atol=1e-5)
    changed = (out != images).any(1)[0]
    assert changed.sum() <= 49 and changed[y0 : y0 + 7, x0 : x0 + 7].all()
