"""Caches for the decode bench: (keys, values, queries) of B = 1, H heads, S positions, width E.

* ``clustered``: 64 cluster centres of norm 6 per head; each key is a centre plus N(0, 0.3²)
  noise, each value its cluster's N(0, 1) mean plus N(0, 1) noise; each query is a centre
  (norm 6) plus N(0, 0.3²) noise. The query's own cluster and all the others each hold a large
  share of the softmax mass.
* ``needle``: keys and values N(0, 1), queries N(0, 1); 16 needle keys per head at random
  positions point along the query with a logit chosen so that the needles hold 80% of the
  query's softmax mass; the other 20% is spread over all the other keys.
* ``trained``: one layer's keys and values of a small byte-level transformer
  (:class:`qtransformers.bench.capture.TinyByteTransformer`, width 512, 8 heads of width 64,
  2 layers) trained for ``train_seconds`` on the first 90% of a text file, run chunk by chunk
  at its training context (256 bytes) over that training text; the cache is the last layer's
  keys and values of the first S / 256 chunks, in order. Queries are the same layer's queries
  at the last position of chunks of the held-out 10%.

Queries are (n_queries, 1, H, 1, E): one decode query per head, several independent ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.bench.capture import TinyByteTransformer, _read_bytes, train_tiny_model
from qtransformers.exceptions import InvalidArgumentError

CONTEXT = 256


def clustered(size: int, heads: int, dim: int, n_queries: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Clustered keys (1, H, S, E), values (1, H, S, E) and queries (n, 1, H, 1, E)."""
    centres = F.normalize(torch.randn(heads, 64, dim, generator=gen), dim=-1) * 6.0
    means = torch.randn(heads, 64, dim, generator=gen)
    label = torch.randint(0, 64, (heads, size), generator=gen)
    pick = label.unsqueeze(-1).expand(heads, size, dim)
    keys = centres.gather(1, pick) + 0.3 * torch.randn(heads, size, dim, generator=gen)
    values = means.gather(1, pick) + torch.randn(heads, size, dim, generator=gen)
    which = torch.randint(0, 64, (n_queries, heads), generator=gen)
    q = centres[torch.arange(heads), which] + 0.3 * torch.randn(n_queries, heads, dim, generator=gen)
    return keys.unsqueeze(0), values.unsqueeze(0), q.view(n_queries, 1, heads, 1, dim)


def needle(size: int, heads: int, dim: int, n_queries: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Needle keys (1, H, S, E), values (1, H, S, E), queries (n, 1, H, 1, E): 16 needles hold 80% of the mass.

    Each query has its own 16 needles (keys along it, at distinct random positions), all planted
    in the one cache; a needle's logit is set from the query's scores against the plain keys.
    """
    scale = 1.0 / math.sqrt(dim)
    keys = torch.randn(heads, size, dim, generator=gen)
    values = torch.randn(heads, size, dim, generator=gen)
    q = torch.randn(n_queries, heads, dim, generator=gen)
    per = 16
    slots = torch.randperm(size, generator=gen)[: n_queries * per].view(n_queries, per)
    for i in range(n_queries):
        rest = torch.logsumexp((keys @ q[i].unsqueeze(-1)).squeeze(-1) * scale, dim=-1)  # (H,)
        logit = rest + math.log(4.0 / per)  # per·e^logit = 4·e^rest: needles hold 80%
        unit = q[i] / q[i].norm(dim=-1, keepdim=True)
        length = logit / (scale * q[i].norm(dim=-1))  # (H,)
        keys[:, slots[i]] = (unit * length.unsqueeze(-1)).unsqueeze(1).expand(heads, per, dim)
    return keys.unsqueeze(0), values.unsqueeze(0), q.view(n_queries, 1, heads, 1, dim)


def train_decode_model(data_path: str | Path, seconds: float) -> tuple[TinyByteTransformer, float]:
    """The ``trained`` cache's model (width 512, 8 heads) and its last training loss (nats/byte)."""
    torch.manual_seed(0)
    model, losses = train_tiny_model(data_path, seconds=seconds, seq_len=CONTEXT, batch=8, dim=512, num_heads=8)
    return model, losses[-1]


@torch.no_grad()
def _layer_qkv(model: TinyByteTransformer, chunks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Last layer's q, k, v (N, H, CONTEXT, E) of ``chunks`` (N, CONTEXT)."""
    captured: list[tuple[Tensor, ...]] = []
    layer = model.layers[-1].self_attn

    def hook(module: nn.MultiheadAttention, args: tuple) -> None:
        x = args[0]
        parts = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        n, t = x.shape[:2]
        captured.append(tuple(p.view(n, t, module.num_heads, -1).transpose(1, 2) for p in parts))

    handle = layer.register_forward_pre_hook(hook)
    try:
        model(chunks)
    finally:
        handle.remove()
    return captured[0]


@torch.no_grad()
def trained(
    model: TinyByteTransformer, data_path: str | Path, size: int, n_queries: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Trained-model keys (1, H, S, E), values (1, H, S, E) and held-out queries (n, 1, H, 1, E)."""
    data = _read_bytes(data_path)
    split = int(0.9 * len(data))
    train, held = data[:split], data[split:]
    n_chunks = math.ceil(size / CONTEXT)
    if n_chunks * CONTEXT > len(train) or n_queries * CONTEXT > len(held):
        raise InvalidArgumentError(
            f"{data_path} is too short for a {size}-position cache and {n_queries} held-out queries"
        )
    ks, vs = [], []
    chunks = train[: n_chunks * CONTEXT].view(n_chunks, CONTEXT)
    for part in chunks.split(32):
        _, k, v = _layer_qkv(model, part)
        ks.append(k)
        vs.append(v)
    k = torch.cat(ks).permute(1, 0, 2, 3).reshape(1, ks[0].size(1), -1, ks[0].size(-1))[:, :, :size]
    v = torch.cat(vs).permute(1, 0, 2, 3).reshape(1, vs[0].size(1), -1, vs[0].size(-1))[:, :, :size]
    q, _, _ = _layer_qkv(model, held[: n_queries * CONTEXT].view(n_queries, CONTEXT))
    q = q[:, :, -1:, :].unsqueeze(1)  # (n, 1, H, 1, E)
    return k.contiguous(), v.contiguous(), q.contiguous()
