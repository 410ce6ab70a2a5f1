"""Compression: bit packing, int8/int4, pruning, low rank, polar; true bytes and layer error."""

from __future__ import annotations

import math

import pytest
import torch

from qtransformers import QRHLayer, mixers
from qtransformers.compress import (
    compress_layer,
    low_rank,
    magnitude_prune,
    pack_bits,
    polar_quantize,
    quantize_weight,
    unpack_bits,
)
from qtransformers.exceptions import DTypeError, InvalidArgumentError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_roundtrip_and_true_size(bits):
    codes = torch.randint(0, 2**bits, (1001,), generator=gen(bits))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, 1001), codes)


@pytest.mark.parametrize("bits", (8, 4))
def test_quantize_error_and_bytes(bits):
    w = torch.randn(64, 48, generator=gen())
    q = quantize_weight(w, bits, group=4)
    assert q.nbytes == 64 * 48 * bits // 8 + 16 * 4
    scale = q.scales.repeat_interleave(4)[:, None]
    assert torch.all((q.decompress() - w).abs() <= scale / 2 + 1e-6)
    with pytest.raises(InvalidArgumentError):
        quantize_weight(w, 3)


def test_prune_keeps_largest_and_counts_mask_bits():
    w = torch.randn(32, 32, generator=gen(1))
    p = magnitude_prune(w, 0.75)
    dense = p.decompress()
    assert (dense == 0).sum() == 768
    kept = dense != 0
    assert torch.equal(dense[kept], w[kept])
    assert w[kept].abs().min() >= w[~kept].abs().max()
    assert p.nbytes == 1024 // 8 + 256 * 4


def test_low_rank_is_the_best_approximation():
    w = torch.randn(40, 30, generator=gen(2), dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    for r in (5, 30):
        lr = low_rank(w, r)
        assert torch.isclose((lr.decompress() - w).norm(), s[r:].norm(), atol=1e-9)
        assert lr.nbytes == r * (40 + 30) * 8


def test_polar_quantize_bounds_and_bytes():
    z = torch.polar(torch.rand(6, 50, generator=gen(3)), (torch.rand(6, 50, generator=gen(4)) * 2 - 1) * math.pi)
    p = polar_quantize(z, mag_bits=4, phase_bits=4)
    assert p.nbytes == 300 + 6 * 4
    back = p.decompress()
    scale = z.abs().amax(dim=1, keepdim=True)
    assert torch.all((back.abs() - z.abs()).abs() <= scale / 30 + 1e-6)
    dphase = torch.remainder(back.angle() - z.angle() + math.pi, 2 * math.pi) - math.pi
    small = z.abs() > scale / 15  # the phase of a magnitude rounded to zero is meaningless
    assert torch.all(dphase[small].abs() <= math.pi / 16 + 1e-5)
    with pytest.raises(DTypeError):
        polar_quantize(z.real)


def test_compress_layer_reports_bytes_ratio_and_error():
    torch.manual_seed(0)
    layer, x = QRHLayer(16, causal=True), torch.randn(2, 32, 64, generator=gen(5))
    r8, r4 = compress_layer(layer, "int8", x), compress_layer(layer, "int4", x)
    assert r8.original_bytes == sum(p.numel() * 4 for p in layer.parameters())
    assert 3.5 < r8.ratio < 4 and r8.output_error < 0.02
    assert 6 < r4.ratio < 8 and r8.output_error < r4.output_error < 0.2
    pruned = compress_layer(layer, "prune", x, sparsity=0.5)
    assert pruned.output_error > 0 and pruned.stored_bytes < r8.original_bytes
    assert compress_layer(layer, "lowrank", x, rank=64).output_error < 1e-4  # full rank is exact
    with pytest.raises(InvalidArgumentError, match="complex"):
        compress_layer(layer, "polar", x)


def test_polar_compresses_the_spectral_mixer_band_weights():
    torch.manual_seed(0)
    mixer, x = mixers.build("spectral", 32), torch.randn(2, 40, 32, generator=gen(6))
    rep = compress_layer(mixer, "polar", x, mag_bits=4, phase_bits=4)
    band_bytes = 2 * mixer.log_magnitude.numel() * 4
    assert rep.original_bytes - rep.stored_bytes == band_bytes - (mixer.log_magnitude.numel() + 4 * 4)
    assert 0 < rep.output_error < 0.5
