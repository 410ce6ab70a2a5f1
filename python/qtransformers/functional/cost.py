"""Cost accounting shared by every sampled backend and every bench: multiply-adds vs exact attention.

One function, :func:`side_information_cost`, counts what an estimator computes classically
(scores, normalisers, value orders, block sums, hashes) per head, next to exact attention's
L·S·(E + Ev) multiply-adds.
"""

from __future__ import annotations

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.block_cv import default_block


def side_information_cost(
    length: int,
    source: int,
    head_dim: int,
    value_dim: int,
    *,
    backend: str,
    num_samples: int = 0,
    control_variate: bool = False,
    adaptive: bool = False,
    key_order: str = "value",
    cv_kind: str = "block",
    cv_block: int | None = None,
    cv_features: int | None = None,
    keys_scored: float | None = None,
    hashes: float | None = None,
    hash_bits: int | None = None,
) -> dict[str, float]:
    """Multiply-adds per head of everything an estimator computes besides its draws, vs exact attention.

    Returns ``exact_macs`` (L·S·(E + Ev)), ``normaliser_macs``, ``side_information_macs`` (the
    total, normaliser included), ``estimator_macs`` and ``fraction`` ((side + estimator) / exact).

    Shot backends (``naive``, ``stratified``, ``hybrid``, with ``num_samples`` shots per row): the
    row normaliser Σ_j exp(s_j) costs L·S·E, the score half of exact attention; every estimator
    that reads a *normalised* p_J needs it: the stratified and hybrid weights (π_j = min(1, m·p_j),
    the candidates' p_j), the adaptive entropy estimate and the FAVOR+ control variate. Only
    ``naive`` (weights 1/m), with or without the block control variate (block means are normalised
    within the block), does without it. The value order costs S·Ev² (the eigen-decomposition of an
    Ev×Ev matrix is not counted). Their estimator costs L·m·Ev.

    ``backend="lsh"`` (:func:`qtransformers.functional.lsh_attention`, ``SampledKVCache``): pass
    the head's totals over its L rows, ``keys_scored`` (candidates + tail draws; each costs E + Ev)
    and ``hashes`` (query codes + key codes, each ``hash_bits`` projections of width E, so
    hash_bits·E multiply-adds). It never computes the normaliser: it estimates it.
    """
    exact = length * source * (head_dim + value_dim)
    if backend == "lsh":
        if keys_scored is None or hashes is None or hash_bits is None:
            raise InvalidArgumentError("backend 'lsh' needs keys_scored, hashes and hash_bits")
        side = float(hashes) * hash_bits * head_dim
        estimator = float(keys_scored) * (head_dim + value_dim)
        return {
            "exact_macs": exact,
            "normaliser_macs": 0,
            "side_information_macs": side,
            "estimator_macs": estimator,
            "fraction": (side + estimator) / exact,
        }
    needs_normaliser = backend in ("stratified", "hybrid") or adaptive or (control_variate and cv_kind == "favor")
    normaliser = length * source * head_dim if needs_normaliser else 0
    side = normaliser
    if backend != "naive" and key_order == "value":
        side += source * value_dim * value_dim
    if control_variate and cv_kind == "block":
        block = cv_block or default_block(source, num_samples)
        side += length * num_samples * block * (head_dim + value_dim)
    elif control_variate:
        r = cv_features or num_samples
        side += (length + source) * r * (head_dim + value_dim) + length * num_samples * r
    estimator = length * num_samples * value_dim
    return {
        "exact_macs": exact,
        "normaliser_macs": normaliser,
        "side_information_macs": side,
        "estimator_macs": estimator,
        "fraction": (side + estimator) / exact,
    }
