"""``QRHLayer`` and the "qrh" mixer: ΨQRH token mixing on quaternion-valued embeddings.

(B, T, 4E) -> input projection -> absolute phase (position) -> view as E quaternions per token
-> Ψ_QRH = R · F⁻¹{F_α(k) · F{Ψ}} (causal or not, see :mod:`qtransformers.functional.qrh`)
-> output projection. The causal Ψ_QRH is a causal convolution (Rust on CPU, the fused Triton
kernel :mod:`qtransformers.kernels.fftconv_triton` on CUDA); R is folded into the output projection.
α is a learnable per-channel parameter; R = left and right unit
quaternions per channel (learned 4-vectors, normalised in forward, initialised to identity).
A causal layer is built for sequences up to ``max_len``: its kernel is defined once on that
grid, so the weight of each lag does not depend on the input's length (prefix-consistent).

Ablation options (all at nearly the same parameter count, the two D×D projections dominate):

- ``quaternion=False``: complex-valued mixing without quaternion structure: the 4E reals are
  2E complex channels, each with its own α and a learned unit complex phase e^{iθ} as rotation.
- ``spectral_filter=False``: no F(k) filter, so no token mixing at all (α not created).
- ``rotation=False`` (same as ``learned_rotation=False``): no rotation R.
- ``position=False``: no absolute phase.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.position import absolute_phase
from qtransformers.functional.qrh import DEFAULT_MAX_LEN, check_length, rotation_matrix
from qtransformers.kernels import spectral_rotate
from qtransformers.mixers.registry import register


def fractal_dimension(x: Tensor) -> Tensor:
    """Box-free spectral estimate of the fractal dimension of each channel of x (B, T, C) -> (C,).

    Fits the power-spectrum slope |X(k)|² ∝ k^(-β) over k = 1..T/2 (log-log least squares,
    averaged over the batch) and maps it with the fractional-Brownian-motion relation
    D = (5 - β) / 2, clamped to the range [1, 2] of a 1-D profile.
    """
    t = x.size(1)
    if t < 4:
        raise ShapeError(f"fractal_dimension needs at least 4 time steps, got {tuple(x.shape)}")
    power = torch.fft.rfft(x.double(), dim=1).abs().square().mean(dim=0)[1 : t // 2 + 1]
    logk = torch.log(torch.arange(1, power.size(0) + 1, dtype=torch.float64, device=x.device))
    logp = torch.log(power.clamp_min(1e-300))
    kc = logk - logk.mean()
    slope = (kc[:, None] * (logp - logp.mean(dim=0))).sum(dim=0) / kc.square().sum()
    return ((5.0 + slope) / 2.0).clamp(1.0, 2.0).to(x.dtype)


class QRHLayer(nn.Module):
    """ΨQRH layer on (B, T, 4·embed_dim) -> (B, T, 4·embed_dim); see the module docstring.

    ``causal=True``: the ΨQRH kernel is defined on the fixed grid of ``max_len``
    (:func:`qtransformers.functional.qrh.causal_kernel`); inputs longer than ``max_len`` raise
    ShapeError. ``max_len`` is not used by the non-causal (unitary, length-T) operator.

    ``fractal_init=True``: on the first forward call α is set, per channel, to
    ``alpha · D_f`` where D_f ∈ [1, 2] is :func:`fractal_dimension` of the projected batch
    (α grows with the roughness of the signal; a smooth D_f = 1 keeps ``alpha``). That it ran is
    the boolean buffer ``fractal_done``, saved in the state_dict, so a loaded checkpoint keeps its
    α; a checkpoint without the buffer (saved before it existed) loads as already initialised.
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        alpha: float = 1.0,
        causal: bool = False,
        learned_rotation: bool = True,
        fractal_init: bool = False,
        quaternion: bool = True,
        spectral_filter: bool = True,
        rotation: bool = True,
        position: bool = True,
        bias: bool = True,
        backend: str = "auto",
        max_len: int = DEFAULT_MAX_LEN,
    ) -> None:
        super().__init__()
        if embed_dim < 1:
            raise InvalidArgumentError(f"embed_dim must be positive, got {embed_dim}")
        check_length(1, max_len)
        self.embed_dim, self.dim, self.causal, self.max_len = embed_dim, 4 * embed_dim, causal, max_len
        self.group = 4 if quaternion else 2
        self.channels = self.dim // self.group
        self.position, self.backend = position, backend
        self.in_proj = nn.Linear(self.dim, self.dim, bias=bias)
        self.out_proj = nn.Linear(self.dim, self.dim, bias=bias)
        self.alpha = nn.Parameter(torch.full((self.channels,), float(alpha))) if spectral_filter else None
        self.learned_rotation = learned_rotation and rotation
        if self.learned_rotation and quaternion:
            identity = torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(self.channels, 1)
            self.q_left = nn.Parameter(identity.clone())
            self.q_right = nn.Parameter(identity.clone())
        elif self.learned_rotation:
            self.theta = nn.Parameter(torch.zeros(self.channels))
        self.fractal_init = fractal_init and spectral_filter
        if self.fractal_init:
            self.fractal_done: Tensor
            self.register_buffer("fractal_done", torch.tensor(False))

    def rotation(self) -> Tensor | None:
        """Current per-channel rotation matrices (C, G, G), or None without rotation."""
        if not self.learned_rotation:
            return None
        if self.group == 4:
            q_left = self.q_left / self.q_left.norm(dim=-1, keepdim=True)
            q_right = self.q_right / self.q_right.norm(dim=-1, keepdim=True)
            return rotation_matrix(q_left, q_right)
        cos, sin = self.theta.cos(), self.theta.sin()
        return torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)

    @torch.no_grad()
    def _init_alpha_from(self, h: Tensor) -> None:
        assert self.alpha is not None, "fractal_init is only set with a spectral filter"
        channels = h.reshape(h.size(0), h.size(1), self.channels, self.group).square().sum(-1).sqrt()
        self.alpha.copy_(self.alpha * fractal_dimension(channels.float()).to(self.alpha))
        self.fractal_done.fill_(True)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        key = prefix + "fractal_done"
        if self.fractal_init and key not in state_dict:  # saved before the flag was persisted: α is the saved one
            state_dict[key] = torch.tensor(True)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of x (B, T, 4·embed_dim).

        Runs channels-first: the input projection writes (B, D, T) directly (the transpose is
        folded into the matmul), the FFTs run along the contiguous T axis, and the per-channel
        rotation R is folded into the output projection's weight (W_out · blockdiag(R)).
        """
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        b, t, _ = x.shape
        h = torch.matmul(self.in_proj.weight, x.transpose(1, 2))
        if self.in_proj.bias is not None:
            h = h + self.in_proj.bias[:, None]
        if self.position:
            h = absolute_phase(h, group=self.group, channels_first=True)
        if self.fractal_init and not self.fractal_done:
            self._init_alpha_from(h.detach().transpose(1, 2))
        u = h.view(b, self.channels, self.group, t)
        y = spectral_rotate(u, self.alpha, None, self.causal, backend=self.backend, max_len=self.max_len)
        y = y.reshape(b, self.dim, t)
        weight = self.out_proj.weight
        rotation = self.rotation()
        if rotation is not None:
            w = weight.view(self.dim, self.channels, self.group)
            weight = torch.einsum("oci,cij->ocj", w, rotation.to(w.dtype)).reshape(self.dim, self.dim)
        return F.linear(y.transpose(1, 2), weight, self.out_proj.bias)

    def extra_repr(self) -> str:
        causal = f"causal=True, max_len={self.max_len}" if self.causal else "causal=False"
        return f"embed_dim={self.embed_dim}, group={self.group}, {causal}"


@register("qrh", signature_of=QRHLayer)
def build_qrh(dim: int, *, causal: bool = True, **options) -> QRHLayer:
    """The "qrh" mixer of width ``dim`` (divisible by 4): a :class:`QRHLayer` with embed_dim = dim / 4."""
    if dim % 4 != 0:
        raise InvalidArgumentError(f"the qrh mixer needs dim divisible by 4 (quaternion channels), got {dim}")
    return QRHLayer(dim // 4, causal=causal, **options)
