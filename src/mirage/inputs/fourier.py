"""Lucid-style Fourier-space image parameterization with decorrelated colour.

S independent image "slots", each optimised through its scaled 2-D spectrum."""

from __future__ import annotations

import torch
from torch import nn

from .base import take_slots

# Lucid's square root of the ImageNet colour covariance (columns = decorrelated channels).
_COLOR_CORRELATION_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]]
)
# Lucid's magic divisor on the spatial image; larger values give less saturated starts.
_IMAGE_DIVISOR = 4.0


class FourierImage(nn.Module):
    """S images of size H x W parameterized by their scaled 2-D spectra in a decorrelated colour space."""

    def __init__(self, slots: int, height: int, width: int, decay: float = 1.0, init_std: float = 0.01):
        """`decay` is the power of 1/f applied to the spectrum (0 gives white noise); `init_std` the spectrum's init."""
        super().__init__()
        if slots < 1 or height < 1 or width < 1:
            raise ValueError(f"slots, height and width must be >= 1, got {slots}, {height}, {width}")
        self.slots, self.height, self.width = slots, height, width
        self.decay, self.init_std = decay, init_std

        fy = torch.fft.fftfreq(height)[:, None]  # [H, 1]
        fx = torch.fft.rfftfreq(width)[None, :]  # [1, W//2+1]
        freq = torch.sqrt(fx**2 + fy**2)  # [H, W//2+1]
        # Clamping at the lowest non-zero frequency keeps DC finite; sqrt(H*W) undoes the ortho
        # norm's 1/sqrt(H*W) so a small init still yields pixels of order one, as in Lucid.
        scale = 1.0 / freq.clamp_min(1.0 / max(height, width)) ** decay
        scale = scale * (height * width) ** 0.5  # [H, W//2+1]
        # Derived from the constructor arguments, so kept out of state_dicts.
        self.register_buffer("scale", scale, persistent=False)

        color = _COLOR_CORRELATION_SVD_SQRT / _COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()  # [3, 3]
        self.register_buffer("color", color, persistent=False)

        self.spectrum = nn.Parameter(
            torch.randn(slots, 3, height, width // 2 + 1, 2) * init_std  # [S, 3, H, W//2+1, 2]
        )

    @torch.no_grad()
    def reset_(self, slot: int, generator: torch.Generator) -> None:
        """Re-draw slot `slot` in place as normal noise * init_std from `generator` (a CPU generator)."""
        p = self.spectrum
        sample = torch.randn(p.shape[1:], generator=generator, device=generator.device)  # [3, H, W//2+1, 2]
        p[slot].copy_((sample * self.init_std).to(device=p.device, dtype=p.dtype))

    def forward(self, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Images [len(slots) or S, 3, H, W] in (0, 1); repeated slot indices share (and sum gradients into) one slot."""
        spec = self.spectrum if slots is None else take_slots(self.spectrum, slots)  # [B, 3, H, W//2+1, 2]
        spec = torch.complex(spec[..., 0], spec[..., 1]) * self.scale  # [B, 3, H, W//2+1]
        x = torch.fft.irfft2(spec, s=(self.height, self.width), norm="ortho") / _IMAGE_DIVISOR  # [B, 3, H, W]
        # Lucid maps with t @ M.T, i.e. output channel d = sum_c M[d, c] * t[c].
        x = torch.einsum("bchw,dc->bdhw", x, self.color.to(x.dtype))  # [B, 3, H, W]
        return torch.sigmoid(x)
