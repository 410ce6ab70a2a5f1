"""QLLM's phase-space mixer: golden-ratio phases, causal multi-head interference, a concept layer.

Every position carries, per head, a state of ``head_dim`` complex amplitudes
``a * exp(i * phi)`` whose amplitudes and phases depend on the input (bounded with tanh and
softplus: no data-dependent Python branches, so no host synchronisation). The base phases
start at golden-ratio angles ``2*pi*frac(k*phi_golden)`` (evenly spread, never aligned), and a
rotary term ``omega_j * t`` adds relative position (``rope=True``, the default; it is RoPE on
the complex pairs (Re, Im) of the state, ``omega_j = rope_base^(-j/head_dim)``, the angles of
:func:`qtransformers.functional.position.phase_angles`). Position t interferes with every s <= t:
the score ``Re <psi_t, psi_s> = sum_j a_tj a_sj cos(phi_tj - phi_sj + omega_j (t - s))`` is
turned into causal attention weights over the values (one SDPA call on the real/imaginary
planes). A concept layer then softly assigns each position to learned concept vectors.

Each forward also records :func:`phase_energies` of its state phases (O(T) in the length and
causal: prefix sums only) in ``self.energies`` so a trainer can add them as auxiliary losses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.position import phase_angles
from qtransformers.mixers.incremental import cached_attention, register_incremental
from qtransformers.mixers.registry import register

GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0


def golden_phases(n: int) -> Tensor:
    """The golden-ratio angles ``2*pi*frac(k * phi_golden)`` for k = 0..n-1, shape (n,), float32."""
    k = torch.arange(n, dtype=torch.float64)
    return (2.0 * math.pi * torch.frac(k * GOLDEN_RATIO)).float()


def phase_energies(phases: Tensor) -> dict[str, Tensor]:
    """QLLM's energy terms of state phases (B, T, H, d), each a scalar in [0, 1]; O(T) and causal.

    - ``local``: local coherence energy, mean of ``1 - cos(phi_t - phi_{t-1})`` over neighbours.
    - ``global``: global interference energy, ``1 - |mean_{s<=t} exp(i phi_s)|^2`` averaged over
      positions t and channels (prefix means from cumulative sums: only the past is used).
    - ``entanglement``: mean squared overlap ``|<psi^h_t, psi^g_t>|^2`` of the unit-norm phase states
      of different heads h != g at the same position (0 with a single head).

    Also returns ``coherence`` (detached): the mean resultant length ``|mean_t exp(i phi_t)|`` over
    the window, per channel, averaged; a diagnostic for logging, never fed back into the model.
    """
    if phases.dim() != 4:
        raise ShapeError(f"expected phases (B, T, H, d), got {tuple(phases.shape)}")
    phases = phases.float()
    b, t, h, d = phases.shape
    cos, sin = phases.cos(), phases.sin()
    if t > 1:
        local = 1.0 - torch.cos(phases[:, 1:] - phases[:, :-1]).mean()
    else:
        local = phases.new_zeros(())
    count = torch.arange(1, t + 1, device=phases.device, dtype=phases.dtype).view(1, t, 1, 1)
    prefix_cos, prefix_sin = cos.cumsum(1) / count, sin.cumsum(1) / count
    global_ = 1.0 - (prefix_cos.square() + prefix_sin.square()).mean()
    if h > 1:
        # <psi_h, psi_g> = sum_j exp(i(phi_hj - phi_gj)): real part [cos, sin].[cos, sin], imaginary [sin, -cos].[cos, sin]
        planes = torch.cat([cos, sin], dim=-1)
        re = planes @ planes.transpose(-1, -2)
        im = torch.cat([sin, -cos], dim=-1) @ planes.transpose(-1, -2)
        overlap = (re.square() + im.square()) / (d * d)
        off_diagonal = overlap.sum((-2, -1)) - overlap.diagonal(dim1=-2, dim2=-1).sum(-1)
        entanglement = off_diagonal.mean() / (h * (h - 1))
    else:
        entanglement = phases.new_zeros(())
    coherence = torch.sqrt(cos.mean(1).square() + sin.mean(1).square()).mean().detach()
    return {"local": local, "global": global_, "entanglement": entanglement, "coherence": coherence}


class ConceptLayer(nn.Module):
    """Soft assignment of each position to ``concepts`` learned vectors: (B, T, D) -> (B, T, D), per position."""

    def __init__(self, dim: int, concepts: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.concepts = nn.Parameter(torch.randn(concepts, dim) / math.sqrt(dim))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: Tensor) -> Tensor:
        """Mixture of concept vectors weighted by softmax similarity to each position of ``x``."""
        weights = torch.softmax(self.norm(x) @ self.concepts.t() * self.scale, dim=-1)
        return weights @ self.concepts


@register("phase")
class PhaseMixer(nn.Module):
    """QLLM phase-interference mixer; (B, T, D) -> (B, T, D); ``dim`` divisible by ``num_heads``."""

    freq: Tensor

    def __init__(
        self,
        dim: int,
        *,
        causal: bool = True,
        num_heads: int = 4,
        concepts: int = 16,
        max_phase_shift: float = math.pi,
        rope: bool = True,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise InvalidArgumentError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if concepts < 0:
            raise InvalidArgumentError(f"concepts must be >= 0, got {concepts}")
        self.dim, self.num_heads, self.causal = dim, num_heads, causal
        self.head_dim = dim // num_heads
        self.max_phase_shift = max_phase_shift
        self.proj = nn.Linear(dim, 5 * dim)
        self.base_phase = nn.Parameter(golden_phases(dim).view(num_heads, self.head_dim))
        self.rope_base = rope_base if rope else None
        self.out = nn.Linear(dim, dim)
        self.concept = ConceptLayer(dim, concepts) if concepts else None
        self.energies: dict[str, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of ``x`` (B, T, D); records ``self.energies``."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        return self._mix(x, offset=0, cache=None)

    def _mix(self, x: Tensor, offset: int, cache: dict | None) -> Tensor:
        b, t, _ = x.shape
        qa, qp, ka, kp, v = self.proj(x).view(b, t, 5, self.num_heads, self.head_dim).unbind(2)
        phase_q = self.base_phase + self.max_phase_shift * torch.tanh(qp.float())
        phase_k = self.base_phase + self.max_phase_shift * torch.tanh(kp.float())
        if cache is None:
            self.energies = phase_energies(phase_k)
        if self.rope_base is not None:
            angles = phase_angles(t, 2 * self.head_dim, base=self.rope_base, offset=offset, device=x.device)
            rotation = angles.t().reshape(1, t, 1, self.head_dim)
            phase_q, phase_k = phase_q + rotation, phase_k + rotation
        q = _polar_features(F.softplus(qa), phase_q)
        k = _polar_features(F.softplus(ka), phase_k)
        v = v.transpose(1, 2)
        if cache is None:
            y = _interfere(q, k, v, self.causal)
        else:
            y = cached_attention(q, k, v, cache)
        y = self.out(y.transpose(1, 2).reshape(b, t, self.dim))
        if self.concept is not None:
            y = y + self.concept(y)
        return y


def _interfere(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """SDPA of planes q, k (B, H, T, 2d) over values v (B, H, T, d) -> (B, H, T, d).

    v is zero-padded to 2d (the output sliced back): SDPA's fused kernels need one head size for
    q, k and v, and without them the CPU runs its math path, which builds the (T, T) weights
    (docs/results/phase-padded-values). The scale stays 1/sqrt(2d), from q.
    """
    d = v.size(-1)
    padded = F.pad(v, (0, q.size(-1) - d))
    return F.scaled_dot_product_attention(q, k, padded, is_causal=causal)[..., :d]


def _polar_features(amplitude: Tensor, phase: Tensor) -> Tensor:
    """(B, T, H, d) amplitude and phase -> (B, H, T, 2d) real and imaginary planes, in amplitude's dtype.

    cos/sin are taken in float32: rotary phases grow with the position, and in bfloat16 a phase
    near 1000 rad would be rounded to a multiple of 4.
    """
    phase, a = phase.float(), amplitude.float()
    planes = torch.cat([a * torch.cos(phase), a * torch.sin(phase)], dim=-1)
    return planes.to(amplitude.dtype).transpose(1, 2)


@register_incremental(PhaseMixer)
def _phase_incremental(mixer: PhaseMixer, x: Tensor, cache: dict) -> Tensor:
    offset = cache["k"].size(2) if "k" in cache else 0
    return mixer._mix(x, offset=offset, cache=cache)
