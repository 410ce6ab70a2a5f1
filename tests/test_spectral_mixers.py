"""Spectral mixers: leakage over every registered causal mixer, position, ablation options, blocks, compile."""

from __future__ import annotations

import pytest
import torch

from qtransformers import QRHLayer, QRHTransformerBlock, mixers
from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional import energy_ratio

DIM = 16


def fresh(name: str, causal: bool) -> torch.nn.Module:
    """Mixer ``name`` built under seed 0: same weights and, for sampling mixers, the same shot stream."""
    torch.manual_seed(0)
    return mixers.build(name, DIM, causal=causal)


def x_of(b, t, d, seed=0, dtype=torch.float32):
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("name", mixers.available(causal=True))
def test_causal_mixer_does_not_leak_future_tokens(name):
    x = x_of(2, 37, DIM, dtype=torch.float64)
    for t0 in (0, 17, 36):
        x2 = x.clone()
        x2[:, t0] += torch.randn(DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(t0))
        with torch.no_grad():
            y, y2 = fresh(name, True).double().eval()(x), fresh(name, True).double().eval()(x2)
        if t0:  # positions before t0 must not see the change
            assert (y[:, :t0] - y2[:, :t0]).abs().max() < 1e-6
        assert (y[:, t0:] - y2[:, t0:]).abs().max() > 1e-4  # the change is seen from t0 on


def test_required_mixers_are_registered():
    assert {"attention", "qrh", "fnet", "hyena", "spectral"} <= set(mixers.available())
    assert "fnet" not in mixers.available(causal=True)
    with pytest.raises(InvalidArgumentError, match="fnet"):
        mixers.build("fnet", DIM, causal=True)


def test_qrh_needs_dim_divisible_by_four():
    with pytest.raises(InvalidArgumentError, match="divisible by 4"):
        mixers.build("qrh", 30, causal=True)


@pytest.mark.parametrize("causal", (False, True))
def test_position_breaks_shift_invariance(causal):
    x = x_of(1, 40, DIM, seed=1)
    shift = 5

    def gap(position):
        torch.manual_seed(0)
        m = mixers.build("qrh", DIM, causal=causal, position=position).eval()
        with torch.no_grad():
            if causal:  # zero-padded shift: compare the positions both outputs cover
                xs = torch.cat([torch.zeros(1, shift, DIM), x[:, :-shift]], dim=1)
                ys, y = m(xs), m(x)
                bias_only = m(torch.zeros_like(x))
                return ((ys[:, shift:] - bias_only[:, shift:]) - (y[:, :-shift] - bias_only[:, :-shift])).abs().max()
            return (m(x.roll(shift, dims=1)) - m(x).roll(shift, dims=1)).abs().max()

    assert gap(position=False) < 1e-5  # a plain (circular / causal) convolution is shift-equivariant
    assert gap(position=True) > 1e-2


def test_qrh_ablation_options_keep_parameter_count():
    def count(**opts):
        return sum(p.numel() for p in mixers.build("qrh", 64, causal=True, **opts).parameters())

    full = count()
    x = x_of(2, 24, 64)
    for opts in ({"quaternion": False}, {"spectral_filter": False}, {"rotation": False}):
        assert abs(count(**opts) - full) / full < 0.02, opts
        torch.manual_seed(0)
        m = mixers.build("qrh", 64, causal=True, **opts)
        y = m(x)
        y.square().mean().backward()
        assert y.shape == x.shape and all(p.grad is not None for p in m.parameters())


def test_qrh_layer_learns_alpha_and_rotations():
    layer = QRHLayer(4, causal=True)
    assert isinstance(layer.alpha, torch.nn.Parameter) and layer.alpha.shape == (4,)
    with torch.no_grad():
        layer.q_left.add_(0.1 * torch.randn(4, 4))
    layer(x_of(2, 20, 16)).square().mean().backward()
    for p in (layer.alpha, layer.q_left, layer.q_right):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_qrh_layer_is_identity_when_projections_are_and_alpha_is_zero():
    layer = QRHLayer(4, alpha=0.0, causal=False, position=False)
    with torch.no_grad():
        for lin in (layer.in_proj, layer.out_proj):
            lin.weight.copy_(torch.eye(16))
            lin.bias.zero_()
    x = x_of(2, 33, 16)
    assert torch.allclose(layer(x), x, atol=1e-6)
    layer.alpha.data.fill_(1.5)
    assert abs(energy_ratio(x, layer(x)) - 1) < 1e-5  # unitary mixing, no rescaling


def test_fractal_init_sets_alpha_from_the_batch():
    torch.manual_seed(0)
    layer = QRHLayer(4, alpha=1.0, fractal_init=True)
    rough = x_of(2, 256, 16)  # white noise: spectral slope ~0, D_f near 2
    layer(rough)
    assert torch.all(layer.alpha > 1.5) and torch.all(layer.alpha <= 2.0)
    before = layer.alpha.detach().clone()
    layer(rough)
    assert torch.equal(layer.alpha.detach(), before)  # only once


def test_fractal_init_does_not_run_again_after_loading_a_checkpoint():
    """A fresh layer loaded from a trained one keeps the loaded α on its first forward (the flag is saved)."""
    torch.manual_seed(0)
    trained = QRHLayer(4, alpha=1.0, fractal_init=True)
    trained(x_of(2, 256, 16))
    with torch.no_grad():
        trained.alpha.add_(0.25)  # stands for training after the initialisation
    state = trained.state_dict()
    assert state["fractal_done"].item() is True
    smooth = x_of(2, 256, 16, seed=3).cumsum(1)  # a different batch: re-initialising would change α
    torch.manual_seed(1)
    fresh_layer = QRHLayer(4, alpha=1.0, fractal_init=True)
    fresh_layer.load_state_dict(state)
    fresh_layer(smooth)
    assert torch.equal(fresh_layer.alpha.detach(), trained.alpha.detach())
    # a checkpoint saved before the flag existed has no "fractal_done": it loads as initialised, strictly
    old = {k: v for k, v in state.items() if k != "fractal_done"}
    older_layer = QRHLayer(4, alpha=1.0, fractal_init=True)
    older_layer.load_state_dict(old)
    older_layer(smooth)
    assert torch.equal(older_layer.alpha.detach(), trained.alpha.detach())
    # an untouched layer still initialises on its first forward
    new_layer = QRHLayer(4, alpha=1.0, fractal_init=True)
    assert new_layer.state_dict()["fractal_done"].item() is False
    new_layer(smooth)
    assert not torch.equal(new_layer.alpha.detach(), torch.ones(4)) and new_layer.fractal_done.item()


def test_qrh_max_len_bounds_the_causal_layer_only():
    layer = QRHLayer(4, causal=True, max_len=16)
    assert layer(x_of(1, 16, 16)).shape == (1, 16, 16)
    with pytest.raises(ShapeError, match="max_len 16"):
        layer(x_of(1, 17, 16))
    assert QRHLayer(4, causal=False, max_len=16)(x_of(1, 40, 16)).shape == (1, 40, 16)
    with pytest.raises(InvalidArgumentError, match="max_len"):
        QRHLayer(4, causal=True, max_len=0)


@pytest.mark.parametrize("mode", ("attention", "ffn", "hybrid"))
def test_qrh_block_modes(mode):
    block = QRHTransformerBlock(4, mode=mode, causal=True, num_heads=2)
    x = x_of(2, 12, 16).requires_grad_(True)
    y = block(x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None
    n_qrh = sum(isinstance(m, QRHLayer) for m in block.modules())
    assert n_qrh == (2 if mode == "hybrid" else 1)
    with pytest.raises(ShapeError):
        block(x_of(2, 12, 15))


def test_block_rejects_unknown_mode():
    with pytest.raises(InvalidArgumentError, match="mode"):
        QRHTransformerBlock(4, mode="moe")


@pytest.mark.parametrize("name", mixers.available())
def test_every_mixer_compiles(name):
    causal = mixers.supports_causal(name)

    mixer = fresh(name, causal)
    x = x_of(2, 24, DIM).requires_grad_(True)
    compiled = torch.compile(mixer)
    y = compiled(x)
    assert torch.allclose(y, fresh(name, causal)(x), atol=1e-4)
    y.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in mixer.parameters())


@pytest.mark.parametrize("group", (2, 4))
def test_absolute_phase_layouts_agree_preserve_norm_and_gradcheck(group):
    from qtransformers.functional import absolute_phase

    x = x_of(2, 9, 8, dtype=torch.float64)
    y = absolute_phase(x, group=group)
    assert torch.allclose(
        absolute_phase(x.transpose(1, 2).contiguous(), group=group, channels_first=True), y.transpose(1, 2)
    )
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1))
    assert torch.allclose(y[:, 0], x[:, 0]) and not torch.allclose(y[:, 1:], x[:, 1:])
    if group == 4:  # pairs (w, x) and (y, z) of a quaternion turn alike
        pairs = torch.view_as_complex(y.view(2, 9, 4, 2)) / torch.view_as_complex(x.view(2, 9, 4, 2))
        assert torch.allclose(pairs[:, :, 0::2], pairs[:, :, 1::2])
    assert torch.autograd.gradcheck(lambda a: absolute_phase(a, group=group), (x.clone().requires_grad_(True),))


@pytest.mark.parametrize("group", (2, 4))
@pytest.mark.parametrize("channels_first", (False, True))
def test_absolute_phase_equals_the_complex_reference(group, channels_first):
    from qtransformers.functional import absolute_phase

    b, t, d = 2, 97, 12
    x = x_of(b, t, d, dtype=torch.float64)
    # pair j of token p times exp(i p θ_k), θ_k = 10000^(-k/(d/group)), k = j // (group/2)
    theta = 10000.0 ** (-torch.arange(d // group, dtype=torch.float64) / (d // group))
    angle = torch.arange(t, dtype=torch.float64)[:, None] * theta.repeat_interleave(group // 2)[None, :]
    want = torch.view_as_real(
        torch.view_as_complex(x.view(b, t, d // 2, 2)) * torch.polar(torch.ones(()).double(), angle)
    )
    want = want.reshape(b, t, d)
    arg = x.transpose(1, 2).contiguous() if channels_first else x
    got = absolute_phase(arg, group=group, channels_first=channels_first)
    got = got.transpose(1, 2) if channels_first else got
    assert torch.allclose(got, want, atol=1e-4)  # angles are taken in float32
    half = absolute_phase(arg.bfloat16(), group=group, channels_first=channels_first)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(
        half.float(), absolute_phase(arg.float(), group=group, channels_first=channels_first), atol=0.05
    )
    strided = absolute_phase(
        arg.transpose(1, 2).contiguous().transpose(1, 2), group=group, channels_first=channels_first
    )
    assert torch.equal(strided, absolute_phase(arg, group=group, channels_first=channels_first))


def test_position_rotations_save_no_tensor_for_backward():
    # the cos/sin tables (as large as x at long context) are recomputed in the backward, not held
    from qtransformers.functional import absolute_phase, rope

    x = x_of(2, 8, 33, dtype=torch.float64).requires_grad_(True)
    q = torch.randn(2, 3, 33, 8, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        y, r = absolute_phase(x, group=4, channels_first=True), rope(q, offset=5)
    assert saved == [] and y.grad_fn is not None and r.grad_fn is not None
    assert torch.autograd.gradcheck(lambda a: absolute_phase(a, group=4, channels_first=True), (x,))
    assert torch.autograd.gradcheck(lambda a: rope(a, offset=5), (q,))
    # bfloat16 and float32 gradients: the inverse rotation of the same tables
    for dtype in (torch.bfloat16, torch.float32):
        a = x.detach().to(dtype).requires_grad_(True)
        absolute_phase(a, group=4, channels_first=True).backward(y.detach().to(dtype))
        assert a.grad is not None and a.grad.dtype == dtype
        assert torch.allclose(a.grad.double(), x.detach(), atol=0.1 if dtype == torch.bfloat16 else 1e-4)


@pytest.mark.parametrize("name", mixers.available())
def test_every_mixer_runs_in_bfloat16_close_to_float32(name):
    causal = mixers.supports_causal(name)

    x = x_of(2, 97, DIM)
    with torch.no_grad():
        ref = fresh(name, causal)(x)
        y = fresh(name, causal).to(torch.bfloat16)(x.bfloat16())
    assert y.dtype == torch.bfloat16
    assert (y.float() - ref).norm() / ref.norm() < 0.05


def test_spectral_mixer_matches_a_direct_causal_sum():
    """The spectral mixer against its definition, written as loops over lags: y_t = W_o[(Σ_b g_tb Σ_{s<=t}
    h_b(t-s) v_s) ⊙ σ(u_t)] + b_o, with v, u from the input projection and g_t = σ(W_g x_t)."""
    torch.manual_seed(0)
    b, t, d = 2, 13, 6
    mixer = mixers.build("spectral", d, causal=True, position=False, bands=3).double()
    x = torch.randn(b, t, d, dtype=torch.float64)
    v, u = mixer.in_proj(x).chunk(2, dim=-1)
    lag = torch.arange(t, dtype=torch.float64)
    angle = mixer.omega[..., None] * lag + mixer.phase[..., None]  # h_bd(j) = r cos(ω j + φ) e^{-j / τ_b}
    h = mixer.log_magnitude.exp()[..., None] * angle.cos() * torch.exp(-lag / mixer.tau[:, None, None])
    gates = torch.sigmoid(mixer.band_gate(x))  # (B, T, bands)
    mixed = torch.zeros(b, t, d, dtype=torch.float64)
    for i in range(t):
        for lag in range(i + 1):
            mixed[:, i] += torch.einsum("bs,sd,bd->bd", gates[:, i], h[:, :, lag], v[:, i - lag])
    expected = mixer.out_proj(mixed * torch.sigmoid(u))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-9, atol=1e-9)
