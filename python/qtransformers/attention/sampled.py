"""Sampled (shot-based) attention backends and the approximate-attention baselines.

Registered names: "naive", "stratified", "hybrid", "lsh" (see :func:`qtransformers.functional.quantum_attention`;
"lsh" takes ``num_samples`` as its tail budget and ``backend_options`` epsilon, delta, bits, tables,
sinks, window) and "performer", "nystrom", "linformer" (their feature/landmark/projection count is
``backend_options`` "num_features" / "num_landmarks" / "proj_dim", else ``num_samples``).
Baselines and "lsh" (which never forms a score row) return no weights; baselines ignore dropout,
"lsh" refuses it.
"""

from __future__ import annotations

from qtransformers.attention.backends import register_backend
from qtransformers.functional.approximate import linformer_attention, nystrom_attention, performer_attention
from qtransformers.functional.quantum import quantum_attention


def _sampled_backend(name: str):
    def backend(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config):
        weights = need_weights and name != "lsh"
        result = quantum_attention(
            q,
            k,
            v,
            attn_mask,
            is_causal,
            backend=name,
            num_samples=config.num_samples,
            control_variate=config.control_variate,
            adaptive=config.adaptive_samples,
            top_k=config.top_k,
            scale=scale,
            generator=generator,
            need_weights=weights,
            dropout_p=dropout_p,
            **config.options,
        )
        return result if weights else (result, None)

    backend.__doc__ = f"The {name!r} shot-sampled estimator as an attention backend."
    return register_backend(name)(backend)


for _name in ("naive", "stratified", "hybrid", "lsh"):
    _sampled_backend(_name)

_BASELINES = {  # name -> (function, size option, supports causal masks)
    "performer": (performer_attention, "num_features", True),
    "nystrom": (nystrom_attention, "num_landmarks", False),
    "linformer": (linformer_attention, "proj_dim", False),
}


def _baseline_backend(name: str):
    fn, size_option, causal = _BASELINES[name]

    def backend(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config):
        del dropout_p, need_weights
        size = config.options.get(size_option, config.num_samples)
        return fn(q, k, v, attn_mask, is_causal, scale=scale, generator=generator, **{size_option: size}), None

    backend.__doc__ = f"The {name!r} approximate-attention baseline as an attention backend (no weights)."
    return register_backend(name, causal=causal)(backend)


for _name in _BASELINES:
    _baseline_backend(_name)
