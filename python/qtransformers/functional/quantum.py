"""Shot-sampled attention: unbiased estimators of softmax attention from measurement shots.

Each attention row is a state with amplitudes sqrt(p_i), p_i = softmax(q_i·Kᵀ·scale + mask). The
*simulator* computes p (that is the quantum device, and costs what exact attention costs); the
*estimator* sees p only as a measurement would: through the key indices J it draws and their
probabilities p_J. Classical side information is allowed only when it is cheaper than exact
attention, and its cost is reported by :func:`side_information_cost`.

Estimators of O_i = Σ_j p_ij v_j (m shots per row; all unbiased, E[Ô] = O):

* ``naive``: J_1..J_m i.i.d. ~ p_i (multinomial), Ô = (1/m) Σ_s v_{J_s}.
* ``stratified``: systematic sampling (one uniform offset, m equally spaced points on the CDF)
  along a key order that keeps keys with similar values together (:func:`value_order`, a path
  over v's two leading principal axes), so each stratum holds similar values; with the
  Horvitz-Thompson weights of systematic
  sampling: key j is drawn with probability π_j = min(1, m·p_j), and
  Ô = Σ_{distinct drawn j} p_j v_j / π_j. Keys with p_j >= 1/m are always drawn and enter
  exactly; the rest enter with weight 1/m.
* ``hybrid``: a pilot of m/4 multinomial shots finds up to ``top_k`` candidates (the drawn keys
  with the largest observed p_J: a search that scores no key); they enter exactly,
  Σ_{j∈T} p_j v_j, and the other 3m/4 shots estimate the remainder with the stratified
  estimator, shots landing in T counting zero. Unbiased given T, hence unbiased.
* ``adaptive=True``: a pilot of m0 = m/4 shots of the backend's own design estimates each row's
  entropy Ĥ_i = -mean log p_J (unbiased, every draw has marginal p); the remaining shots of the
  head, L·(m - m0) in total, are split across rows in proportion to sqrt(1 - exp(-Ĥ_i)) (the
  standard deviation of a row uniform over exp(H) keys), at least one each, by largest
  remainders. The pilot's estimate enters with the fixed weight m0/m and the main run's with
  (m - m0)/m; both are unbiased (the main run given the allocation), so the mix is too. With a
  control variate the pilot (which has none) would add more variance than it removes, so there
  it is spent on the allocation only.
* ``control_variate=True`` (``cv_kind="block"``, the default): the block control variate of
  :mod:`qtransformers.functional.block_cv`. Keys are grouped in blocks of ``cv_block`` consecutive
  positions (default ``min(8, S // (4m))``, so scoring blocks costs at most 1/4 of exact
  attention) laid out along the value order of the block means; for each shot the estimator
  scores the shot's block classically and uses g = v_J - μ_B(J) (known expectation 0) with a
  coefficient β_i estimated from the head's other rows: Ô_cv = Σ_s w_s^B [v_J - β_i g_s].
  Unbiased (β_i is independent of row i's shots); β = 1 is the Rao-Blackwellised estimator.
* ``cv_kind="favor"``: a FAVOR+ linear-attention estimate Ã_i = Σ_j c_ij v_j (``cv_features``
  positive random features, O((L+S)·r·Ev), no score matrix) has known expectation under the
  design, E[Σ_s w_s (c_J / p_J) v_J] = Ã_i; Ô_cv = Ô - β_i (Ĉ - Ã_i) with β_i from the other
  rows. Also unbiased; on the measured regimes it removes almost no variance (see README).

Gradients (the estimator of ∂O): v gets the pathwise gradient Σ_s w_s ∂v_{J_s}; q and k get the
score-function (REINFORCE) estimate Σ_s w_s (v_{J_s} - b_s)·∂s_{J_s} at the drawn indices only,
with the leave-one-out baseline b_s = (Ô - w_s v_{J_s}) / (Σ_t w_t - w_s). For i.i.d. shots
(naive) b_s is independent of shot s and the gradient is unbiased (tested to 5 standard
errors); for systematic shots the strata share one offset, b_s is not independent of shot s,
and the q/k gradient carries a bias that shrinks with m (measured ~10% of the gradient at m=8
on a 6-key toy; v's gradient stays unbiased). With a control variate the
forward value uses Ô_cv and the gradient is the plain estimator's.
"""

from __future__ import annotations

import math

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
from qtransformers.functional.masks import sdpa_mask_to_additive
from qtransformers.functional.sampling import allocate_shots, draw_rows
from qtransformers.functional.block_cv import block_control_variate, default_block
from qtransformers.functional.shots import gather_rows, horvitz_thompson, leave_one_row_out_beta

BACKENDS = ("exact", "naive", "stratified", "hybrid")


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
    key_order: str = "value",
    cv_kind: str = "block",
    cv_block: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention estimated from ``num_samples`` shots per query row; (B,H,L,Ev) [, weights (B,H,L,S)].

    q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev); ``attn_mask`` bool (True = takes part) or additive
    float, broadcastable to (B,H,L,S). See the module docstring for the estimators. Masked keys
    are never drawn; fully masked rows give zeros. ``sampler`` = "torch" (any device), "rust"
    (host, ``qtransformers._core``) or "auto" (Rust for CPU tensors, where it measured faster,
    torch otherwise). ``key_order`` = "value" (:func:`value_order`) or "position"
    (keys in their own order; a row's draws then never depend on later keys). With
    ``need_weights`` the second output is the estimator's sparse weight matrix (an unbiased
    estimate of the attention probabilities).
    """
    check_qkv(q, k, v)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise InvalidArgumentError(f"num_samples must be a positive int, got {num_samples!r}")
    if top_k is not None and top_k < 0:
        raise InvalidArgumentError(f"top_k must be None or >= 0, got {top_k}")
    if cv_kind not in ("block", "favor"):
        raise InvalidArgumentError(f"cv_kind must be 'block' or 'favor', got {cv_kind!r}")
    if control_variate and cv_kind == "block" and backend == "hybrid":
        raise InvalidArgumentError("the block control variate does not combine with backend='hybrid'; use cv_kind='favor'")
    if key_order not in ("value", "position"):
        raise InvalidArgumentError(f"key_order must be 'value' or 'position', got {key_order!r}")
    if sampler not in ("auto", "torch", "rust"):
        raise InvalidArgumentError(f"sampler must be 'auto', 'torch' or 'rust', got {sampler!r}")
    if sampler == "auto":
        sampler = "rust" if q.device.type == "cpu" else "torch"
    if backend == "exact":
        out, weights = exact_attention(
            q, k, v, attn_mask, dropout_p, is_causal, scale=scale, need_weights=need_weights, generator=generator
        )
        return (out, weights) if need_weights else out
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    with torch.no_grad():  # the simulated device
        probs = safe_softmax(scaled_scores(q.detach(), k.detach(), attn_mask, is_causal, scale).float())
    block = 1
    if control_variate and cv_kind == "block":
        block = cv_block or default_block(k.size(-2), num_samples)
    plan = _draw(probs, v, backend, num_samples, adaptive, top_k, generator, sampler, key_order, block,
                 reuse_pilot=not control_variate)
    idx, weights = plan["idx"], plan["weights"]
    if dropout_p > 0.0:
        keep = torch.rand(weights.shape, generator=generator, device=weights.device) >= dropout_p
        weights = weights * keep / (1.0 - dropout_p)
    v_drawn = gather_rows(v, idx)  # (B,H,L,M,Ev)
    w = weights.to(v.dtype).unsqueeze(-1)
    estimate = (w * v_drawn).sum(-2)
    value = estimate.detach()
    if control_variate:
        if cv_kind == "favor":
            value = _favor_control_variate(q, k, v, attn_mask, is_causal, scale, probs, plan, v_drawn, value,
                                           cv_features or num_samples, generator)
        else:
            value = block_control_variate(q, k, v, attn_mask, is_causal, scale, probs, plan, block)
    out = value + (estimate - estimate.detach())
    if q.requires_grad or k.requires_grad:
        s_drawn = (q.unsqueeze(-2) * gather_rows(k, idx)).sum(-1) * scale  # (B,H,L,M)
        # Leave-one-out baseline: the estimate without shot s, renormalised by the remaining weight.
        vd = v_drawn.detach()
        plain = estimate.detach().unsqueeze(-2)
        rest = w.sum(-2, keepdim=True) - w
        baseline = torch.where(rest > 0, (plain - w * vd) / rest.clamp_min(1e-30), plain)
        centred = (vd - baseline) * w
        out = out + (centred * (s_drawn - s_drawn.detach()).unsqueeze(-1)).sum(-2)
    out = out.to(v.dtype)
    if not need_weights:
        return out
    dense = torch.zeros(probs.shape, dtype=weights.dtype, device=weights.device)
    dense.scatter_add_(-1, idx, weights)
    return out, dense


def value_order(v: Tensor, bins: int = 4) -> Tensor:
    """Key order (B,H,S) that keeps keys with similar values together; O(S·Ev²) per head.

    Keys are cut into ``bins`` equal-count bands along v's leading principal axis and, inside
    each band, sorted along the second axis in alternating direction (a boustrophedon path), so
    neighbours on the order are close in the two leading value directions.
    """
    with torch.no_grad():
        centred = (v - v.mean(-2, keepdim=True)).double()
        axes = torch.linalg.eigh(centred.transpose(-2, -1) @ centred).eigenvectors[..., -2:]  # (B,H,Ev,2)
        proj = centred @ axes  # (B,H,S,2): [..., 1] leading, [..., 0] second
        band = proj[..., 1].argsort(-1).argsort(-1) * bins // v.size(-2)
        along = torch.where(band % 2 == 0, proj[..., 0], -proj[..., 0])
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


def _draw(probs, v, backend, m, adaptive, top_k, generator, sampler, key_order, block=1, reuse_pilot=True) -> dict:
    """Shot indices (B,H,L,M) and detached estimator weights (B,H,L,M) for the chosen design."""
    b, h, length, source = probs.shape
    rows = probs.reshape(-1, source)
    alive = rows.sum(-1) > 0
    pilot = max(1, m // 4) if (adaptive or backend == "hybrid") else 0
    method = "multinomial" if backend == "naive" else "systematic"
    order = None
    if method == "systematic" and key_order == "value":
        order = (value_order(v) if block == 1 else block_value_order(v, block)).reshape(b * h, source)
    extra_idx, extra_w = [], []
    pilot_idx = None
    # The hybrid pilot hunts candidates (i.i.d. draws); the adaptive pilot is a first, smaller
    # run of the backend's own design whose estimate also enters the output with weight pilot/m.
    pilot_method = "multinomial" if backend == "hybrid" else method
    if pilot:
        pilot_shots = torch.full((rows.size(0),), pilot, dtype=torch.int64, device=rows.device) * alive
        pilot_idx = draw_rows(rows, pilot_shots, pilot_method, generator=generator, order=order,
                              rows_per_order=length, sampler=sampler)
    main = m - pilot if pilot else m
    if adaptive:
        shots = adaptive_shots(rows, pilot_idx, length, main, sampler=sampler)
    else:
        shots = torch.full((rows.size(0),), main, dtype=torch.int64, device=rows.device) * alive
    idx = draw_rows(rows, shots, method, generator=generator, order=order, rows_per_order=length, sampler=sampler)
    safe_idx, weights = _design_weights(rows, idx, shots, method)
    pilot_fraction = 0.0
    if adaptive and backend != "hybrid" and reuse_pilot:
        pilot_fraction = pilot / m
        p_idx, p_w = _design_weights(rows, pilot_idx, pilot_shots, method)
        weights = weights * (1.0 - pilot_fraction)
        extra_idx.append(p_idx)
        extra_w.append(p_w * pilot_fraction)
    if backend == "hybrid" and (top_k is None or top_k > 0):
        k_max = pilot if top_k is None else min(top_k, pilot)
        cand, cand_w, in_cand = _candidates(rows, pilot_idx, k_max, safe_idx)
        weights = weights * ~in_cand
        extra_idx.append(cand)
        extra_w.append(cand_w)
    if extra_idx:
        safe_idx = torch.cat([safe_idx, *extra_idx], dim=1)
        weights = torch.cat([weights, *extra_w], dim=1)
    return {
        "idx": safe_idx.view(b, h, length, -1),
        "weights": weights.view(b, h, length, -1),
        "shots": shots.view(b, h, length),
        "pilot": pilot,
        "order": order,
        "systematic": method == "systematic",
        "pilot_fraction": pilot_fraction,
    }


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
    """Up to ``k_max`` distinct pilot-drawn keys per row with the largest observed p (exact part).

    Returns candidate indices (R, k_max), their weights p_j (0 for padding/duplicates), and a
    mask (R, M) of main shots that landed on a candidate.
    """
    valid = pilot_idx >= 0
    p_pilot = torch.where(valid, rows.gather(1, pilot_idx.clamp_min(0)), -1.0)
    ordered_p, pos = p_pilot.sort(dim=-1, descending=True)
    ordered_idx = pilot_idx.clamp_min(0).gather(1, pos)
    first = torch.ones_like(ordered_idx, dtype=torch.bool)
    first[:, 1:] = ordered_idx[:, 1:] != ordered_idx[:, :-1]  # equal p -> equal key (adjacent after sort)
    first &= ordered_p >= 0
    rank = first.cumsum(-1)
    keep = first & (rank <= k_max)
    cand_w = torch.where(keep, ordered_p, 0.0)
    in_cand = ((main_idx.unsqueeze(-1) == ordered_idx.unsqueeze(-2)) & keep.unsqueeze(-2)).any(-1)
    return ordered_idx, cand_w, in_cand


def _favor_control_variate(q, k, v, attn_mask, is_causal, scale, probs, plan, v_drawn, estimate, features,
                           generator):
    """Ô - β(Ĉ - Ã): the FAVOR+ estimate Ã with known expectation, β from the other rows."""
    with torch.no_grad():
        w = orthogonal_gaussian(features, q.size(-1), generator=generator, dtype=torch.float32, device=q.device)
        root = math.sqrt(scale)
        fq = favor_features(q.detach().float() * root, w, is_query=True)
        fk = favor_features(k.detach().float() * root, w, is_query=False)
        num, den = linear_attention_parts(fq, fk, v.detach().float(), attn_mask, is_causal)
        den = den.clamp_min(1e-30)
        approx = num / den.unsqueeze(-1)  # Ã (B,H,L,Ev)
        idx, weights = plan["idx"], plan["weights"]
        c_drawn = (fq.unsqueeze(-2) * gather_rows(fk, idx)).sum(-1) / den.unsqueeze(-1)
        c_drawn = c_drawn * _mask_factor(attn_mask, idx, probs.shape)
        p_drawn = probs.gather(-1, idx)
        ratio = torch.where(weights > 0, c_drawn / p_drawn.clamp_min(1e-30), 0.0)
        vd = v_drawn.detach().float()
        y = weights.unsqueeze(-1) * vd  # per-shot terms of Ô
        x = (weights * ratio).unsqueeze(-1) * vd  # per-shot terms of Ĉ
        cv_hat = x.sum(-2)
        beta = leave_one_row_out_beta(y, x, weights)
        alive = (probs.sum(-1, keepdim=True) > 0)
        corrected = estimate.float() - beta * (cv_hat - approx)
        return torch.where(alive, corrected, 0.0).to(estimate.dtype)


def _mask_factor(attn_mask: Tensor | None, idx: Tensor, shape) -> Tensor:
    """exp(additive mask) at the drawn entries (1 for boolean masks on drawn, hence allowed, keys)."""
    if attn_mask is None or attn_mask.dtype == torch.bool:
        return torch.ones((), device=idx.device)
    additive = sdpa_mask_to_additive(attn_mask, torch.float32).expand(shape)
    return torch.exp(additive.gather(-1, idx))


def side_information_cost(length: int, source: int, head_dim: int, value_dim: int, *, num_samples: int,
                          control_variate: bool, backend: str, cv_kind: str = "block", cv_block: int | None = None,
                          cv_features: int | None = None, causal_or_unmasked: bool = True) -> dict[str, int]:
    """Multiply-adds per head of the estimator's classical side information vs exact attention."""
    exact = length * source * (head_dim + value_dim)
    side = source * value_dim * value_dim if backend in ("stratified", "hybrid") else 0  # value order
    if control_variate and cv_kind == "block":
        block = cv_block or default_block(source, num_samples)
        side += length * num_samples * block * (head_dim + value_dim)
    elif control_variate:
        r = cv_features or num_samples
        if causal_or_unmasked:
            side += (length + source) * r * (head_dim + value_dim)
        else:
            side += length * source * r + (length + source) * r * head_dim
        side += length * num_samples * r
    estimator = length * num_samples * value_dim
    return {"exact_macs": exact, "side_information_macs": side, "estimator_macs": estimator}
