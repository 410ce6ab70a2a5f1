"""QuantumMultiheadAttention(quantum_backend="exact") is an exact drop-in for nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtransformers import QuantumMultiheadAttention

E, H, L, S, N = 16, 4, 5, 7, 3
ATOL = 1e-5

MODULE_CONFIGS = {
    "plain": dict(),
    "batch_first": dict(batch_first=True),
    "no_bias": dict(bias=False, batch_first=True),
    "bias_kv": dict(add_bias_kv=True),
    "zero_attn": dict(add_zero_attn=True, batch_first=True),
    "bias_kv_zero_attn": dict(add_bias_kv=True, add_zero_attn=True),
    "kdim_vdim": dict(kdim=6, vdim=10, batch_first=True),
}
MASKS = [
    "none",
    "attn_bool_2d",
    "attn_float_2d",
    "attn_bool_3d",
    "attn_float_3d",
    "kpm_bool",
    "kpm_float",
    "attn_and_kpm_bool",
    "causal_hint",
]
WEIGHTS = [(True, True), (True, False), (False, True)]


def make_pair(config: dict, seed: int = 0):
    """An nn.MultiheadAttention with random state and a QuantumMultiheadAttention holding the same state."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(E, H, **config)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    ours = QuantumMultiheadAttention(E, H, **config)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def make_inputs(module: nn.MultiheadAttention, batched: bool, self_attention: bool, src: int = S, seed: int = 1):
    """query/key/value in the module's layout; self-attention passes the same tensor three times."""
    g = torch.Generator().manual_seed(seed)

    def shape(length, width):
        if not batched:
            return (length, width)
        return (N, length, width) if module.batch_first else (length, N, width)

    query = torch.randn(shape(L, E), generator=g)
    if self_attention:
        return query, query, query
    return query, torch.randn(shape(src, module.kdim), generator=g), torch.randn(shape(src, module.vdim), generator=g)


def make_masks(kind: str, batched: bool, src: int, seed: int = 2):
    """(attn_mask, key_padding_mask, is_causal) for a mask case; no query row is fully masked."""
    g = torch.Generator().manual_seed(seed)
    bsz = N if batched else 1
    attn = kpm = None
    is_causal = False

    def bool_mask(*shape):
        m = torch.rand(*shape, generator=g) < 0.4
        m[..., 0] = False  # keep key 0 visible so no row is fully masked
        return m

    def float_mask(*shape):
        return torch.randn(*shape, generator=g).masked_fill(bool_mask(*shape), float("-inf"))

    if kind == "attn_bool_2d":
        attn = bool_mask(L, src)
    elif kind == "attn_float_2d":
        attn = float_mask(L, src)
    elif kind == "attn_bool_3d":
        attn = bool_mask(bsz * H, L, src)
    elif kind == "attn_float_3d":
        attn = float_mask(bsz * H, L, src)
    elif kind == "kpm_bool":
        kpm = bool_mask(bsz, src)
    elif kind == "kpm_float":
        kpm = float_mask(bsz, src)
    elif kind == "attn_and_kpm_bool":
        attn, kpm = bool_mask(L, src), bool_mask(bsz, src)
    elif kind == "causal_hint":
        attn = torch.ones(L, src, dtype=torch.bool).triu(1)
        is_causal = True
    if not batched and kpm is not None:
        kpm = kpm[0]
    return attn, kpm, is_causal


def run(module, inputs, masks, need_weights, average):
    attn, kpm, is_causal = masks
    return module(
        *inputs,
        key_padding_mask=kpm,
        need_weights=need_weights,
        attn_mask=attn,
        average_attn_weights=average,
        is_causal=is_causal,
    )


def assert_close(a, b):
    if a is None or b is None:
        assert a is None and b is None
        return
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=ATOL, rtol=ATOL)


# Self-attention needs kdim == vdim == embed_dim, so kdim/vdim configs run cross-attention only.
CONFIG_KINDS = [
    (c, k) for c in MODULE_CONFIGS for k in ("self", "cross") if not (k == "self" and "kdim" in MODULE_CONFIGS[c])
]


@pytest.mark.parametrize("config_name,kind", CONFIG_KINDS)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("need_weights,average", WEIGHTS, ids=["avg_weights", "head_weights", "no_weights"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_parity(config_name, kind, batched, mask, need_weights, average, mode):
    config = MODULE_CONFIGS[config_name]
    ref, ours = make_pair(config)
    for m in (ref, ours):
        m.train(mode == "train")
    src = L if mask == "causal_hint" or kind == "self" else S
    inputs = make_inputs(ref, batched, kind == "self", src)
    masks = make_masks(mask, batched, src)
    expected = run(ref, inputs, masks, need_weights, average)
    got = run(ours, inputs, masks, need_weights, average)
    assert_close(got[0], expected[0])
    assert_close(got[1], expected[1])


@pytest.mark.parametrize("config_name", list(MODULE_CONFIGS))
@pytest.mark.parametrize("mask", ["none", "attn_float_3d", "attn_and_kpm_bool", "causal_hint"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_gradient_parity(config_name, mask, need_weights):
    config = MODULE_CONFIGS[config_name]
    ref, ours = make_pair(config)
    src = L if mask == "causal_hint" else S
    grads = []
    for module in (ref, ours):
        inputs = [t.clone().requires_grad_(True) for t in make_inputs(ref, True, False, src)]
        masks = make_masks(mask, True, src)
        out, weights = run(module, inputs, masks, need_weights, True)
        loss = out.square().sum() + (weights.square().sum() if weights is not None else 0.0)
        loss.backward()
        grads.append([t.grad for t in inputs] + [p.grad for p in module.parameters()])
    for a, b in zip(*grads):
        assert_close(b, a)


def test_fast_path_under_no_grad_matches():
    """In eval mode without grad, nn.MultiheadAttention takes its fused kernel; outputs still agree."""
    ref, ours = make_pair(dict(batch_first=True))
    ref.eval(), ours.eval()
    x = torch.randn(N, L, E)
    with torch.no_grad():
        for need_weights in (True, False):
            assert_close(ours(x, x, x, need_weights=need_weights)[0], ref(x, x, x, need_weights=need_weights)[0])


def test_state_dict_round_trip_both_ways():
    for config in MODULE_CONFIGS.values():
        ref, ours = make_pair(config)
        assert list(ref.state_dict()) == list(ours.state_dict())
        fresh = nn.MultiheadAttention(E, H, **config)
        fresh.load_state_dict(ours.state_dict())
        for (k, a), (_, b) in zip(fresh.state_dict().items(), ref.state_dict().items()):
            assert torch.equal(a, b), k


def test_constructor_signature_matches_torch():
    import inspect

    ref = inspect.signature(nn.MultiheadAttention.__init__).parameters
    ours = inspect.signature(QuantumMultiheadAttention.__init__).parameters
    positional = [p for p in ours.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert [p.name for p in positional] == list(ref)
    for p in positional:
        assert p.default == ref[p.name].default, p.name
    assert "quantum_backend" in ours and ours["quantum_backend"].kind is inspect.Parameter.KEYWORD_ONLY
    forward_ref = inspect.signature(nn.MultiheadAttention.forward).parameters
    forward_ours = inspect.signature(QuantumMultiheadAttention.forward).parameters
    assert [(p.name, p.default) for p in forward_ours.values()] == [(p.name, p.default) for p in forward_ref.values()]


def test_default_initialisation_matches_torch():
    torch.manual_seed(5)
    ref = nn.MultiheadAttention(E, H, add_bias_kv=True, kdim=6, vdim=10)
    torch.manual_seed(5)
    ours = QuantumMultiheadAttention(E, H, add_bias_kv=True, kdim=6, vdim=10)
    for (name, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), name


def test_from_torch_keeps_state_mode_and_dtype():
    mha = nn.MultiheadAttention(E, H, dropout=0.1, kdim=6, vdim=10, batch_first=True, dtype=torch.float64).eval()
    converted = QuantumMultiheadAttention.from_torch(mha)
    assert not converted.training and converted.dropout == 0.1 and converted.batch_first
    assert converted.in_proj_bias.dtype == torch.float64
    q = torch.randn(2, L, E, dtype=torch.float64)
    k = torch.randn(2, S, 6, dtype=torch.float64)
    v = torch.randn(2, S, 10, dtype=torch.float64)
    assert_close(converted(q, k, v)[0], mha(q, k, v)[0])


def _copy_with_quantum_attention(layer: nn.Module) -> nn.Module:
    import copy

    from qtransformers import convert_attention

    clone = convert_attention(copy.deepcopy(layer))
    assert not any(type(m) is nn.MultiheadAttention for m in clone.modules())
    return clone


@pytest.mark.parametrize("train", [True, False])
def test_inside_transformer_encoder_layer(train):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=32, dropout=0.0, batch_first=True)
    ours = _copy_with_quantum_attention(layer)
    for m in (layer, ours):
        m.train(train)
    x = torch.randn(N, L, E)
    mask = nn.Transformer.generate_square_subsequent_mask(L)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, -2:] = True
    assert_close(ours(x, src_mask=mask, is_causal=True), layer(x, src_mask=mask, is_causal=True))
    assert_close(ours(x, src_key_padding_mask=kpm), layer(x, src_key_padding_mask=kpm))


def test_inside_transformer_decoder_layer():
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(E, H, dim_feedforward=32, dropout=0.0)
    ours = _copy_with_quantum_attention(layer)
    tgt, memory = torch.randn(L, N, E), torch.randn(S, N, E)
    mask = nn.Transformer.generate_square_subsequent_mask(L)
    assert_close(
        ours(tgt, memory, tgt_mask=mask, tgt_is_causal=True), layer(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    )


def test_exact_path_calls_sdpa_when_no_weights(monkeypatch):
    import torch.nn.functional as F

    calls = []
    original = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    _, ours = make_pair(dict(batch_first=True))
    x = torch.randn(N, L, E)
    ours(x, x, x, need_weights=False)
    assert calls, "exact path without weights must call F.scaled_dot_product_attention"
    calls.clear()
    ours(x, x, x, need_weights=True)
    assert not calls


@pytest.mark.parametrize(
    "config,kwargs",
    [
        (dict(batch_first=True), dict(need_weights=False)),
        (dict(add_bias_kv=True, add_zero_attn=True), dict(need_weights=True, average_attn_weights=False)),
    ],
)
def test_torch_compile_fullgraph(config, kwargs):
    ref, ours = make_pair(config)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    inputs = make_inputs(ref, True, True, L)
    mask = torch.ones(L, L, dtype=torch.bool).triu(1)
    expected = ours(*inputs, attn_mask=mask, **kwargs)
    got = compiled(*inputs, attn_mask=mask, **kwargs)
    assert_close(got[0], expected[0])
    assert_close(got[1], expected[1])


def test_torch_compile_inductor_default_backend():
    _, ours = make_pair(dict(batch_first=True))
    compiled = torch.compile(ours, fullgraph=True)
    x = torch.randn(N, L, E)
    assert_close(compiled(x, x, x, need_weights=False)[0], ours(x, x, x, need_weights=False)[0])


def test_dropout_is_applied_in_train_mode_only():
    _, ours = make_pair(dict(batch_first=True, dropout=0.5))
    x = torch.randn(N, L, E)
    ours.eval()
    a, b = ours(x, x, x)[0], ours(x, x, x)[0]
    assert torch.equal(a, b)
    ours.train()
    torch.manual_seed(0)
    c = ours(x, x, x, need_weights=False)[0]
    assert not torch.allclose(c, a)


def test_fully_masked_row_gives_zero_weights_not_nan():
    _, ours = make_pair(dict(batch_first=True))
    x = torch.randn(1, L, E)
    mask = torch.zeros(L, L, dtype=torch.bool)
    mask[2] = True
    out, weights = ours(x, x, x, attn_mask=mask)
    assert torch.isfinite(out).all()
    assert torch.equal(weights[0, 2], torch.zeros(L))


def test_dropout_in_train_mode_matches_torch_draw_for_draw():
    """Same global seed -> the same dropout draws as nn.MultiheadAttention: equal outputs and (dropped) weights."""
    ref, ours = make_pair(dict(batch_first=True, dropout=0.5, add_bias_kv=True))
    inputs = make_inputs(ref, True, False)
    for need_weights, average in WEIGHTS:
        results = []
        for module in (ref, ours):
            torch.manual_seed(7)
            results.append(module(*inputs, need_weights=need_weights, average_attn_weights=average))
        assert_close(results[1][0], results[0][0])
        assert_close(results[1][1], results[0][1])


def test_dropout_statistics_mean_is_the_eval_output():
    """Inverted dropout is unbiased: the mean of train-mode outputs is the eval output (z-test, 600 draws)."""
    _, ours = make_pair(dict(batch_first=True, dropout=0.3))
    x = make_inputs(ours, True, True)[0]
    exact = ours.eval()(x, x, x, need_weights=False)[0]
    ours.train()
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([ours(x, x, x, need_weights=need)[0] for need in (True, False) for _ in range(300)])
    z = (draws.mean(0) - exact) / (draws.std(0) / draws.size(0) ** 0.5 + 1e-12)
    assert z.abs().max() < 5.5
    assert (draws.std(0) > 1e-3).all()  # dropout really acts


EDGE_SIZES = [(1, 1, 1), (1, 97, 1), (2, 1, 97), (1, 97, 97), (3, 5, 7)]  # (N, L, S): one row, one key, odd sizes


EDGE_MASKS = [
    "none",
    "attn_bool_3d",
    "attn_float_2d",
    "attn_and_kpm_bool",
    "kpm_float",
    "causal_hint",
    "causal_float_hint",
    "causal_and_kpm",
]
EDGE_CASES = [(*size, m) for size in EDGE_SIZES for m in EDGE_MASKS if size[1] == size[2] or not m.startswith("causal")]


@pytest.mark.parametrize("n,tgt,src,mask", EDGE_CASES)
@pytest.mark.parametrize("config_name", ["batch_first", "kdim_vdim", "bias_kv_zero_attn"])
def test_edge_sizes_and_causal_hints_match_torch(n, tgt, src, mask, config_name):
    config = MODULE_CONFIGS[config_name]
    ref, ours = make_pair(config)
    g = torch.Generator().manual_seed(3)
    bf = config.get("batch_first", False)
    shape = lambda length, width: (n, length, width) if bf else (length, n, width)  # noqa: E731
    q = torch.randn(shape(tgt, E), generator=g)
    k, v = torch.randn(shape(src, ref.kdim), generator=g), torch.randn(shape(src, ref.vdim), generator=g)

    def hidden(*size):  # boolean "masked out", key 0 always visible
        m = torch.rand(*size, generator=g) < 0.4
        m[..., 0] = False
        return m

    is_causal = mask.startswith("causal")
    attn = {
        "attn_bool_3d": lambda: hidden(n * H, tgt, src),
        "attn_float_2d": lambda: torch.randn(tgt, src, generator=g),
        "attn_and_kpm_bool": lambda: hidden(tgt, src),
        "causal_hint": lambda: torch.ones(tgt, src, dtype=torch.bool).triu(1),
        "causal_float_hint": lambda: nn.Transformer.generate_square_subsequent_mask(tgt),
        "causal_and_kpm": lambda: torch.ones(tgt, src, dtype=torch.bool).triu(1),
    }.get(mask, lambda: None)()
    kpm = None
    if mask in ("attn_and_kpm_bool", "causal_and_kpm"):
        kpm = hidden(n, src)
    elif mask == "kpm_float":
        kpm = torch.randn(n, src, generator=g).masked_fill(hidden(n, src), float("-inf"))
    for need_weights, average in WEIGHTS:
        masks = (attn, kpm, is_causal)
        expected = run(ref, (q, k, v), masks, need_weights, average)
        got = run(ours, (q, k, v), masks, need_weights, average)
        assert_close(got[0], expected[0])
        assert_close(got[1], expected[1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config_name", ["plain", "kdim_vdim", "bias_kv_zero_attn"])
@pytest.mark.parametrize("mask", ["none", "attn_float_2d", "kpm_bool", "causal_hint"])
def test_half_precision_error_at_most_twice_torchs(dtype, config_name, mask):
    """bf16/fp16: err(ours, float64) <= 2 err(torch, float64) + atol, as flash-attention tests its kernels."""
    import copy

    ref64, _ = make_pair(MODULE_CONFIGS[config_name])
    ref64 = ref64.double()
    ref_low = copy.deepcopy(ref64).to(dtype)
    ours = QuantumMultiheadAttention(E, H, dtype=dtype, **MODULE_CONFIGS[config_name])
    ours.load_state_dict(ref_low.state_dict())
    src = L if mask == "causal_hint" else 97
    inputs = [t.double() for t in make_inputs(ref64, True, False, src)]
    attn, kpm, is_causal = make_masks(mask, True, src)
    if attn is not None and mask != "causal_hint":
        attn = attn.double()
    for need_weights, average in WEIGHTS:

        def call(module, dt):
            cast_attn = attn.to(dt) if attn is not None and attn.is_floating_point() else attn
            return run(module, [t.to(dt) for t in inputs], (cast_attn, kpm, is_causal), need_weights, average)

        exact, theirs, got = call(ref64, torch.float64), call(ref_low, dtype), call(ours, dtype)
        for i in range(2 if need_weights else 1):
            assert got[i].dtype == dtype
            err_torch = (theirs[i].double() - exact[i]).abs().max()
            err_ours = (got[i].double() - exact[i]).abs().max()
            assert err_ours <= 2 * err_torch + 1e-3, (i, err_ours.item(), err_torch.item())
