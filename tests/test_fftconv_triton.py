"""The fused Triton causal FFT convolution (Monarch form) against causal_fftconv_ref, and every mixer that uses it.

Interpreted on CPU (TRITON_INTERPRET=1) in float32 (and float16); the ``gpu`` tests run the compiled
kernel on CUDA in float32 and bfloat16. Tolerance in the flash-attention style: the error against a
float64 reference is at most twice torch's own error in the same precision, plus a small atol.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch

triton = pytest.importorskip("triton")

from qtransformers import mixers  # noqa: E402
from qtransformers.exceptions import BackendUnavailableError, DTypeError  # noqa: E402
from qtransformers.functional.fftconv import causal_fftconv_ref  # noqa: E402
from qtransformers.kernels import dispatch  # noqa: E402
from qtransformers.kernels.dispatch import causal_fftconv, resolve_backend  # noqa: E402

ATOL = 1e-6
"""Absolute slack of the tolerance, relative to the reference's largest entry."""


@pytest.fixture
def interpreted():
    """The kernel modules re-imported with the Triton interpreter on (and restored afterwards)."""
    import qtransformers.kernels.fftconv_triton as fused
    import qtransformers.kernels.spectral as spectral

    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    yield importlib.reload(fused), importlib.reload(spectral)
    mp.undo()
    importlib.reload(fused)
    importlib.reload(spectral)


def within(fast: torch.Tensor, same: torch.Tensor, ref: torch.Tensor) -> bool:
    """err(fast, ref) <= 2 err(same, ref) + ATOL * max|ref| (max abs errors, ref in float64)."""
    err = (fast.double() - ref).abs().max()
    return bool(err <= 2 * (same.double() - ref).abs().max() + ATOL * ref.abs().max())


def conv_case(b, c, kernels, t, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, t, generator=g).to(device), torch.randn(kernels, t, generator=g).to(device)


def check_conv(u, k, dtype, backend="triton"):
    """Forward and both gradients of causal_fftconv(backend) in dtype vs the torch path in dtype, ref in float64."""
    fast = [u.to(dtype).requires_grad_(True), k.clone().requires_grad_(True)]
    same = [u.to(dtype).requires_grad_(True), k.clone().requires_grad_(True)]
    ref = [u.to(dtype).double().requires_grad_(True), k.double().requires_grad_(True)]
    y = causal_fftconv(*fast, backend=backend)
    y_same = causal_fftconv(*same, backend="torch")
    y_ref = causal_fftconv_ref(*ref)
    assert y.dtype == dtype
    assert within(y, y_same, y_ref)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(u.device)
    grads = torch.autograd.grad((y.float() * w).sum(), fast)
    grads_same = torch.autograd.grad((y_same.float() * w).sum(), same)
    grads_ref = torch.autograd.grad((y_ref * w.double()).sum(), ref)
    for a, s, r in zip(grads, grads_same, grads_ref):
        assert within(a, s, r)


@pytest.mark.parametrize(("t", "channels", "kernels"), ((97, 3, 3), (97, 4, 2), (1025, 2, 1)))
def test_fused_kernel_forward_backward_match_reference(interpreted, t, channels, kernels):
    u, k = conv_case(2, channels, kernels, t, seed=t + channels)
    check_conv(u, k, torch.float32)


def test_fused_kernel_4097(interpreted):
    u, k = conv_case(1, 1, 1, 4097, seed=4)
    check_conv(u, k, torch.float32)


def test_fused_kernel_reads_float16(interpreted):
    u, k = conv_case(2, 4, 4, 97, seed=5)
    check_conv(u, k, torch.float16)


@pytest.mark.slow
@pytest.mark.parametrize(("t", "channels", "kernels"), ((1025, 3, 3), (1025, 4, 2), (4097, 4, 2), (16384, 4, 2)))
def test_fused_kernel_larger_grids(interpreted, t, channels, kernels):
    u, k = conv_case(2, channels, kernels, t, seed=t + channels)
    check_conv(u, k, torch.float32)


def test_past_fused_length_uses_cufft_with_fused_multiply(interpreted, monkeypatch):
    fused, _ = interpreted
    monkeypatch.setattr(dispatch, "FUSED_MAX_LEN", 64)
    monkeypatch.setattr(fused, "fftconv_triton", None)  # the fused kernel must not be reached
    u, k = conv_case(2, 8, 2, 97, seed=6)
    check_conv(u, k, torch.float32)


def test_transform_grid(interpreted):
    fused, _ = interpreted
    assert [fused.transform_size(t) for t in (1, 97, 256, 257, 16384)] == [512, 512, 512, 1024, 32768]
    for n in (512, 1024, 32768):
        n1, n2 = fused.factors(n)
        assert n1 * n2 == n and n1 >= 16 and n2 in (n1, 2 * n1)


MIXERS = {"qrh": {"max_len": 1025}, "hyena": {}, "spectral": {}}
SMALLEST = {"qrh": 4, "hyena": 2, "spectral": 2}
"""Smallest width each mixer takes (qrh: one quaternion; the others: an even width for the phase)."""


def check_mixer(fused, monkeypatch, name, t, dim, device="cpu"):
    """Mixer ``name`` on backend "triton" vs "torch" (float32), ref "reference" in float64: output and all grads."""
    launches = []
    launch = fused._launch
    kind = {(False, False): "convolution", (True, False): "correlation", (False, True): "cross-correlation"}
    monkeypatch.setattr(
        fused,
        "_launch",
        lambda *a, **kw: launches.append(kind[kw.get("conj", False), kw.get("cross") is not None]) or launch(*a, **kw),
    )
    torch.manual_seed(0)
    fast = mixers.build(name, dim, causal=True, backend="triton", **MIXERS[name]).to(device)
    same = copy.deepcopy(fast)
    same.backend = "torch"
    ref = copy.deepcopy(fast).double()
    ref.backend = "reference"
    x = torch.randn(1, t, dim, generator=torch.Generator().manual_seed(t)).to(device)
    inputs = [x.clone().requires_grad_(True), x.clone().requires_grad_(True), x.double().requires_grad_(True)]
    outs = [m(i) for m, i in zip((fast, same, ref), inputs)]
    assert within(*outs)
    w = torch.randn(outs[0].shape, generator=torch.Generator().manual_seed(1)).to(device)
    grads = [
        torch.autograd.grad((o * w.to(o.dtype)).sum(), [i, *m.parameters()])
        for o, i, m in zip(outs, inputs, (fast, same, ref))
    ]
    for a, s, r in zip(*grads):
        assert within(a, s, r)
    assert launches == ["convolution", "correlation", "cross-correlation"]  # forward, grad u, grad kernel


@pytest.mark.parametrize(
    ("name", "t"),
    [(name, 97) for name in sorted(MIXERS)]
    + [("hyena", 1025), ("qrh", 1025), pytest.param("spectral", 1025, marks=pytest.mark.slow)],
)
def test_mixers_on_the_fused_kernel_match_reference(interpreted, monkeypatch, name, t):
    check_mixer(interpreted[0], monkeypatch, name, t, SMALLEST[name])


def test_dispatch_on_cpu_keeps_rust_and_refuses_triton_without_interpreter(monkeypatch):
    u, k = conv_case(1, 2, 2, 16, seed=8)
    assert resolve_backend("auto", u) == "rust"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailableError) as info:
        causal_fftconv(u, k, backend="triton")
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(DTypeError) as info:
        causal_fftconv(u.double(), k.double(), backend="triton")
    assert isinstance(info.value, TypeError)


def test_auto_picks_triton_where_dispatch_allows_it(monkeypatch):
    u = torch.empty(1, 2, 16, device="meta")  # a non-CPU tensor, as a CUDA one would be
    monkeypatch.setattr(dispatch, "use_triton", lambda x: True)  # what it answers on CUDA with Triton
    assert resolve_backend("auto", u) == "triton"
    assert resolve_backend("auto", u.double()) == "torch"  # the kernel computes in float32
    monkeypatch.setattr(dispatch, "use_triton", lambda x: False)  # Triton missing or disabled
    assert resolve_backend("auto", u) == "torch"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
@pytest.mark.parametrize("t", (1025, 16384, 20000))  # 20000: past the fused length, cuFFT path
def test_compiled_kernel_on_cuda_matches_reference(t, dtype):
    u, k = conv_case(4, 16, 4, t, seed=t, device="cuda")
    assert resolve_backend("auto", u) == "triton"
    check_conv(u, k, dtype, backend="auto")


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixers_on_the_compiled_kernel_match_reference(monkeypatch, name):
    import qtransformers.kernels.fftconv_triton as fused

    check_mixer(fused, monkeypatch, name, 1025, 64, device="cuda")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ("fp32", "bf16"))
@pytest.mark.parametrize("n", (2048, 32768))
def test_kernel_compiles_for_sm90_without_a_gpu(n, dtype):
    """Ahead-of-time compile (Triton -> PTX -> ptxas cubin) for an H100/H200; checks it builds and fits shared memory."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import qtransformers.kernels.fftconv_triton as fused

    if not isinstance(fused._fftconv_kernel, triton.runtime.JITFunction):
        pytest.skip("TRITON_INTERPRET=1 is set for the whole run: the kernel is interpreted, not compiled")
    n1, n2 = fused.factors(n)
    pointers = ("u_ptr", "v_ptr", "spec_ptr", "f1_ptr", "f2_ptr", "tw_ptr", "scratch_ptr", "y_ptr")
    signature = {p: f"*{dtype}" if p in ("u_ptr", "v_ptr", "y_ptr") else "*fp32" for p in pointers}
    signature |= {a: "i32" for a in ("T", "C", "G", "ROWS")}
    constants = {
        "N1": n1,
        "N2": n2,
        "BR": fused.BLOCK,
        "BK": fused.BLOCK,
        "CONJ": False,
        "CROSS": False,
        "PREC": "tf32x3" if dtype == "fp32" else "tf32",
    }
    signature |= {c: "constexpr" for c in constants}
    compiled = triton.compile(
        ASTSource(fused._fftconv_kernel, signature, constants),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": 8},
    )
    assert compiled.asm["cubin"] and compiled.metadata.shared <= 227 * 1024
