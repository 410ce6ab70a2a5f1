"""The lsh estimator as a backend: quantum_attention, QuantumMultiheadAttention, the quantum mixer, ByteLM, HF.

With a tail budget at least the number of keys, the estimator enumerates every key and is exact,
so every mask kind is checked against exact attention; with a small budget, changing future
tokens leaves past outputs bit-for-bit unchanged and outputs do not depend on how many tokens
follow (prefix consistency). Options that belong to the shot estimators raise.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from qtransformers import QTransformersError, QuantumMultiheadAttention
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional import lsh_attention, quantum_attention
from qtransformers.models import ByteLM, ByteLMConfig

T, CUT, DIM = 37, 15, 32


def _qkv(b=2, h=3, length=T, e=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, length, e, generator=g) for _ in range(3)]


def test_quantum_attention_lsh_is_lsh_attention_with_budget_num_samples():
    q, k, v = _qkv()
    got = quantum_attention(
        q, k, v, is_causal=True, backend="lsh", num_samples=5, tables=4, generator=torch.Generator().manual_seed(2)
    )
    want = lsh_attention(q, k, v, is_causal=True, budget=5, tables=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    "bad",
    [
        dict(control_variate=True),
        dict(adaptive=True),
        dict(top_k=2),
        dict(need_weights=True),
        dict(dropout_p=0.1),
        dict(key_order="value"),
        dict(cv_kind="favor"),
        dict(bitz=8),
    ],
)
def test_lsh_refuses_the_shot_estimators_options(bad):
    q, k, v = _qkv()
    with pytest.raises(InvalidArgumentError, match=next(iter(bad))):
        quantum_attention(q, k, v, backend="lsh", num_samples=4, **bad)


def test_lsh_options_with_another_backend_raise_and_gradients_are_refused():
    q, k, v = _qkv()
    with pytest.raises(InvalidArgumentError, match="backend='lsh' only"):
        quantum_attention(q, k, v, backend="stratified", tables=4)
    with pytest.raises(InvalidArgumentError, match="no gradient"):
        quantum_attention(q.requires_grad_(), k, v, backend="lsh")


def _module_masks(kind: str, b: int, length: int) -> dict:
    causal = nn.Transformer.generate_square_subsequent_mask(length)  # float, -inf above the diagonal
    padding = torch.zeros(b, length, dtype=torch.bool)
    padding[0, -5:] = True  # the first sequence's last 5 keys are padding
    random_bool = torch.rand(length, length, generator=torch.Generator().manual_seed(9)) < 0.3
    random_bool.fill_diagonal_(False)  # every row keeps a key
    bias = torch.randn(length, length, generator=torch.Generator().manual_seed(8)).masked_fill(random_bool, -torch.inf)
    return {
        "none": {},
        "is_causal": dict(attn_mask=causal.isinf(), is_causal=True),
        "key_padding": dict(key_padding_mask=padding),
        "bool": dict(attn_mask=random_bool),
        "float": dict(attn_mask=bias),
        "causal+padding": dict(attn_mask=causal, key_padding_mask=padding),
    }[kind]


@pytest.mark.parametrize("kind", ["none", "is_causal", "key_padding", "bool", "float", "causal+padding"])
def test_qmha_lsh_with_a_budget_covering_every_key_is_exact_under_every_mask(kind):
    torch.manual_seed(0)
    exact = QuantumMultiheadAttention(DIM, 4, batch_first=True, quantum_backend="exact")
    lsh = QuantumMultiheadAttention(DIM, 4, batch_first=True, quantum_backend="lsh", num_samples=T, seed=1)
    lsh.load_state_dict(exact.state_dict())
    x = torch.randn(2, T, DIM, generator=torch.Generator().manual_seed(3))
    masking = _module_masks(kind, 2, T)
    with torch.no_grad():
        want = exact(x, x, x, need_weights=False, **masking)[0]
        got, weights = lsh(x, x, x, **masking)  # need_weights defaults to True: lsh returns no weights
    assert weights is None
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), f"{kind}: {(got - want).abs().max():.2e}"


def _causal_qmha_run(kind: str):
    """(run(x, t=None) -> QMHA lsh output over x[:, :t] under a causal mask of the given kind, input x)."""
    torch.manual_seed(0)
    mha = QuantumMultiheadAttention(DIM, 4, batch_first=True, quantum_backend="lsh", num_samples=3, seed=3)
    mha.quantum_config.options.update(tables=2, bits=2, window=2, sinks=1)

    def run(inp: torch.Tensor, t: int = T) -> torch.Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(t)  # float, -inf above the diagonal
        masking = {
            "is_causal": dict(attn_mask=causal.isinf(), is_causal=True),
            "bool": dict(attn_mask=causal.isinf()),
            "float": dict(attn_mask=causal),
        }[kind]
        mha.generator.manual_seed(3)
        with torch.no_grad():
            return mha(inp[:, :t], inp[:, :t], inp[:, :t], need_weights=False, **masking)[0]

    return run, torch.randn(2, T, DIM, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("kind", ["is_causal", "bool", "float"])
def test_qmha_lsh_future_tokens_never_change_past_outputs(kind):
    run, x = _causal_qmha_run(kind)
    y = x.clone()
    y[:, CUT + 1 :] = torch.randn(2, T - CUT - 1, DIM) * 3
    a, b = run(x), run(y)
    assert torch.equal(a[:, : CUT + 1], b[:, : CUT + 1]), "a future token changed a past output"
    assert not torch.equal(a, b)


@pytest.mark.parametrize("kind", ["is_causal", "bool", "float"])
def test_qmha_lsh_is_prefix_consistent(kind):
    """The output before t is the same when the input stops at t, up to float32 rounding of the projections
    on a shorter input (the exact backend shows the same ~1e-7)."""
    run, x = _causal_qmha_run(kind)
    full = run(x)
    for t in (1, 2, CUT, T - 1):
        gap = float((run(x, t) - full[:, :t]).abs().max() / full.abs().max())
        assert gap <= 1e-5, f"outputs before t={t} change by {gap:.1e} when the input stops at t"


def test_functional_lsh_is_bit_for_bit_prefix_consistent_and_leak_free():
    q, k, v = _qkv()
    options = dict(is_causal=True, backend="lsh", num_samples=3, tables=2, bits=2, window=2, sinks=1)
    full = quantum_attention(q, k, v, generator=torch.Generator().manual_seed(1), **options)
    for t in (1, 2, CUT, T - 1):
        cut = quantum_attention(
            q[:, :, :t], k[:, :, :t], v[:, :, :t], generator=torch.Generator().manual_seed(1), **options
        )
        assert torch.equal(cut, full[:, :, :t]), f"outputs before t={t} change when the input stops at t"
    later = [x.clone() for x in (q, k, v)]
    for x in later:
        x[:, :, CUT + 1 :] = torch.randn_like(x[:, :, CUT + 1 :]) * 3
    changed = quantum_attention(*later, generator=torch.Generator().manual_seed(1), **options)
    assert torch.equal(changed[:, :, : CUT + 1], full[:, :, : CUT + 1]) and not torch.equal(changed, full)


def test_qmha_lsh_error_shrinks_with_the_budget_and_vanishes_when_it_covers_every_key():
    torch.manual_seed(0)
    exact = QuantumMultiheadAttention(DIM, 4, batch_first=True, quantum_backend="exact")
    x = torch.randn(1, 200, DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = exact(x, x, x)[0]
    errors = []
    for budget in (4, 64, 200):
        lsh = QuantumMultiheadAttention(DIM, 4, batch_first=True, quantum_backend="lsh", num_samples=budget, seed=0)
        lsh.load_state_dict(exact.state_dict())
        with torch.no_grad():
            got = lsh(x, x, x)[0]
        errors.append(float((got - want).norm() / want.norm()))
    assert errors[0] > errors[1] > 0.0 and errors[2] < 1e-5, errors


def _lsh_lm(max_seq_len: int = T) -> ByteLM:
    torch.manual_seed(0)
    options = dict(backend="lsh", num_samples=3, num_heads=4, backend_options=dict(tables=2, bits=2, window=2))
    return ByteLM(ByteLMConfig(mixer="quantum", dim=DIM, layers=2, max_seq_len=max_seq_len, mixer_options=options))


def _reseeded(model: ByteLM, tokens: torch.Tensor) -> torch.Tensor:
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        return twin(tokens)


def test_causal_bytelm_over_lsh_attention_has_no_leakage_and_is_prefix_consistent():
    model = _lsh_lm()
    tokens = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(6))
    changed = tokens.clone()
    changed[:, CUT + 1 :] = torch.randint(0, 256, (2, T - CUT - 1), generator=torch.Generator().manual_seed(7))
    full = _reseeded(model, tokens)
    assert torch.equal(full[:, : CUT + 1], _reseeded(model, changed)[:, : CUT + 1])
    for t in (1, 2, CUT, T - 1):  # up to float32 rounding of the layers on a shorter input
        gap = float((_reseeded(model, tokens[:, :t]) - full[:, :t]).abs().max() / full.abs().max())
        assert gap <= 1e-5, f"logits before t={t} change by {gap:.1e} when the input stops at t"


def test_hf_integration_runs_lsh_and_is_exact_with_a_full_budget():
    transformers = pytest.importorskip("transformers")
    from qtransformers.integrations import huggingface

    config = transformers.LlamaConfig(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0  # left padding in the second row
    with torch.no_grad():
        want = model(ids, attention_mask=mask).logits
        model.set_attn_implementation(huggingface.register(backend="lsh", num_samples=64, seed=0))
        got = model(ids, attention_mask=mask).logits
        huggingface.register(backend="lsh", num_samples=2, seed=0, tables=2, bits=4)
        small = model(ids, attention_mask=mask).logits
    model.set_attn_implementation("sdpa")
    live = mask.bool()
    assert torch.allclose(got[live], want[live], atol=1e-4, rtol=1e-4)
    assert torch.isfinite(small).all() and not torch.allclose(small[live], want[live], atol=1e-3)


def test_lsh_errors_are_typed():
    q, k, v = _qkv()
    with pytest.raises(QTransformersError):
        quantum_attention(q.double(), k.double(), v.double(), backend="lsh")
    with pytest.raises(QTransformersError):
        quantum_attention(q, k, v, backend="lsh", num_samples=0)
