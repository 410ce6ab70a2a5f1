"""Causal FFT convolution: every backend (torch, Rust) against the reference and a direct sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtransformers import _core
from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional import causal_fftconv_ref
from qtransformers.functional.fftconv import fft_size
from qtransformers.kernels import causal_fftconv

FAST = ("torch", "rust")


def direct(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[b, c, t] = sum_{j <= t} k[c // g, j] u[b, c, t - j] by conv1d (flipped kernel, left padding)."""
    t, group = u.size(-1), u.size(1) // k.size(0)
    padded = torch.nn.functional.pad(u, (t - 1, 0))
    weight = k.repeat_interleave(group, dim=0).flip(-1)[:, None, :]
    return torch.nn.functional.conv1d(padded, weight, groups=u.size(1))


def data(b, c, t, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, c, t, generator=g, dtype=torch.float64).to(dtype),
        torch.randn(c, t, generator=g, dtype=torch.float64).to(dtype),
    )


def test_fft_size_matches_the_rust_rule():
    for t in (1, 2, 97, 111, 1025, 16384):
        n = fft_size(t)
        assert n >= 2 * t - 1 and n % 2 == 0
    assert fft_size(16384) == 32768


@pytest.mark.parametrize("t", (97, 111, 1025))
@pytest.mark.parametrize("backend", FAST + ("reference",))
def test_matches_direct_convolution(t, backend):
    u, k = data(2, 3, t, torch.float64, seed=t)
    want = direct(u, k)
    assert torch.allclose(causal_fftconv(u, k, backend=backend), want, atol=1e-9)
    u32, k32 = u.float(), k.float()
    err = (causal_fftconv(u32, k32, backend=backend).double() - want).abs().max()
    err_ref = (causal_fftconv_ref(u32, k32).double() - want).abs().max()
    assert err <= 2 * err_ref + 1e-5


@pytest.mark.parametrize("backend", FAST + ("reference",))
def test_shared_kernels_per_group_of_channels(backend):
    u, k = data(2, 8, 111, torch.float64, seed=4)
    k = k[:2]  # 2 kernels, each shared by 4 consecutive channels (one quaternion)
    assert torch.allclose(causal_fftconv(u, k, backend=backend), direct(u, k), atol=1e-9)


@pytest.mark.parametrize("kernels", (2, 4))
@pytest.mark.parametrize("backend", FAST + ("reference",))
def test_gradcheck_float64(backend, kernels):
    u, k = data(2, 4, 13, torch.float64)
    args = (u.requires_grad_(True), k[:kernels].clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda a, b: causal_fftconv(a, b, backend=backend), args)


@pytest.mark.parametrize("backend", FAST)
def test_gradients_match_reference_float32(backend):
    u, k = data(2, 4, 1025, torch.float32, seed=1)
    g = torch.randn(2, 4, 1025, generator=torch.Generator().manual_seed(2))
    fast = [u.clone().requires_grad_(True), k.clone().requires_grad_(True)]
    ref = [u.double().requires_grad_(True), k.double().requires_grad_(True)]
    gf = torch.autograd.grad((causal_fftconv(*fast, backend=backend) * g).sum(), fast)
    gr = torch.autograd.grad((causal_fftconv_ref(*ref) * g.double()).sum(), ref)
    for a, b in zip(gf, gr):
        assert (a.double() - b).abs().max() < 1e-4 * b.abs().max()


@pytest.mark.parametrize("backend", FAST)
def test_bfloat16_in_bfloat16_out(backend):
    u, k = data(1, 2, 97, torch.float32)
    y = causal_fftconv(u.bfloat16(), k.bfloat16(), backend=backend)
    want = direct(u.bfloat16().double(), k.bfloat16().double())
    assert y.dtype == torch.bfloat16
    assert (y.double() - want).abs().max() <= 2 * (want.bfloat16().double() - want).abs().max() + 1e-3


def test_bad_input_raises_named_errors():
    u, k = data(1, 2, 8, torch.float32)
    with pytest.raises(ShapeError, match="K dividing C"):
        causal_fftconv(u, k[:, :5])
    with pytest.raises(ShapeError, match="K dividing C"):
        causal_fftconv(u, torch.zeros(3, 8))
    with pytest.raises(InvalidArgumentError, match="backend"):
        causal_fftconv(u, k, backend="fast")
    with pytest.raises(ShapeError, match=r"\(1, 3\)"):
        _core.causal_fftconv(u.numpy(), np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ShapeError, match="K dividing C"):
        _core.causal_fftconv_backward(u.numpy(), u.numpy(), np.zeros((3, 8), dtype=np.float32))
    with pytest.raises(TypeError):
        _core.causal_fftconv(u.numpy(), k.double().numpy())


def test_rust_op_compiles_fullgraph():
    u, k = data(2, 3, 64, torch.float32)
    uc = u.clone().requires_grad_(True)
    fn = torch.compile(lambda a, b: causal_fftconv(a, b, backend="rust") * 2, fullgraph=True, backend="aot_eager")
    y = fn(uc, k)
    y.sum().backward()
    assert torch.allclose(y, 2 * direct(u, k), atol=1e-4)
    assert uc.grad is not None and torch.isfinite(uc.grad).all()
