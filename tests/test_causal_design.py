"""Causal design: with a causal mask, no sampled estimator lets a later token change an earlier output.

Every backend x {plain, adaptive, block control variate, FAVOR+ control variate} x {``is_causal``,
boolean causal mask, float causal mask}, through the functional API and through
``QuantumMultiheadAttention``: either changing only the tokens after position t leaves every
output at positions <= t bit-for-bit unchanged (same seed), or the call raises a typed
:class:`~qtransformers.QTransformersError` that is also a ``ValueError``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtransformers import QTransformersError, QuantumMultiheadAttention
from qtransformers.functional import quantum_attention

T, CUT = 13, 6  # tokens 0..CUT stay, tokens after CUT change
BACKENDS = ["naive", "stratified", "hybrid"]
DESIGNS = {
    "plain": {},
    "adaptive": dict(adaptive=True),
    "block-cv": dict(control_variate=True),
    "favor-cv": dict(control_variate=True, cv_kind="favor"),
}
MASKS = ["is_causal", "bool-mask", "float-mask"]


def _sdpa_masking(kind: str) -> dict:
    keep = torch.ones(T, T, dtype=torch.bool).tril()
    if kind == "is_causal":
        return dict(is_causal=True)
    if kind == "bool-mask":
        return dict(attn_mask=keep)
    return dict(attn_mask=torch.zeros(T, T).masked_fill(~keep, float("-inf")))


def _changed_after_cut(x: torch.Tensor, seq_axis: int) -> torch.Tensor:
    y = x.clone()
    index = [slice(None)] * x.dim()
    index[seq_axis] = slice(CUT + 1, None)
    y[tuple(index)] = torch.randn_like(y[tuple(index)]) * 3.0
    return y


def _assert_past_unchanged_or_refused(run, seq_axis: int) -> None:
    try:
        a, b = run(False), run(True)
    except QTransformersError as error:
        assert isinstance(error, ValueError), f"{type(error).__name__} is not a ValueError"
        return
    past = [slice(None)] * a.dim()
    past[seq_axis] = slice(0, CUT + 1)
    assert torch.equal(a[tuple(past)], b[tuple(past)]), "a future token changed a past output"
    assert not torch.equal(a, b), "the change after the cut should change later outputs"


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_future_tokens_never_change_past_outputs(backend, design, mask):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, T, 8, generator=g) for _ in range(3))
    future = [_changed_after_cut(t, 2) for t in (q, k, v)]

    def run(changed: bool) -> torch.Tensor:
        inputs = future if changed else (q, k, v)
        return quantum_attention(
            *inputs,
            backend=backend,
            num_samples=8,
            generator=torch.Generator().manual_seed(1),
            **DESIGNS[design],
            **_sdpa_masking(mask),
        )

    _assert_past_unchanged_or_refused(run, seq_axis=2)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_module_future_tokens_never_change_past_outputs(backend, design, mask):
    torch.manual_seed(0)
    options = dict(DESIGNS[design])
    cv_kind = options.pop("cv_kind", None)
    module_options = dict(
        adaptive_samples=options.get("adaptive", False),
        control_variate=options.get("control_variate", False),
        backend_options={"cv_kind": cv_kind} if cv_kind else None,
    )
    try:
        mha = QuantumMultiheadAttention(
            16, 2, batch_first=True, quantum_backend=backend, num_samples=8, seed=3, **module_options
        )
    except QTransformersError as error:
        assert isinstance(error, ValueError)
        return
    x = torch.randn(2, T, 16)
    y = _changed_after_cut(x, 1)
    causal = nn.Transformer.generate_square_subsequent_mask(T)  # float, -inf above the diagonal
    masking = {
        "is_causal": dict(attn_mask=causal.isinf(), is_causal=True),
        "bool-mask": dict(attn_mask=causal.isinf()),
        "float-mask": dict(attn_mask=causal),
    }[mask]

    def run(changed: bool) -> torch.Tensor:
        mha.generator.manual_seed(3)
        return mha(y if changed else x, y if changed else x, y if changed else x, need_weights=False, **masking)[0]

    _assert_past_unchanged_or_refused(run, seq_axis=1)


def test_the_default_design_is_causal_and_the_refusals_are_the_row_coupling_options():
    # Guard against a vacuous matrix: the default design and the block control variate must run
    # causally (not refuse), and only adaptive / FAVOR+ may refuse.
    q = k = v = torch.randn(1, 1, T, 4)
    for design in ("plain", "block-cv"):
        quantum_attention(q, k, v, is_causal=True, backend="stratified", **DESIGNS[design])
    for design in ("adaptive", "favor-cv"):
        with pytest.raises(QTransformersError):
            quantum_attention(q, k, v, is_causal=True, backend="stratified", **DESIGNS[design])
