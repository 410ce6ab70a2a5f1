"""Regime (b) of the attention-error bench: q, k, v captured from a small trained byte-level model.

The model is torch's own ``nn.TransformerEncoderLayer`` stack (causal, sinusoidal positions,
head dimension 64), trained for a fixed wall-clock budget on a text file; the capture runs it
on held-out text and records every layer's per-head q, k, v from the ``self_attn`` inputs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """(length, dim) sinusoidal position table of "Attention is all you need"."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class TinyByteTransformer(nn.Module):
    """Causal byte-level LM from ``nn.TransformerEncoderLayer``: (B, T) uint8 -> (B, T, 256) logits."""

    def __init__(self, dim: int = 128, num_heads: int = 2, num_layers: int = 2) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(256, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, num_heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 256)

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-byte logits (B, T, 256) of ``tokens`` (B, T)."""
        t = tokens.size(1)
        x = self.embed(tokens.long()) + sinusoidal_positions(t, self.dim).to(tokens.device)
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=True)
        return self.head(self.norm(x))


def _read_bytes(path: str | Path) -> Tensor:
    data = Path(path).read_bytes()
    if len(data) < 2048:
        raise InvalidArgumentError(f"--data {path} has {len(data)} bytes; at least 2048 are needed")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def train_tiny_model(
    data_path: str | Path,
    *,
    seconds: float,
    seq_len: int = 256,
    batch: int = 16,
    seed: int = 0,
    dim: int = 128,
    num_heads: int = 2,
) -> tuple[TinyByteTransformer, list[float]]:
    """Train a :class:`TinyByteTransformer` (width ``dim``, ``num_heads`` heads) on the first 90% of a file
    for ``seconds``; returns (model, losses)."""
    data = _read_bytes(data_path)
    train = data[: int(0.9 * len(data))]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyByteTransformer(dim, num_heads)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    losses: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or not losses:
        idx = torch.randint(0, len(train) - seq_len - 1, (batch,), generator=gen)
        chunk = torch.stack([train[i : i + seq_len + 1] for i in idx.tolist()]).long()
        logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses


@torch.no_grad()
def capture_qkv(model: TinyByteTransformer, data_path: str | Path, *, length: int, batch: int = 2) -> dict[str, Tensor]:
    """q, k, v (batch, layers * heads, length, head_dim) of ``model`` on held-out text of ``data_path``."""
    data = _read_bytes(data_path)
    held_out = data[int(0.9 * len(data)) :]
    if len(held_out) < batch * length:
        raise InvalidArgumentError(f"held-out text has {len(held_out)} bytes, need batch*length = {batch * length}")
    tokens = held_out[: batch * length].view(batch, length)
    captured: list[tuple[Tensor, Tensor, Tensor]] = []

    def hook(module: nn.MultiheadAttention, args: tuple) -> None:
        x = args[0]
        q, k, v = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        heads = module.num_heads
        split = [t.view(batch, length, heads, -1).transpose(1, 2) for t in (q, k, v)]
        captured.append(tuple(split))

    handles = [layer.self_attn.register_forward_pre_hook(hook) for layer in model.layers]
    try:
        model(tokens)
    finally:
        for h in handles:
            h.remove()
    q, k, v = (torch.cat([c[i] for c in captured], dim=1).contiguous() for i in range(3))
    return {"q": q, "k": k, "v": v}


def load_or_capture(
    data_path: str | Path | None, capture_path: str | Path, *, length: int, train_seconds: float
) -> dict[str, Tensor]:
    """Read the capture file if it exists (and is long enough); else train, capture and save it."""
    capture_path = Path(capture_path)
    if capture_path.is_file():
        tensors = load_file(str(capture_path))
        if set(tensors) != {"q", "k", "v"} or tensors["q"].dim() != 4:
            raise ShapeError(f"{capture_path} must hold q, k, v tensors of shape (B, H, T, E)")
        if tensors["q"].size(2) >= length:
            return tensors
    if data_path is None:
        raise InvalidArgumentError(f"no capture at {capture_path} (length >= {length}); pass --data to train one")
    model, _ = train_tiny_model(data_path, seconds=train_seconds)
    tensors = capture_qkv(model, data_path, length=length)
    capture_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(capture_path))
    return tensors
