"""Shot-sampled attention: unbiased estimators of softmax attention from measurement shots.

Each attention row is a state with amplitudes sqrt(p_i), p_i = softmax(q_i·Kᵀ·scale + mask). The
*simulator* computes p (that is the quantum device, and costs what exact attention costs); the
*estimator* sees p through the key indices J it draws and their probabilities p_J. Everything
classical an estimator computes besides the draws (value orders, block scores, and the row
normaliser that any use of a normalised p_J needs) is counted by :func:`side_information_cost`.

Estimators of O_i = Σ_j p_ij v_j (m shots per row; all unbiased, E[Ô] = O):

* ``naive``: J_1..J_m i.i.d. ~ p_i (multinomial), Ô = (1/m) Σ_s v_{J_s}.
* ``stratified``: systematic sampling (one uniform offset, m equally spaced points on the CDF)
  along a key order, with the Horvitz-Thompson weights of systematic sampling: key j is drawn
  with probability π_j = min(1, m·p_j), and Ô = Σ_{distinct drawn j} p_j v_j / π_j. Keys with
  p_j >= 1/m are always drawn and enter exactly; the rest enter with weight 1/m.
* ``hybrid``: a pilot of m/4 multinomial shots finds up to ``top_k`` candidates (the distinct
  drawn keys with the largest p_J: a search that scores no key); they enter exactly,
  Σ_{j∈T} p_j v_j, and the other 3m/4 shots estimate the remainder with the stratified
  estimator, shots landing in T counting zero. Unbiased given T, hence unbiased.
* ``adaptive=True``: a pilot of m0 = m/4 shots of the backend's own design estimates each row's
  entropy Ĥ_i = -mean log p_J; the remaining shots of the head, L·(m - m0) in total, are split
  across rows in proportion to sqrt(1 - exp(-Ĥ_i)), at least one each, by largest remainders.
  The pilot's estimate enters with weight m0/m and the main run's with (m - m0)/m (for
  ``hybrid`` the pilot only finds candidates). Unbiased given the allocation, hence unbiased.
  A row's allocation depends on every other row of its head, so ``adaptive`` refuses any
  ``attn_mask`` or ``is_causal``.
* ``control_variate=True`` (``cv_kind="block"``, the default): keys are grouped in blocks of
  ``cv_block`` consecutive keys on the key order (default ``min(8, S // (4m))``); for each shot
  the estimator scores the shot's block classically and replaces v_J by the block's mean
  μ_B = Σ_{j∈B} softmax_B(s)_j v_j, Ô_cv = Σ_s w_s μ_{B(J_s)}, with the design's own weights w_s.
  Since Σ_j p_j μ_{B(j)} = Σ_B P_B μ_B = O and the weights are unbiased for any function of the
  key, Ô_cv is unbiased under every design, with no coefficient to estimate. It is the control
  variate v_J - μ_B (known mean 0) with coefficient 1, the optimum for i.i.d. shots since
  E[v_J | B] = μ_B (Rao-Blackwellisation).
* ``cv_kind="favor"``: a FAVOR+ linear-attention estimate Ã_i = Σ_j c_ij v_j (``cv_features``
  positive random features) has known expectation under the design, E[Σ_s w_s (c_J / p_J) v_J] =
  Ã_i; Ô_cv = Ô - β_i (Ĉ - Ã_i) with β_i the least-squares coefficient of the head's *other*
  rows (independent of row i's shots, so still unbiased). Because β_i reads other rows, it
  refuses any ``attn_mask`` or ``is_causal``.

Design under masks (``key_order="auto"``): with no mask, keys are laid out along
:func:`value_order` (a path over v's two leading principal axes, so each stratum holds similar
values); with a mask that is the same for every query row (key padding), along the value order
of the visible keys only; with ``is_causal`` or any mask that differs between rows, in position
order, so a row's draws never depend on keys it cannot see. ``key_order="value"`` with such a
mask raises. Randomness: each row (b, h, t) reads its own random stream keyed by its head
b·H + h and its absolute position t (:func:`qtransformers.functional.sampling.row_uniforms`), so
its shots do not depend on how many rows follow it (prefix consistency).

Gradients (the estimator of ∂O): v gets the pathwise gradient Σ_s w_s ∂v_{J_s}; q and k get the
score-function (REINFORCE) estimate Σ_s w_s (v_{J_s} - b_s)·∂s_{J_s} at the drawn indices only,
with the leave-one-out baseline b_s = (Ô - w_s v_{J_s}) / (Σ_t w_t - w_s). For i.i.d. shots
(naive) b_s is independent of shot s and the gradient is unbiased; for systematic shots the
strata share one offset, b_s is not independent of shot s, and the q/k gradient carries a bias
that shrinks with m. A row with a single weighted shot has no leave-one-out baseline: it uses
b = 0 and the exact score function ∂ log p_J = ∂s_J - ∂ log Z_i (unbiased), which needs that
row's scores against every key in the backward pass. With a control variate the forward value
uses Ô_cv and the gradient is the plain estimator's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.approximate import (
    check_qkv,
    favor_features,
    linear_attention_parts,
    orthogonal_gaussian,
)
from qtransformers.functional.attention import exact_attention, safe_softmax, scaled_scores
from qtransformers.functional.block_cv import block_control_variate, default_block
from qtransformers.functional.cost import side_information_cost as side_information_cost
from qtransformers.functional.quantum_lsh import check_lsh_options, lsh_quantum_attention
from qtransformers.functional.sampling import allocate_shots, draw_rows, row_uniforms, seed_from
from qtransformers.functional.shots import (
    dense_pays,
    dense_weights,
    gather_rows,
    horvitz_thompson,
    leave_one_out_term,
    leave_one_row_out_beta,
    shot_estimate,
)

BACKENDS = ("exact", "naive", "stratified", "hybrid", "lsh")


def quantum_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    backend: str = "stratified",
    num_samples: int = 32,
    control_variate: bool = False,
    adaptive: bool = False,
    top_k: int | None = None,
    scale: float | None = None,
    generator: torch.Generator | None = None,
    need_weights: bool = False,
    dropout_p: float = 0.0,
    cv_features: int | None = None,
    sampler: str = "auto",
    key_order: str = "auto",
    cv_kind: str = "block",
    cv_block: int | None = None,
    **lsh_options: Any,
) -> Tensor | tuple[Tensor, Tensor] | tuple[Tensor, dict[str, Tensor]]:
    """Attention estimated from ``num_samples`` shots per query row; (B,H,L,Ev) [, weights (B,H,L,S)].

    q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev); ``attn_mask`` bool (True = takes part) or additive
    float, broadcastable to (B,H,L,S). See the module docstring for the estimators. Masked keys
    are never drawn; fully masked rows give zeros. ``sampler`` = "torch" (any device), "rust"
    (host, ``qtransformers._core``) or "auto" (Rust for CPU tensors, torch otherwise); both draw
    the same shots for the same generator state. ``key_order`` = "auto" (value order without a
    row-dependent mask, position order with one), "value" or "position". ``dropout_p`` drops
    each shot's weight with that probability and rescales the rest by 1/(1 - p), before any
    control variate reads them. With ``need_weights`` the second output is the estimator's
    sparse weight matrix (an unbiased estimate of the attention probabilities). ``backend="lsh"``
    runs :func:`qtransformers.functional.lsh_attention` with ``budget=num_samples`` and
    ``lsh_options`` (epsilon, delta, bits, tables, sinks, window, return_stats); see
    :mod:`qtransformers.functional.quantum_lsh` for what it refuses.
    """
    check_qkv(q, k, v)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_lsh_options(backend, lsh_options)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise InvalidArgumentError(f"num_samples must be a positive int, got {num_samples!r}")
    if top_k is not None and top_k < 0:
        raise InvalidArgumentError(f"top_k must be None or >= 0, got {top_k}")
    if cv_kind not in ("block", "favor"):
        raise InvalidArgumentError(f"cv_kind must be 'block' or 'favor', got {cv_kind!r}")
    if control_variate and cv_kind == "block" and backend == "hybrid":
        raise InvalidArgumentError(
            "the block control variate does not combine with backend='hybrid'; use cv_kind='favor'"
        )
    if cv_block is not None and (not isinstance(cv_block, int) or cv_block < 1):
        raise InvalidArgumentError(f"cv_block must be None or a positive int, got {cv_block!r}")
    if key_order not in ("auto", "value", "position"):
        raise InvalidArgumentError(f"key_order must be 'auto', 'value' or 'position', got {key_order!r}")
    if sampler not in ("auto", "torch", "rust"):
        raise InvalidArgumentError(f"sampler must be 'auto', 'torch' or 'rust', got {sampler!r}")
    if not 0.0 <= dropout_p <= 1.0:
        raise InvalidArgumentError(f"dropout_p must be in [0, 1], got {dropout_p}")
    if backend == "lsh":
        refused = {
            "control_variate": control_variate,
            "adaptive": adaptive,
            "top_k": top_k is not None,
            "need_weights": need_weights,
            "dropout_p": dropout_p > 0.0,
            "cv_features": cv_features is not None,
            "cv_kind": cv_kind != "block",
            "cv_block": cv_block is not None,
            "key_order='value'": key_order == "value",
            "sampler='torch'": sampler == "torch",
        }
        return lsh_quantum_attention(
            q,
            k,
            v,
            attn_mask,
            is_causal,
            num_samples=num_samples,
            scale=scale,
            generator=generator,
            refused=refused,
            **lsh_options,
        )
    if backend == "exact":
        out, weights = exact_attention(
            q, k, v, attn_mask, dropout_p, is_causal, scale=scale, need_weights=need_weights, generator=generator
        )
        return (out, weights) if weights is not None else out
    structure = mask_structure(attn_mask, is_causal)
    # Designs that let a row's output depend on the head's other rows refuse masks.
    if structure != "none" and (adaptive or (control_variate and cv_kind == "favor")):
        if adaptive:
            raise InvalidArgumentError(
                "adaptive=True splits each head's shots across its rows by their entropies, so with attn_mask or "
                "is_causal a row's shots would depend on rows that see what it cannot; use adaptive=False"
            )
        raise InvalidArgumentError(
            "cv_kind='favor' estimates its coefficient from the head's other rows, so with attn_mask or "
            "is_causal a row would depend on rows that see what it cannot; use cv_kind='block'"
        )
    if key_order == "value" and structure == "rows_differ":
        raise InvalidArgumentError(
            "key_order='value' orders keys by all their values, so with is_causal or a mask that differs "
            "between query rows a row's draws would depend on keys it cannot see; use key_order='position'"
        )
    if key_order == "auto":
        key_order = "position" if structure == "rows_differ" else "value"
    if sampler == "auto":
        sampler = "rust" if q.device.type == "cpu" else "torch"
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    probs = simulated_probs(q.detach().to(work), k.detach().to(work), attn_mask, is_causal, scale)
    b, h, length, source = probs.shape
    block = 1
    if control_variate and cv_kind == "block":
        block = cv_block or default_block(source, num_samples)
    order = None
    if backend != "naive" and key_order == "value":
        visible_v = v.detach() if attn_mask is None else v.detach() * _visible_keys(attn_mask).unsqueeze(-1)
        visible_v = visible_v.expand(b, h, source, v.size(-1))
        order = (value_order(visible_v) if block == 1 else block_value_order(visible_v, block)).reshape(b * h, source)
    streams = row_streams(b * h, length, probs.device)
    idx, weights = _draw(
        probs.reshape(-1, source), order, length, backend, num_samples, adaptive, top_k, generator, sampler, streams
    )
    if dropout_p > 0.0:
        keep = row_uniforms(seed_from(generator), streams, weights.size(-1), weights.device) >= dropout_p
        weights = weights * keep / max(1.0 - dropout_p, 1e-30)
    idx, weights = idx.view(b, h, length, -1), weights.view(b, h, length, -1)
    dense = dense_pays(source, idx.size(-1), v.size(-1))
    estimate = shot_estimate(v, idx, weights, dense=dense)
    value = estimate.detach()
    if control_variate and cv_kind == "favor":
        value = _favor_control_variate(
            q, k, v, scale, probs, idx, weights, value, cv_features or num_samples, generator
        )
    elif control_variate:
        value = block_control_variate(q, k, v, attn_mask, is_causal, scale, idx, weights, order, block).to(v.dtype)
    out = value + (estimate - estimate.detach())
    if q.requires_grad or k.requires_grad:
        out = out + leave_one_out_term(q, k, v, idx, weights, estimate, scale, dense=dense)
        out = out + single_shot_term(q, k, attn_mask, is_causal, scale, weights, estimate)
    out = out.to(v.dtype)
    return (out, dense_weights(idx, weights, source)) if need_weights else out


@torch.no_grad()
def simulated_probs(q: Tensor, k: Tensor, attn_mask: Tensor | None, is_causal: bool, scale: float) -> Tensor:
    """The simulated device: attention probabilities (B,H,L,S), rows with every key masked all zero.

    Equal to ``safe_softmax(scaled_scores(...))`` for finite q and k. Without ``attn_mask`` no row is fully masked
    (a causal row always sees key 0), so the plain softmax runs, without safe_softmax's two copies.
    """
    scores = scaled_scores(q, k, attn_mask, is_causal, scale)
    return torch.softmax(scores, dim=-1) if attn_mask is None else safe_softmax(scores)


def mask_structure(attn_mask: Tensor | None, is_causal: bool) -> str:
    """ "none" (no mask), "rows_same" (every query row sees the same keys) or "rows_differ"."""
    if is_causal:
        return "rows_differ"
    if attn_mask is None:
        return "none"
    if attn_mask.dim() < 2 or attn_mask.size(-2) == 1 or bool((attn_mask == attn_mask[..., :1, :]).all()):
        return "rows_same"
    return "rows_differ"


def _visible_keys(attn_mask: Tensor) -> Tensor:
    """(..., S) float 1/0: the keys a row-invariant mask lets take part."""
    row = attn_mask if attn_mask.dim() < 2 else attn_mask[..., 0, :]
    visible = row if row.dtype == torch.bool else row > float("-inf")
    return visible.float()


def row_streams(groups: int, length: int, device: torch.device) -> Tensor:
    """(groups·length,) int64 stream keys: row t of head g reads stream g·2³² + t."""
    heads = torch.arange(groups, dtype=torch.int64, device=device).unsqueeze(-1) * (1 << 32)
    return (heads + torch.arange(length, dtype=torch.int64, device=device)).reshape(-1)


def value_order(v: Tensor, bins: int = 4) -> Tensor:
    """Key order (B,H,S) that keeps keys with similar values together; O(S·Ev²) per head.

    Keys are cut into ``bins`` equal-count bands along v's leading principal axis and, inside
    each band, sorted along the second axis in alternating direction (a boustrophedon path), so
    neighbours on the order are close in the two leading value directions (with Ev = 1: sorted
    by value).
    """
    with torch.no_grad():
        centred = (v - v.mean(-2, keepdim=True)).double()
        axes = torch.linalg.eigh(centred.transpose(-2, -1) @ centred).eigenvectors[..., -2:]  # (B,H,Ev,<=2)
        proj = centred @ axes  # (B,H,S,<=2): [..., -1] leading, [..., -2] second
        lead = proj[..., -1]
        second = proj[..., -2] if proj.size(-1) > 1 else torch.zeros_like(lead)
        band = lead.argsort(-1).argsort(-1) * bins // v.size(-2)
        along = torch.where(band % 2 == 0, second, -second)
        span = along.abs().amax(-1, keepdim=True) + 1.0
        return (band * 4 * span + along).argsort(dim=-1)


def block_value_order(v: Tensor, block: int) -> Tensor:
    """Key order (B,H,S): blocks of ``block`` consecutive positions, arranged by :func:`value_order` of their means.

    Blocks stay contiguous on the order (so the block control variate can score them), while
    strata along the order still group similar values.
    """
    source = v.size(-2)
    pad = (-source) % block
    padded = torch.nn.functional.pad(v, (0, 0, 0, pad), value=0.0) if pad else v
    means = padded.reshape(*v.shape[:-2], -1, block, v.size(-1)).mean(-2)
    blocks = value_order(means)  # (B,H,S/b)
    keys = (blocks.unsqueeze(-1) * block + torch.arange(block, device=v.device)).flatten(-2)
    return keys[keys < source].view(*v.shape[:-2], source) if pad else keys


def _draw(rows, order, length, backend, m, adaptive, top_k, generator, sampler, streams) -> tuple[Tensor, Tensor]:
    """Shot indices (R, M) and detached estimator weights (R, M) of the chosen design for rows (R, S)."""
    alive = rows.sum(-1) > 0
    pilot = pilot_size(m) if (adaptive or backend == "hybrid") else 0
    adaptive = adaptive and pilot > 0
    method = "multinomial" if backend == "naive" else "systematic"

    def draw(shots: Tensor, how: str) -> Tensor:
        return draw_rows(
            rows, shots, how, generator=generator, order=order, rows_per_order=length, sampler=sampler, streams=streams
        )

    def full(count: int) -> Tensor:
        return torch.full((rows.size(0),), count, dtype=torch.int64, device=rows.device) * alive

    # The hybrid pilot hunts candidates (i.i.d. draws); the adaptive pilot is a first, smaller
    # run of the backend's own design whose estimate also enters the output with weight pilot/m.
    if not pilot:
        shots = full(m)
        return _design_weights(rows, draw(shots, method), shots, method)
    pilot_idx = draw(full(pilot), "multinomial" if backend == "hybrid" else method)
    shots = adaptive_shots(rows, pilot_idx, length, m - pilot, sampler=sampler) if adaptive else full(m - pilot)
    idx, weights = _design_weights(rows, draw(shots, method), shots, method)
    parts_idx, parts_w = [idx], [weights]
    if adaptive and backend != "hybrid":
        p_idx, p_w = _design_weights(rows, pilot_idx, full(pilot), method)
        parts_w[0] = weights * (1.0 - pilot / m)
        parts_idx.append(p_idx)
        parts_w.append(p_w * (pilot / m))
    if backend == "hybrid" and (top_k is None or top_k > 0):
        cand, cand_w, in_cand = _candidates(rows, pilot_idx, pilot if top_k is None else min(top_k, pilot), idx)
        parts_w[0] = parts_w[0] * ~in_cand
        parts_idx.append(cand)
        parts_w.append(cand_w)
    return torch.cat(parts_idx, dim=1), torch.cat(parts_w, dim=1)


def pilot_size(num_samples: int) -> int:
    """Shots of the adaptive / hybrid pilot: m/4, at least 1, but always leaving the main run one (0 for m = 1)."""
    return min(max(1, num_samples // 4), num_samples - 1)


def _design_weights(rows: Tensor, idx: Tensor, shots: Tensor, method: str) -> tuple[Tensor, Tensor]:
    """(indices with -1 replaced by 0, unbiased per-shot weights) of i.i.d. or systematic draws (R, M)."""
    valid = idx >= 0
    safe_idx = idx.clamp_min(0)
    m_row = shots.clamp_min(1).to(rows.dtype).unsqueeze(-1)
    if method == "multinomial":
        return safe_idx, valid / m_row
    return safe_idx, horvitz_thompson(safe_idx, valid, rows.gather(1, safe_idx), m_row) * valid


def adaptive_shots(rows: Tensor, pilot_idx: Tensor, length: int, per_row: int, *, sampler: str = "torch") -> Tensor:
    """Shots per row (R,) from pilot draws (R, m0): ``per_row * length`` per head, ∝ sqrt(1 - exp(-Ĥ)).

    Ĥ_i = -mean log p_J over row i's pilot draws J (an unbiased entropy estimate); rows of
    ``length`` consecutive rows form a head; fully masked rows get none, live rows at least one.
    """
    alive = rows.sum(-1) > 0
    p_pilot = rows.gather(1, pilot_idx.clamp_min(0))
    entropy = -(p_pilot.clamp_min(1e-30).log()).mean(-1)
    score = torch.where(alive, torch.sqrt((1.0 - torch.exp(-entropy)).clamp_min(0.0)), -1.0)
    shots = allocate_shots(score.view(-1, length), per_row * length, min_shots=1, sampler=sampler)
    return shots.reshape(-1) * alive


def _candidates(rows: Tensor, pilot_idx: Tensor, k_max: int, main_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``k_max`` distinct pilot-drawn keys per row with the largest p (the exact part).

    Duplicates are found by key index (keys with tied p stay distinct), and ties in p are broken
    by the lower index. Returns candidate indices (R, m0), their weights p_j (0 for padding,
    duplicates and keys past ``k_max``), and a mask (R, M) of main shots that landed on a candidate.
    """
    sentinel = rows.size(1)
    by_index, _ = torch.where(pilot_idx >= 0, pilot_idx, sentinel).sort(dim=-1)
    first = torch.ones_like(by_index, dtype=torch.bool)
    first[:, 1:] = by_index[:, 1:] != by_index[:, :-1]
    first &= by_index < sentinel
    keys = by_index.clamp(max=sentinel - 1)
    p = torch.where(first, rows.gather(1, keys), -1.0)
    ordered_p, pos = p.sort(dim=-1, descending=True, stable=True)
    ordered_idx = keys.gather(1, pos)
    keep = (ordered_p >= 0) & (torch.arange(pos.size(1), device=pos.device) < k_max)
    cand_w = torch.where(keep, ordered_p, 0.0)
    in_cand = ((main_idx.unsqueeze(-1) == ordered_idx.unsqueeze(-2)) & keep.unsqueeze(-2)).any(-1)
    return ordered_idx, cand_w, in_cand


def single_shot_term(q, k, attn_mask, is_causal, scale, weights, estimate) -> Tensor:
    """Zero-valued term (B,H,L,Ev): for rows with one weighted shot, -Ô·∂log Z_i (the exact score function's part).

    Such a row has no leave-one-out baseline; with b = 0 its gradient is Ô (∂s_J - ∂log Z_i), and
    :func:`leave_one_out_term` gives the Ô ∂s_J part. Zero when no row has a single weighted shot.
    """
    rest = weights.sum(-1, keepdim=True) - weights
    single = ((weights > 0) & (rest <= 0)).any(-1, keepdim=True)  # (B,H,L,1)
    if not bool(single.any()):
        return torch.zeros((), dtype=estimate.dtype, device=estimate.device)
    scores = torch.where(single, scaled_scores(q, k, attn_mask, is_causal, scale), 0.0)
    log_z = torch.logsumexp(scores, dim=-1, keepdim=True)
    return -torch.where(single, estimate.detach(), 0.0) * (log_z - log_z.detach())


def _favor_control_variate(q, k, v, scale, probs, idx, weights, estimate, features, generator):
    """Ô - β(Ĉ - Ã) without a mask: the FAVOR+ estimate Ã with known expectation, β from the other rows."""
    with torch.no_grad():
        w = orthogonal_gaussian(features, q.size(-1), generator=generator, dtype=probs.dtype, device=q.device)
        root = math.sqrt(scale)
        fq = favor_features(q.detach().to(probs.dtype) * root, w, is_query=True)
        fk = favor_features(k.detach().to(probs.dtype) * root, w, is_query=False)
        num, den = linear_attention_parts(fq, fk, v.detach().to(probs.dtype), None, False)
        den = den.clamp_min(1e-30)
        approx = num / den.unsqueeze(-1)  # Ã (B,H,L,Ev)
        c_drawn = (fq.unsqueeze(-2) * gather_rows(fk, idx)).sum(-1) / den.unsqueeze(-1)
        p_drawn = probs.gather(-1, idx)
        ratio = torch.where(weights > 0, c_drawn / p_drawn.clamp_min(1e-30), 0.0)
        vd = gather_rows(v.detach(), idx).to(probs.dtype)
        y = weights.unsqueeze(-1) * vd  # per-shot terms of Ô
        x = (weights * ratio).unsqueeze(-1) * vd  # per-shot terms of Ĉ
        beta = leave_one_row_out_beta(y, x, weights)
        alive = probs.sum(-1, keepdim=True) > 0
        corrected = estimate.to(probs.dtype) - beta * (x.sum(-2) - approx)
        return torch.where(alive, corrected, 0.0).to(estimate.dtype)
