"""Approximate-attention baselines in SDPA's layout: Performer (FAVOR+), Nyström, Linformer.

Shapes: q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev) -> (B, H, L, Ev). Masks follow SDPA's
polarity (bool True = takes part, or an additive float mask broadcastable to (B, H, L, S)).
Each takes a ``generator`` for its randomness (same generator state, same output).

Costs per head: Performer O((L + S)·r·E) without a mask or with ``is_causal`` (chunked prefix
sums), O(L·S·r) with an explicit mask; Nyström O((L + S)·c·E + c³); Linformer O((L + S)·k·E).
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


def favor_features(x: Tensor, w: Tensor, *, is_query: bool) -> Tensor:
    """Positive random features exp(w·x - |x|²/2) (…, r), stabilised by a max that cancels on normalising.

    Queries subtract their own row maximum (cancels in the per-row ratio); keys subtract one
    maximum over all keys of the head (cancels as well).
    """
    proj = x @ w.T - 0.5 * x.square().sum(-1, keepdim=True)
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
    scores = fq @ fk.transpose(-2, -1)
    if is_causal:
        bias = causal_additive_mask(fq.size(-2), fk.size(-2), fq.dtype, fq.device)
    else:
        bias = torch.zeros(fq.size(-2), fk.size(-2), dtype=fq.dtype, device=fq.device)
    extra = sdpa_mask_to_additive(attn_mask, fq.dtype)
    if extra is not None:
        bias = bias + extra
    weights = scores * torch.exp(bias)
    return weights @ v, weights.sum(-1)


def performer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    num_features: int = 64,
    scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FAVOR+ attention with ``num_features`` positive orthogonal random features; (B,H,L,Ev).

    Rows whose keys are all masked out give zeros.
    """
    check_qkv(q, k, v)
    if num_features < 1:
        raise InvalidArgumentError(f"num_features must be >= 1, got {num_features}")
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    w = orthogonal_gaussian(num_features, q.size(-1), generator=generator, dtype=q.dtype, device=q.device)
    root = math.sqrt(scale)
    fq = favor_features(q * root, w, is_query=True)
    fk = favor_features(k * root, w, is_query=False)
    num, den = linear_attention_parts(fq, fk, v, attn_mask, is_causal)
    return torch.where(den.unsqueeze(-1) > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny).unsqueeze(-1), 0.0)


def nystrom_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    num_landmarks: int = 64,
    scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Nyströmformer attention with ``num_landmarks`` segment-mean landmarks; (B,H,L,Ev).

    softmax(QKᵀ) ≈ softmax(Q K̃ᵀ) · pinv(softmax(Q̃ K̃ᵀ)) · softmax(Q̃ Kᵀ) V. Masks are applied to
    the key side (the third factor) and must be key masks (…, 1, S): causal or per-query masks
    raise InvalidArgumentError. Landmarks are deterministic segment means, so ``generator`` is
    unused (accepted for a uniform signature).
    """
    del generator
    check_qkv(q, k, v)
    if num_landmarks < 1:
        raise InvalidArgumentError(f"num_landmarks must be >= 1, got {num_landmarks}")
    _require_key_mask("nystrom_attention", attn_mask, is_causal)
    length, source = q.size(-2), k.size(-2)
    c = min(num_landmarks, length, source)
    q_land = _segment_means(q, c)
    k_land = _segment_means(k, c)
    f1 = safe_softmax(scaled_scores(q, k_land, None, False, scale))
    f2 = safe_softmax(scaled_scores(q_land, k_land, None, False, scale))
    f3 = safe_softmax(scaled_scores(q_land, k, attn_mask, False, scale))
    out = f1 @ (torch.linalg.pinv(f2.double()).to(q.dtype) @ (f3 @ v))
    if attn_mask is not None:
        alive = torch.isfinite(sdpa_mask_to_additive(attn_mask, q.dtype)).any(-1, keepdim=True)
        out = torch.where(alive, out, 0.0)
    return out


def _require_key_mask(name: str, attn_mask: Tensor | None, is_causal: bool) -> None:
    """InvalidArgumentError unless the mask is None or a key mask (…, 1, S) and not causal."""
    if is_causal or (attn_mask is not None and attn_mask.dim() >= 2 and attn_mask.size(-2) != 1):
        raise InvalidArgumentError(
            f"{name} supports only key masks of shape (…, 1, S), not causal or per-query masks; "
            f"got is_causal={is_causal}, attn_mask {None if attn_mask is None else tuple(attn_mask.shape)}"
        )


def _segment_means(x: Tensor, c: int) -> Tensor:
    """Means of ``c`` contiguous, nearly equal segments along axis -2: (…, c, E)."""
    n = x.size(-2)
    bounds = torch.linspace(0, n, c + 1).round().long()
    return torch.stack([x[..., bounds[i] : bounds[i + 1], :].mean(-2) for i in range(c)], dim=-2)


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
    """Linformer attention with untrained random projections E, F (proj_dim, S) of keys and values.

    softmax(Q (E K)ᵀ) (F V). Masked keys are zeroed before projecting; only key masks (…, 1, S)
    are supported (causal or per-query masks raise InvalidArgumentError).
    """
    check_qkv(q, k, v)
    if proj_dim < 1:
        raise InvalidArgumentError(f"proj_dim must be >= 1, got {proj_dim}")
    _require_key_mask("linformer_attention", attn_mask, is_causal)
    source = k.size(-2)
    where = generator.device if generator is not None else torch.device("cpu")
    proj = torch.randn(2, proj_dim, source, generator=generator, dtype=torch.float64, device=where) / math.sqrt(proj_dim)
    e_proj, f_proj = proj.to(dtype=q.dtype, device=q.device)
    keep = None
    if attn_mask is not None:
        keep = torch.isfinite(sdpa_mask_to_additive(attn_mask, q.dtype)).to(q.dtype)  # (…, 1, S)
        k = k * keep.transpose(-2, -1)
        v = v * keep.transpose(-2, -1)
    k_low = e_proj @ k
    v_low = f_proj @ v
    return safe_softmax(scaled_scores(q, k_low, None, False, scale)) @ v_low
