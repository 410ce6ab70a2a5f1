"""Stored bytes, compression ratio and output error of each compression method on two layers."""

import torch

from qtransformers import QRHLayer, mixers
from qtransformers.compress import compress_layer

torch.manual_seed(0)
x = torch.randn(2, 256, 512, generator=torch.Generator().manual_seed(1))
layers = {
    "QRHLayer(128) (width 512)": QRHLayer(128, causal=True),
    "spectral mixer (width 512)": mixers.build("spectral", 512),
}
runs = [
    ("int8", {}),
    ("int4", {}),
    ("prune", {"sparsity": 0.5}),
    ("lowrank", {"rank_fraction": 0.25}),
    ("polar", {"mag_bits": 4, "phase_bits": 4}),
]
print("| layer | method | original bytes | stored bytes | ratio | rel. output error |")
print("|---|---|---|---|---|---|")
for name, layer in layers.items():
    for method, opts in runs:
        if method == "polar" and not hasattr(layer, "complex_weight"):
            continue
        r = compress_layer(layer, method, x, **opts)
        print(
            f"| {name} | {method} {opts or ''} | {r.original_bytes} | {r.stored_bytes} | {r.ratio:.2f} | {r.output_error:.4f} |"
        )
