"""The Triton fused filter+rotation kernel, interpreted on CPU (TRITON_INTERPRET=1), against its reference.

(The causal QRH operator runs on the fused convolution kernel: tests/test_fftconv_triton.py.)
"""

from __future__ import annotations

import importlib

import pytest
import torch

pytest.importorskip("triton")

from qtransformers.functional.qrh import rotation_matrix, spectral_rotate_ref  # noqa: E402
from qtransformers.kernels import (
    dispatch,  # noqa: E402
    spectral_rotate,  # noqa: E402
)


@pytest.fixture
def kernels():
    """qtransformers.kernels.spectral imported with the Triton interpreter switched on (per test, so the
    ``gpu`` test below runs the compiled kernel)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    import qtransformers.kernels.spectral as spectral

    yield importlib.reload(spectral)
    mp.undo()
    importlib.reload(spectral)


def planes(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("groups", (4, 2))
def test_kernel_forward_and_backward_match_reference(kernels, groups):
    x, s, m = planes((2, 3, groups, 13, 2), 0), planes((3, 13, 2), 1), planes((3, groups, groups), 2)
    fast = [t.clone().requires_grad_(True) for t in (x, s, m)]
    ref = [t.double().requires_grad_(True) for t in (x, s, m)]
    y, y_ref = kernels.filter_rotate(*fast), kernels.filter_rotate_ref(*ref)
    assert (y.double() - y_ref).abs().max() < 1e-5
    g = planes(tuple(y.shape), 3)
    for a, b in zip(torch.autograd.grad((y * g).sum(), fast), torch.autograd.grad((y_ref * g.double()).sum(), ref)):
        assert (a.double() - b).abs().max() < 1e-4 * b.abs().max()


@pytest.mark.parametrize("t", (97, 111))
def test_triton_spectral_rotate_matches_reference(kernels, t):
    g = torch.Generator().manual_seed(t)
    u = torch.randn(1, 2, 4, t, generator=g)
    alpha = torch.randn(2, generator=g)
    q = torch.nn.functional.normalize(torch.randn(2, 2, 4, generator=g), dim=-1)
    matrix = rotation_matrix(q[0], q[1])
    args = [a.clone().requires_grad_(True) for a in (u, alpha, matrix)]
    ref_args = [a.double().requires_grad_(True) for a in (u, alpha, matrix)]
    y = dispatch.spectral_rotate_triton(*args)
    y_ref = spectral_rotate_ref(*ref_args, False)
    assert (y.double() - y_ref).abs().max() < 1e-5 * y_ref.abs().max()
    w = torch.randn(y.shape, generator=g)
    grads = torch.autograd.grad((y * w).sum(), args)
    grads_ref = torch.autograd.grad((y_ref * w.double()).sum(), ref_args)
    for a, b in zip(grads, grads_ref):
        assert (a.double() - b).abs().max() < 1e-4 * b.abs().max()


def test_dispatch_uses_triton_on_cuda_only():
    u = torch.randn(1, 2, 4, 8)
    assert not dispatch.use_triton(u)
    alpha, matrix = torch.randn(2), torch.eye(4).repeat(2, 1, 1)
    # on CPU the public function is the reference math (no silent change of results)
    assert torch.allclose(spectral_rotate(u, alpha, matrix), spectral_rotate_ref(u, alpha, matrix, False), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", (False, True))
def test_triton_on_cuda_matches_reference(causal):
    u = torch.randn(2, 8, 4, 1025, device="cuda")
    alpha, matrix = torch.randn(8, device="cuda"), torch.linalg.qr(torch.randn(8, 4, 4, device="cuda"))[0]
    y = spectral_rotate(u, alpha, matrix, causal)
    y_ref = spectral_rotate_ref(u.double(), alpha.double(), matrix.double(), causal)
    assert (y.double() - y_ref).abs().max() < 1e-4 * y_ref.abs().max()
