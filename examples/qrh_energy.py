"""Energy ratio ‖out‖/‖in‖ of the ΨQRH operator, non-causal (conserved) and causal (reported).

The causal kernel is the causal half of the filter's impulse response on 2 · max_len bins; the
line also prints the share of the response's (unit) energy that half keeps and the range of its
gain |H(ω)| over frequency.
"""

import torch

from qtransformers.functional import energy_ratio
from qtransformers.functional.qrh import causal_kernel
from qtransformers.kernels import qrh

T = 1024  # sequence length, also the causal operator's max_len (as in a ByteLM of context T)
g = torch.Generator().manual_seed(0)
x = torch.randn(2, T, 64, 4, generator=g)  # (B, T, D, 4)
q = torch.nn.functional.normalize(torch.randn(2, 64, 4, generator=g), dim=-1)
for a in (0.0, 0.5, 1.0, 2.0):
    alpha = torch.full((64,), a)
    full = energy_ratio(x, qrh(x, alpha, q[0], q[1]))
    causal = energy_ratio(x, qrh(x, alpha, q[0], q[1], causal=True, max_len=T))
    h = causal_kernel(torch.tensor([a], dtype=torch.float64), T)[0]
    gain = torch.fft.rfft(h, n=16 * T).abs()
    print(
        f"alpha={a}: non-causal {full:.7f}  causal {causal:.4f}  kernel energy {h.square().sum():.4f}  "
        f"gain {gain.min():.2f}..{gain.max():.2f}"
    )
