"""Triton kernel: the fused frequency-domain filter + per-channel rotation of ΨQRH.

On spectra X (B, C, G, F) (complex, read as interleaved real/imag float32 planes), a
per-channel spectrum S (C, F) and real matrices M (C, G, G), it computes in one pass

    Y[b, c, i, f] = S[c, f] · Σ_j M[c, i, j] · X[b, c, j, f]

(the filter is a complex scalar per bin and the rotation a real matrix, so they commute).
Its backward w.r.t. X is the same kernel with conj(S) and Mᵀ; the reductions for S and M
run in torch. Reference: :func:`filter_rotate_ref`. Import this module only when Triton is
installed; under ``TRITON_INTERPRET=1`` it runs on CPU tensors (set the variable before import).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 128


@triton.jit
def _filter_rotate_kernel(
    x_ptr,
    s_ptr,
    m_ptr,
    y_ptr,
    C,
    F,
    G: tl.constexpr,
    BLOCK: tl.constexpr,
    ADJOINT: tl.constexpr,
):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    c = row % C
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < F
    s_re = tl.load(s_ptr + (c * F + offs) * 2, mask=mask, other=0.0)
    s_im = tl.load(s_ptr + (c * F + offs) * 2 + 1, mask=mask, other=0.0)
    if ADJOINT:
        s_im = -s_im
    base = row * G * F
    for i in tl.static_range(G):
        # (0 * s) rather than tl.zeros: a builtin, so the kernel also runs interpreted when
        # triton was imported before TRITON_INTERPRET=1 was set (the tests' situation)
        acc_re = s_re * 0.0
        acc_im = s_re * 0.0
        for j in tl.static_range(G):
            if ADJOINT:
                m = tl.load(m_ptr + c * G * G + j * G + i)
            else:
                m = tl.load(m_ptr + c * G * G + i * G + j)
            x_re = tl.load(x_ptr + (base + j * F + offs) * 2, mask=mask, other=0.0)
            x_im = tl.load(x_ptr + (base + j * F + offs) * 2 + 1, mask=mask, other=0.0)
            acc_re += m * x_re
            acc_im += m * x_im
        y_off = (base + i * F + offs) * 2
        tl.store(y_ptr + y_off, s_re * acc_re - s_im * acc_im, mask=mask)
        tl.store(y_ptr + y_off + 1, s_re * acc_im + s_im * acc_re, mask=mask)


def _launch(x: Tensor, s: Tensor, m: Tensor, adjoint: bool) -> Tensor:
    b, c, g, f, _ = x.shape
    y = torch.empty_like(x)
    grid = (b * c, triton.cdiv(f, BLOCK))
    _filter_rotate_kernel[grid](x, s, m, y, c, f, G=g, BLOCK=BLOCK, ADJOINT=adjoint)
    return y


class _FilterRotate(torch.autograd.Function):
    """Autograd wrapper: forward and X-gradient by the kernel, S/M gradients by torch reductions."""

    @staticmethod
    def forward(ctx, x: Tensor, s: Tensor, m: Tensor) -> Tensor:
        ctx.save_for_backward(x, s, m)
        return _launch(x, s, m, adjoint=False)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, s, m = ctx.saved_tensors
        grad = grad.contiguous()
        gx = _launch(grad, s, m, adjoint=True) if ctx.needs_input_grad[0] else None
        gs = gm = None
        xc, gc, sc = torch.view_as_complex(x), torch.view_as_complex(grad), torch.view_as_complex(s)
        if ctx.needs_input_grad[1]:
            w = torch.einsum("cij,bcjf->bcif", m.to(xc.dtype), xc)
            gs = torch.view_as_real((gc * w.conj()).sum(dim=(0, 2)))
        if ctx.needs_input_grad[2]:
            a = sc.conj()[None, :, None, :] * gc
            gm = torch.einsum("bcif,bcjf->cij", a.real, xc.real) + torch.einsum("bcif,bcjf->cij", a.imag, xc.imag)
        return gx, gs, gm


def filter_rotate(x: Tensor, s: Tensor, m: Tensor) -> Tensor:
    """Fused S · (M X): x (B, C, G, F, 2), s (C, F, 2) float32 real/imag planes, m (C, G, G) -> (B, C, G, F, 2)."""
    return _FilterRotate.apply(x.contiguous(), s.contiguous(), m.contiguous())


def filter_rotate_ref(x: Tensor, s: Tensor, m: Tensor) -> Tensor:
    """Reference of :func:`filter_rotate` with complex torch ops (same layout)."""
    z = torch.einsum(
        "cij,bcjf->bcif",
        m.to(torch.complex64 if x.dtype == torch.float32 else torch.complex128),
        torch.view_as_complex(x.contiguous()),
    )
    return torch.view_as_real(z * torch.view_as_complex(s.contiguous())[None, :, None, :])
