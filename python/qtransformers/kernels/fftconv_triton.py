"""Triton kernel: the whole causal FFT convolution of a row in one kernel, FFTs in Monarch form.

For u (B, C, T) and kernels k (K, T) (channel c uses k[c // (C / K)], as in
:func:`qtransformers.kernels.causal_fftconv`), one program per row (b, c) computes

    y = first T samples of IFFT_N( FFT_N(u zero-padded to N) · S ),   S = FFT_N(k),

with N the smallest power of two >= max(2T, :data:`MIN_N`) (so the circular convolution is a
linear one and output t sees inputs 0..t only). The length-N DFT is written as N = N1 · N2
(FlashFFTConv's Monarch form): with n = n1 + N1·n2 and frequency f = f2 + N2·f1,

    X[f2 + N2·f1] = Σ_n1 W_N1^(n1·f1) · W_N^(n1·f2) · Σ_n2 W_N2^(n2·f2) · x[n1 + N1·n2],

i.e. a matrix product with the N2×N2 DFT matrix, a twiddle multiply, and a product with the
N1×N1 DFT matrix; every product is ``tl.dot`` on separate real and imaginary float32 planes,
tiled so that no operand dimension is below 16. The result is in natural frequency order, so
the spectrum multiply is elementwise; the inverse runs the same steps backwards with conjugate
matrices. Half the padded input is zero and only the first T outputs are kept, so the first and
last products contract over N2/2 only. The three passes of a row meet in a per-row float32
scratch buffer (B·C·N complex values); bf16/fp16 inputs are read as they are and everything
accumulates in float32 (fp32 products use ``tf32x3``, half inputs plain ``tf32``).

Backward (one ``autograd.Function``), the same kernel in correlation form: the input gradient
is the correlation of the output gradient g with the kernel (conj(S) in place of S); the kernel
gradient is the per-row correlation of g with u (FFT(g) · conj FFT(u), both transformed in the
kernel), summed over the batch and the channels sharing a kernel.
Reference: :func:`qtransformers.functional.causal_fftconv_ref`. Import this module only when
Triton is installed; under ``TRITON_INTERPRET=1`` (set before import) it runs on CPU tensors.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

MIN_N = 512
"""Smallest transform length (N1 = 16, N2 = 32: every tl.dot dimension stays >= 16)."""
BLOCK = 16
"""Row/column tile of the DFT products. 16 with 8 warps: compiled for sm_90 here (no GPU), the smallest
register use of the tiles tried (no spills for bf16 up to N = 32768; float32's tf32x3 spills at 32768)."""


@triton.jit
def _load_c(ptr, offs):
    """Real and imaginary planes of interleaved complex float32 at element offsets ``offs``."""
    return tl.load(ptr + 2 * offs), tl.load(ptr + 2 * offs + 1)


@triton.jit
def _forward_rows(
    x_row,
    scr,
    f2_ptr,
    tw_ptr,
    T,
    N1: tl.constexpr,
    N2: tl.constexpr,
    BR: tl.constexpr,
    BK: tl.constexpr,
    PREC: tl.constexpr,
):
    """Pass 1 into scr: B[n1, f2] = W_N^(n1 f2) · Σ_{n2 < N2/2} x[n1 + N1 n2] · W_N2^(n2 f2) (x real, 0 past T)."""
    half = tl.arange(0, N2 // 2)
    for r0 in range(0, N1, BR):
        n1 = r0 + tl.arange(0, BR)
        idx = n1[:, None] + N1 * half[None, :]
        a = tl.load(x_row + idx, mask=idx < T, other=0.0).to(tl.float32)
        for c0 in range(0, N2, BK):
            f2 = c0 + tl.arange(0, BK)
            w_re, w_im = _load_c(f2_ptr, half[:, None] * N2 + f2[None, :])
            b_re = tl.dot(a, w_re, input_precision=PREC)
            b_im = tl.dot(a, w_im, input_precision=PREC)
            t_re, t_im = _load_c(tw_ptr, n1[:, None] * N2 + f2[None, :])
            off = 2 * (n1[:, None] * N2 + f2[None, :])
            tl.store(scr + off, b_re * t_re - b_im * t_im)
            tl.store(scr + off + 1, b_re * t_im + b_im * t_re)


@triton.jit
def _spectrum_columns(
    scr, f1_ptr, f2, N1: tl.constexpr, N2: tl.constexpr, BR: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr
):
    """Pass 2a: the spectrum X[f2 + N2 f1] = (F_N1 @ B)[f1, f2] for all f1 and the column block f2: (N1, BK) planes."""
    all1 = tl.arange(0, N1)
    x_re = tl.full((N1, BK), 0.0, tl.float32)
    x_im = tl.full((N1, BK), 0.0, tl.float32)
    for r0 in range(0, N1, BR):
        n1 = r0 + tl.arange(0, BR)
        m_re, m_im = _load_c(f1_ptr, all1[:, None] * N1 + n1[None, :])
        b_re, b_im = _load_c(scr, n1[:, None] * N2 + f2[None, :])
        x_re += tl.dot(m_re, b_re, input_precision=PREC) - tl.dot(m_im, b_im, input_precision=PREC)
        x_im += tl.dot(m_re, b_im, input_precision=PREC) + tl.dot(m_im, b_re, input_precision=PREC)
    return x_re, x_im


@triton.jit
def _fftconv_kernel(
    u_ptr,
    v_ptr,
    spec_ptr,
    f1_ptr,
    f2_ptr,
    tw_ptr,
    scratch_ptr,
    y_ptr,
    T,
    C,
    G,
    ROWS,
    N1: tl.constexpr,
    N2: tl.constexpr,
    BR: tl.constexpr,
    BK: tl.constexpr,
    CONJ: tl.constexpr,
    CROSS: tl.constexpr,
    PREC: tl.constexpr,
):
    """One row: y = first T of IFFT(FFT(u) · P), P = S[c // G] (conj S if CONJ), or conj FFT(v) if CROSS."""
    HALF: tl.constexpr = N2 // 2
    N: tl.constexpr = N1 * N2
    row = tl.program_id(0).to(tl.int64)  # B·C·N can pass 2**31
    s_row = spec_ptr + ((row % C) // G) * N * 2
    scr = scratch_ptr + row * N * 2
    scr_v = scratch_ptr + (ROWS + row) * N * 2  # the second signal's half of the scratch (CROSS only)
    half = tl.arange(0, HALF)
    all1 = tl.arange(0, N1)

    _forward_rows(u_ptr + row * T, scr, f2_ptr, tw_ptr, T, N1, N2, BR, BK, PREC)
    if CROSS:
        _forward_rows(v_ptr + row * T, scr_v, f2_ptr, tw_ptr, T, N1, N2, BR, BK, PREC)
    tl.debug_barrier()

    # pass 2, per column block of f2: X = F_N1 @ B; X *= P; D = conj(F_N1) @ X; D *= conj(twiddle)
    for c0 in range(0, N2, BK):
        f2 = c0 + tl.arange(0, BK)
        x_re, x_im = _spectrum_columns(scr, f1_ptr, f2, N1, N2, BR, BK, PREC)
        if CROSS:
            s_re, s_im = _spectrum_columns(scr_v, f1_ptr, f2, N1, N2, BR, BK, PREC)
            s_im = -s_im
        else:
            s_re, s_im = _load_c(s_row, all1[:, None] * N2 + f2[None, :])
            if CONJ:
                s_im = -s_im
        p_re = x_re * s_re - x_im * s_im
        p_im = x_re * s_im + x_im * s_re
        tl.debug_barrier()  # every read of this column block of B is done before D overwrites it
        for r0 in range(0, N1, BR):
            n1 = r0 + tl.arange(0, BR)
            m_re, m_im = _load_c(f1_ptr, n1[:, None] * N1 + all1[None, :])
            d_re = tl.dot(m_re, p_re, input_precision=PREC) + tl.dot(m_im, p_im, input_precision=PREC)
            d_im = tl.dot(m_re, p_im, input_precision=PREC) - tl.dot(m_im, p_re, input_precision=PREC)
            t_re, t_im = _load_c(tw_ptr, n1[:, None] * N2 + f2[None, :])
            off = 2 * (n1[:, None] * N2 + f2[None, :])
            tl.store(scr + off, d_re * t_re + d_im * t_im)
            tl.store(scr + off + 1, d_im * t_re - d_re * t_im)
    tl.debug_barrier()

    # pass 3: y[n1 + N1 n2] = Re Σ_f2 D[n1, f2] · conj(W_N2^(f2 n2)) / N, for n2 < N2/2 and n < T
    y_row = y_ptr + row * T
    for r0 in range(0, N1, BR):
        n1 = r0 + tl.arange(0, BR)
        acc = tl.full((BR, HALF), 0.0, tl.float32)
        for c0 in range(0, N2, BK):
            f2 = c0 + tl.arange(0, BK)
            d_re, d_im = _load_c(scr, n1[:, None] * N2 + f2[None, :])
            w_re, w_im = _load_c(f2_ptr, f2[:, None] * N2 + half[None, :])
            acc += tl.dot(d_re, w_re, input_precision=PREC) + tl.dot(d_im, w_im, input_precision=PREC)
        idx = n1[:, None] + N1 * half[None, :]
        tl.store(y_row + idx, (acc * (1.0 / N)).to(y_ptr.dtype.element_ty), mask=idx < T)


def transform_size(t: int) -> int:
    """Length N of the fused kernel's transforms for sequences of length t: a power of two >= max(2t, MIN_N)."""
    return max(MIN_N, 1 << (2 * int(t) - 1).bit_length())


def factors(n: int) -> tuple[int, int]:
    """Monarch split N = N1 · N2 of a power of two: N2 = N1 or 2·N1 (N1 >= 16, N2 >= 32)."""
    n1 = 1 << (int(math.log2(n)) // 2)
    return n1, n // n1


def _planes(z: Tensor) -> Tensor:
    return torch.view_as_real(z.to(torch.complex64)).contiguous()


@functools.cache
def _tables(n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """DFT matrices W_N1 (N1, N1, 2), W_N2 (N2, N2, 2) and twiddles W_N^(n1 f2) (N1, N2, 2), float32 planes."""
    n1, n2 = factors(n)

    def dft(m: int, rows: int, cols: int) -> Tensor:
        prod = torch.outer(torch.arange(rows, dtype=torch.int64), torch.arange(cols, dtype=torch.int64)) % m
        return _planes(torch.polar(torch.ones((), dtype=torch.float64), -2 * math.pi * prod.double() / m))

    return dft(n1, n1, n1).to(device), dft(n2, n2, n2).to(device), dft(n, n1, n2).to(device)


def spectrum(k: Tensor, n: int) -> Tensor:
    """Kernel spectra on the fused grid: k (K, T) -> FFT_n(k) as float32 planes (K, n, 2)."""
    return _planes(torch.fft.fft(k.float(), n=n))


def _launch(u: Tensor, spec: Tensor | None, kernels: int, conj: bool = False, cross: Tensor | None = None) -> Tensor:
    """Run the kernel over the rows of u (B, C, T): convolution with spec (K, N, 2) (correlation if conj), or,
    with ``cross`` (B, C, T), the per-row correlation of u with it (float32 output, spec unused)."""
    b, c, t = u.shape
    n = transform_size(t)
    n1, n2 = factors(n)
    f1, f2, tw = _tables(n, u.device)
    u = u.contiguous()
    v = u if cross is None else cross.contiguous()
    y = torch.empty_like(u) if cross is None else torch.empty(u.shape, device=u.device, dtype=torch.float32)
    scratch = torch.empty(1 if cross is None else 2, b * c, n, 2, device=u.device, dtype=torch.float32)
    prec = "tf32x3" if u.dtype == torch.float32 else "tf32"
    _fftconv_kernel[(b * c,)](
        u,
        v,
        f1 if spec is None else spec,
        f1,
        f2,
        tw,
        scratch,
        y,
        t,
        c,
        c // kernels,
        b * c,
        N1=n1,
        N2=n2,
        BR=BLOCK,
        BK=BLOCK,
        CONJ=conj,
        CROSS=cross is not None,
        PREC=prec,
        num_warps=8,
    )
    return y


class _FFTConvTriton(torch.autograd.Function):
    """Forward, input gradient (correlation with the kernel) and kernel gradient (correlation with u) by the kernel."""

    @staticmethod
    def forward(ctx, u: Tensor, k: Tensor) -> Tensor:
        spec = spectrum(k, transform_size(u.size(-1)))
        ctx.save_for_backward(u, k, spec)
        return _launch(u, spec, k.size(0), conj=False)

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, k, spec = ctx.saved_tensors
        grad_u = _launch(grad, spec, k.size(0), conj=True) if ctx.needs_input_grad[0] else None
        grad_k = None
        if ctx.needs_input_grad[1]:
            b, c, t = u.shape
            grad_k = _launch(grad, None, k.size(0), cross=u).view(b, k.size(0), -1, t).sum(dim=(0, 2)).to(k.dtype)
        return grad_u, grad_k


def fftconv_triton(u: Tensor, k: Tensor) -> Tensor:
    """Fused causal convolution of u (B, C, T) (float32/bf16/fp16) with k (K, T), K | C -> (B, C, T) in u's dtype."""
    return _FFTConvTriton.apply(u, k)
