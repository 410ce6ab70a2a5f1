"""Energy ratio ‖out‖/‖in‖ of the ΨQRH operator, non-causal (conserved) and causal (reported)."""

import torch

from qtransformers.functional import energy_ratio, qrh

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 1024, 64, 4, generator=g)  # (B, T, D, 4)
q = torch.nn.functional.normalize(torch.randn(2, 64, 4, generator=g), dim=-1)
for a in (0.0, 0.5, 1.0, 2.0):
    alpha = torch.full((64,), a)
    full = energy_ratio(x, qrh(x, alpha, q[0], q[1]))
    causal = energy_ratio(x, qrh(x, alpha, q[0], q[1], causal=True))
    print(f"alpha={a}: non-causal {full:.7f}  causal {causal:.4f}")
