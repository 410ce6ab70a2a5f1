"""The "spectral" mixer: the byte-level FFT design, made causal.

x (B, T, D) -> [absolute phase] -> projection to values v and a GLU gate u -> S multi-scale
bands, each a causal convolution of v with a damped complex oscillator kernel
``h_{b,d}(t) = Re(w_{b,d} · e^{i ω_{b,d} t}) · e^{-t / τ_b}``, t ≥ 0 (a band-pass filter around
ω, bandwidth 1/τ; τ_b = 2^b·τ_0 gives the multi-scale bands, ω starts at the band centres)
-> GLU frequency gating: token t mixes the bands with gates σ(W_g x_t) (one per band, so the
gating is per token and causal) -> ⊙ σ(u) -> output projection.

Phase-aware mixing: each band weight w = r·e^{iφ} is a complex number stored in polar form
(``log_magnitude``, ``phase``): it scales the band's spectrum by r and rotates its phase by φ
(the weights :func:`qtransformers.compress.polar_quantize` packs). All kernels are causal and
the bands are :func:`qtransformers.kernels.gated_oscillators`: h is Re(w·λ^t) with the pole
λ = e^{-1/τ} e^{iω}, so on CPU each band runs as the recurrence h_t = λ h_{t-1} + v_t in the Rust core
(O(T)); the other backends convolve the materialised kernels by zero-padded FFT (the fused Triton
kernel on CUDA, all bands in one launch). Output t never sees t' > t; there is no whole-sequence FFT
mixing. Causal only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.position import absolute_phase
from qtransformers.kernels import gated_oscillators
from qtransformers.mixers.registry import register


@register("spectral", causal=True, non_causal=False)
class SpectralMixer(nn.Module):
    """Causal multi-band spectral mixer with GLU frequency gating on x (B, T, D) -> (B, T, D)."""

    tau: Tensor

    def __init__(
        self,
        dim: int,
        *,
        causal: bool = True,
        bands: int = 4,
        tau0: float = 4.0,
        position: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not causal:
            raise InvalidArgumentError(f"the {type(self).__name__} mixer is causal only, got causal=False")
        self.causal = True
        if bands < 1:
            raise InvalidArgumentError(f"bands must be >= 1, got {bands}")
        if position and dim % 2:
            raise InvalidArgumentError(f"spectral with position=True needs an even dim, got {dim}")
        self.dim, self.bands, self.position, self.backend = dim, bands, position, backend
        self.in_proj = nn.Linear(dim, 2 * dim)
        self.band_gate = nn.Linear(dim, bands)
        centres = torch.tensor([math.pi * 2.0 ** -(bands - b) for b in range(bands)])
        self.omega = nn.Parameter(centres[:, None].repeat(1, dim))
        self.register_buffer("tau", tau0 * 2.0 ** torch.arange(bands, dtype=torch.float32), persistent=False)
        self.log_magnitude = nn.Parameter(torch.zeros(bands, dim))
        self.phase = nn.Parameter(torch.rand(bands, dim, generator=torch.Generator().manual_seed(0)) * 2 * math.pi)
        self.out_proj = nn.Linear(dim, dim)

    complex_parameters = ("log_magnitude", "phase")

    def complex_weight(self) -> Tensor:
        """The band weights w = r·e^{iφ} as a complex (bands, D) tensor."""
        return torch.polar(self.log_magnitude.detach().exp(), self.phase.detach())

    @torch.no_grad()
    def load_complex_weight(self, z: Tensor) -> None:
        """Set the band weights from a complex (bands, D) tensor (r = 0 becomes log r = -inf, w = 0)."""
        self.log_magnitude.copy_(z.abs().log())
        self.phase.copy_(z.angle())

    def poles(self) -> Tensor:
        """The band poles λ = e^{-1/τ_b} e^{iω_{b,d}} as a (2, bands, D) tensor (real, imaginary parts)."""
        decay = torch.exp(-1.0 / self.tau)[:, None]
        return torch.stack([decay * self.omega.cos(), decay * self.omega.sin()])

    def weights(self) -> Tensor:
        """The band weights w = r·e^{iφ} as a (2, bands, D) tensor (real, imaginary parts)."""
        magnitude = self.log_magnitude.exp()
        return torch.stack([magnitude * self.phase.cos(), magnitude * self.phase.sin()])

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of x (B, T, D) causally."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        if self.position:
            x = absolute_phase(x)
        v, u = self.in_proj(x).chunk(2, dim=-1)
        gates = torch.sigmoid(self.band_gate(x))
        mixed = gated_oscillators(v, gates, self.poles(), self.weights(), backend=self.backend)
        return self.out_proj(mixed * torch.sigmoid(u))
