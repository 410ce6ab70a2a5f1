"""Approximate-attention baselines in SDPA's layout: Performer (FAVOR+), Nyström, Linformer.

Shapes: q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev) -> (B, H, L, Ev). Masks follow SDPA's
polarity (bool True = takes part, or an additive float mask broadcastable to (B, H, L, S)).
Each takes a ``generator`` for its randomness (same generator state, same output).

Costs per head: Performer O((L + S)·r·E) without a mask or with ``is_causal`` (chunked prefix
sums), O(L·S·r) with an explicit mask; Nyström O((L + S)·c·E + c³·iterations); Linformer
O((L + S)·k·E).

Each follows the published algorithm as its public implementation runs it (performer-pytorch,
nystrom-attention, linformer), so that it is at least as accurate on the same inputs
(``tests/test_baselines_public.py``): FAVOR+ with the feature regulariser ``eps``, Nyström with
the iterative Moore-Penrose inverse, Linformer with the mean-pooling projection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.attention import safe_softmax, scaled_scores
from qtransformers.functional.masks import causal_additive_mask, sdpa_mask_to_additive


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise ShapeError unless q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev) fit together."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ShapeError(f"q, k, v must be 4-D (B, H, L, E); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.size(-1) != k.size(-1):
        raise ShapeError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit: need q (B,H,L,E), "
            "k (B,H,S,E), v (B,H,S,Ev)"
        )


def orthogonal_gaussian(rows: int, dim: int, *, generator: torch.Generator | None, dtype, device) -> Tensor:
    """(rows, dim) Gaussian directions, orthogonal within each block of ``dim`` rows, norms chi-distributed.

    The numbers are drawn on the generator's device (CPU without a generator), then moved.
    """
    where = generator.device if generator is not None else torch.device("cpu")
    blocks = []
    for _ in range(math.ceil(rows / dim)):
        g = torch.randn(dim, dim, generator=generator, dtype=torch.float64, device=where)
        qmat, _ = torch.linalg.qr(g)
        blocks.append(qmat.T)
    w = torch.cat(blocks)[:rows]
    norms = torch.randn(rows, dim, generator=generator, dtype=torch.float64, device=where).norm(dim=1, keepdim=True)
    return (w * norms).to(dtype=dtype, device=device)


def favor_exponent(x: Tensor, w: Tensor) -> Tensor:
    """Exponent w·x - |x|²/2 of the positive random features: x (…, E), w (r, E) -> (…, r)."""
    return x @ w.T - 0.5 * x.square().sum(-1, keepdim=True)


def favor_features(x: Tensor, w: Tensor, *, is_query: bool) -> Tensor:
    """Positive random features exp(w·x - |x|²/2) (…, r), stabilised by a max that cancels on normalising.

    Queries subtract their own row maximum (cancels in the per-row ratio); keys subtract one
    maximum over all keys of the head (cancels as well).
    """
    proj = favor_exponent(x, w)
    if is_query:
        stab = proj.amax(dim=-1, keepdim=True)
    else:
        stab = proj.amax(dim=(-2, -1), keepdim=True)
    return torch.exp(proj - stab.detach())


def _causal_linear(fq: Tensor, fk: Tensor, v: Tensor, chunk: int = 64) -> tuple[Tensor, Tensor]:
    """Causal Σ_{j<=i} fq_i·fk_j v_j and Σ_{j<=i} fq_i·fk_j in chunks of prefix sums: (…, L, Ev), (…, L)."""
    *lead, length, r = fq.shape
    pad = (-length) % chunk
    if pad:
        fq, fk, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (fq, fk, v))
    n = fq.size(-2) // chunk
    fq_c = fq.reshape(*lead, n, chunk, r)
    fk_c = fk.reshape(*lead, n, chunk, r)
    v_c = v.reshape(*lead, n, chunk, v.size(-1))
    kv = fk_c.transpose(-2, -1) @ v_c  # (…, n, r, Ev)
    ks = fk_c.sum(-2)  # (…, n, r)
    kv_prev = kv.cumsum(-3) - kv
    ks_prev = ks.cumsum(-2) - ks
    local = (fq_c @ fk_c.transpose(-2, -1)).tril()  # (…, n, C, C)
    num = fq_c @ kv_prev + local @ v_c
    den = (fq_c * ks_prev.unsqueeze(-2)).sum(-1) + local.sum(-1)
    num = num.reshape(*lead, n * chunk, -1)[..., :length, :]
    den = den.reshape(*lead, n * chunk)[..., :length]
    return num, den


def linear_attention_parts(
    fq: Tensor, fk: Tensor, v: Tensor, attn_mask: Tensor | None, is_causal: bool
) -> tuple[Tensor, Tensor]:
    """Unnormalised numerator (B,H,L,Ev) and denominator (B,H,L) of Σ_j fq_i·fk_j·mask_ij v_j."""
    if attn_mask is None and not is_causal:
        return fq @ (fk.transpose(-2, -1) @ v), (fq * fk.sum(-2, keepdim=True)).sum(-1)
    if attn_mask is None and fq.size(-2) == fk.size(-2):
        return _causal_linear(fq, fk, v)
    weights = (fq @ fk.transpose(-2, -1)) * torch.exp(_dense_bias(fq, fk, attn_mask, is_causal))
    return weights @ v, weights.sum(-1)


def _dense_bias(fq: Tensor, fk: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
    """Additive (…, L, S) bias of ``is_causal`` plus ``attn_mask`` for fq (…, L, ·) and fk (…, S, ·)."""
    if is_causal:
        bias = causal_additive_mask(fq.size(-2), fk.size(-2), fq.dtype, fq.device)
    else:
        bias = torch.zeros(fq.size(-2), fk.size(-2), dtype=fq.dtype, device=fq.device)
    extra = sdpa_mask_to_additive(attn_mask, fq.dtype)
    return bias if extra is None else bias + extra


def _visible_keys(
    reach: Tensor, fq: Tensor, fk: Tensor, v: Tensor, attn_mask: Tensor | None, is_causal: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Over the keys each query row sees: max of ``reach`` (…, L), Σ gate·v (…, L, Ev), Σ gate (…, L).

    ``reach`` (…, S) is one number per key; the gate is exp(mask) (1 for a plain visible key).
    """
    length, source = fq.size(-2), fk.size(-2)
    if attn_mask is None and not is_causal:
        shape = (*reach.shape[:-1], length)
        count = torch.full(shape, float(source), dtype=v.dtype, device=v.device)
        return reach.amax(-1, keepdim=True).expand(shape), v.sum(-2, keepdim=True).expand(*shape, -1), count
    if attn_mask is None and length == source:
        count = torch.arange(1, length + 1, dtype=v.dtype, device=v.device).expand(reach.shape)
        return reach.cummax(-1).values, v.cumsum(-2), count
    bias = _dense_bias(fq, fk, attn_mask, is_causal)
    gate = torch.exp(bias)
    return (reach.unsqueeze(-2) + bias).amax(-1), gate @ v, gate.sum(-1)


def performer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    num_features: int = 64,
    scale: float | None = None,
    eps: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FAVOR+ attention with ``num_features`` positive orthogonal random features; (B,H,L,Ev).

    With x = q·scale^½, y = k·scale^½, the features are φ(x) = exp(w·x - |x|²/2 - max_l w_l·x)
    + eps and φ(y) = exp(w·y - |y|²/2 - s) + eps, s the largest w_l·y_j over the keys the row
    sees, as in the FAVOR+ reference implementations (performer-pytorch: eps = 1e-4). ``eps``
    pulls the estimate toward uniform attention: when the features cannot resolve the softmax
    (large |q|·|k|·scale) the output tends to the mean of the visible values. ``eps=0`` is plain
    FAVOR+ (its kernel estimate is unbiased). Computed with stabilised exponents, so nothing
    under- or overflows in float32; s uses only visible keys, so a causal output does not depend
    on future keys (the one stabiliser shared by all keys cancels exactly). Rows whose keys are
    all masked out give zeros.
    """
    check_qkv(q, k, v)
    if num_features < 1:
        raise InvalidArgumentError(f"num_features must be >= 1, got {num_features}")
    if not (math.isfinite(eps) and eps >= 0):
        raise InvalidArgumentError(f"eps must be finite and >= 0, got {eps}")
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    w = orthogonal_gaussian(num_features, q.size(-1), generator=generator, dtype=q.dtype, device=q.device)
    root = math.sqrt(scale)
    q, k = q * root, k * root
    key_exp = favor_exponent(k, w)
    top = key_exp.amax(dim=(-2, -1), keepdim=True).detach()
    # φ = e^{-c}·(stable features + eps·e^{c}) with c = |x|²/2 for queries and s - top for keys;
    # the factors e^{-c} cancel in the ratio, and capping c keeps eps·e^{c} finite.
    cap = math.log(torch.finfo(q.dtype).max) / 4
    lift_q = torch.exp((0.5 * q.square().sum(-1, keepdim=True)).clamp_max(cap)).detach()
    fq = favor_features(q, w, is_query=True) + eps * lift_q
    fk = torch.exp(key_exp - top)
    num, den = linear_attention_parts(fq, fk, v, attn_mask, is_causal)
    reach = (key_exp + 0.5 * k.square().sum(-1, keepdim=True)).amax(-1).detach()  # max_l w_l·y_j
    seen, v_sum, count = _visible_keys(reach, fq, fk, v, attn_mask, is_causal)
    ridge = eps * torch.exp((seen - top.squeeze(-1)).clamp_max(cap)) * fq.sum(-1)
    num = num + ridge.unsqueeze(-1) * v_sum
    den = den + ridge * count
    return torch.where(den.unsqueeze(-1) > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny).unsqueeze(-1), 0.0)


def nystrom_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    num_landmarks: int = 64,
    pinv_iterations: int = 6,
    scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Nyströmformer attention with ``num_landmarks`` segment-mean landmarks; (B,H,L,Ev).

    softmax(Q K̃ᵀ) · pinv(softmax(Q̃ K̃ᵀ)) · softmax(Q̃ Kᵀ) V, with Q̃, K̃ the means of c nearly
    equal contiguous segments and pinv the Nyströmformer's iterative Moore-Penrose inverse
    (``pinv_iterations`` steps from the standard start Aᵀ / (‖A‖₁‖A‖∞), see ``iterative_pinv``):
    the truncated iteration damps the tiny singular values that an exact pinv would invert.
    Only key masks (…, 1, S): K̃ averages the unmasked keys of each segment, a landmark whose
    segment is all masked takes no part, and the mask enters the third factor; causal or
    per-query masks raise InvalidArgumentError. Landmarks are deterministic, so ``generator`` is
    unused (accepted for a uniform signature).
    """
    del generator
    check_qkv(q, k, v)
    if num_landmarks < 1:
        raise InvalidArgumentError(f"num_landmarks must be >= 1, got {num_landmarks}")
    if pinv_iterations < 1:
        raise InvalidArgumentError(f"pinv_iterations must be >= 1, got {pinv_iterations}")
    _require_key_mask("nystrom_attention", attn_mask, is_causal)
    c = min(num_landmarks, q.size(-2), k.size(-2))
    q_land, _ = segment_means(q, c, None)
    k_land, land_alive = segment_means(k, c, _key_keep(attn_mask, q.dtype))
    f1 = safe_softmax(scaled_scores(q, k_land, land_alive, False, scale))
    f2 = safe_softmax(scaled_scores(q_land, k_land, land_alive, False, scale))
    f3 = safe_softmax(scaled_scores(q_land, k, attn_mask, False, scale))
    return f1 @ (iterative_pinv(f2, pinv_iterations) @ (f3 @ v))


def iterative_pinv(a: Tensor, iterations: int) -> Tensor:
    """Moore-Penrose inverse of a (…, c, c) by the Nyströmformer's third-order Newton-Schulz steps.

    Starts from Z = Aᵀ / (max column sum · max row sum of |A|) per matrix, which makes the
    iteration converge (a zero matrix gives zeros), and repeats Z ← ¼ Z (13 I - AZ (15 I - AZ (7 I - AZ))).
    """
    mag = a.abs()
    norms = (mag.sum(-2).amax(-1) * mag.sum(-1).amax(-1)).clamp_min(torch.finfo(a.dtype).tiny)
    z = a.transpose(-2, -1) / norms[..., None, None]  # a zero matrix stays zero
    eye = torch.eye(a.size(-1), dtype=a.dtype, device=a.device)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def _require_key_mask(name: str, attn_mask: Tensor | None, is_causal: bool) -> None:
    """InvalidArgumentError unless the mask is None or a key mask (…, 1, S) and not causal."""
    if is_causal or (attn_mask is not None and attn_mask.dim() >= 2 and attn_mask.size(-2) != 1):
        raise InvalidArgumentError(
            f"{name} supports only key masks of shape (…, 1, S), not causal or per-query masks; "
            f"got is_causal={is_causal}, attn_mask {None if attn_mask is None else tuple(attn_mask.shape)}"
        )


def _key_keep(attn_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """1.0 where a key mask (…, 1, S) lets the key take part, else 0.0; None without a mask."""
    if attn_mask is None:
        return None
    return torch.isfinite(sdpa_mask_to_additive(attn_mask, dtype)).to(dtype)


def segment_means(x: Tensor, c: int, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """Means of ``c`` contiguous, nearly equal segments along axis -2, and which are non-empty.

    x (…, n, E), keep None or (…, 1, n) weights in {0, 1} -> means (…, c, E) over the kept rows
    of each segment (zeros for an empty one) and alive (…, 1, c) bool.
    """
    n = x.size(-2)
    bounds = torch.linspace(0, n, c + 1, device=x.device).round().long()
    pos = torch.arange(n, device=x.device)
    member = ((pos >= bounds[:-1, None]) & (pos < bounds[1:, None])).to(x.dtype)  # (c, n)
    if keep is not None:
        member = member * keep
    count = member.sum(-1, keepdim=True)  # (…, c, 1)
    means = (member @ x) / count.clamp_min(1.0)
    return means, (count > 0).transpose(-2, -1)


def linformer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    proj_dim: int = 64,
    scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Linformer attention softmax(Q (E K)ᵀ) (F V) with the mean-pooling projection; (B,H,L,Ev).

    E = F average ``proj_dim`` nearly equal contiguous segments of the keys and values (the
    pooling projection with kernel and stride S/proj_dim that the Linformer paper lists beside
    learned ones). Untrained, a zero-mean random projection (such as linformer's init) adds up
    all S values with random signs and errs far more (``tests/test_baselines_public.py``). Only key masks (…, 1, S): each segment averages
    its unmasked keys and values, an all-masked segment takes no part; causal or per-query
    masks raise InvalidArgumentError. Deterministic, so ``generator`` is unused (accepted for
    a uniform signature).
    """
    del generator
    check_qkv(q, k, v)
    if proj_dim < 1:
        raise InvalidArgumentError(f"proj_dim must be >= 1, got {proj_dim}")
    _require_key_mask("linformer_attention", attn_mask, is_causal)
    pooled, alive = segment_means(torch.cat([k, v], -1), min(proj_dim, k.size(-2)), _key_keep(attn_mask, q.dtype))
    k_low, v_low = pooled.split([k.size(-1), v.size(-1)], -1)
    return safe_softmax(scaled_scores(q, k_low, alive, False, scale)) @ v_low
