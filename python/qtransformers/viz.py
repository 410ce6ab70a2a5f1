"""PNG heatmaps of exact vs shot-sampled attention, with per-row entropy and adaptive shots."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.attention import safe_softmax, scaled_scores
from qtransformers.functional.quantum import adaptive_shots, pilot_size, quantum_attention
from qtransformers.functional.sampling import draw_rows


def attention_heatmaps(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    path: str | Path,
    *,
    heads: list[int] | None = None,
    batch: int = 0,
    is_causal: bool = False,
    backend: str = "stratified",
    num_samples: int = 16,
    seed: int = 0,
) -> Path:
    """Write a PNG with, per chosen head, exact weights, sampled weights, row entropy and adaptive shots.

    q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev). The sampled panel is the estimator's weight matrix
    (``need_weights=True``); the shots panel shows how ``adaptive=True`` splits the same total
    budget (L·num_samples per head, a quarter spent on the entropy pilot); with ``is_causal``,
    where ``adaptive=True`` is refused, it shows the allocation that design would make. Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(range(q.size(1))) if heads is None else heads
    if not heads or min(heads) < 0 or max(heads) >= q.size(1):
        raise InvalidArgumentError(f"heads must index 0..{q.size(1) - 1}, got {heads}")
    sel = torch.tensor(heads)
    q, k, v = (t[batch : batch + 1].index_select(1, sel) for t in (q, k, v))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        exact = safe_softmax(scaled_scores(q, k, None, is_causal, None))
        _, sampled = quantum_attention(
            q, k, v, is_causal=is_causal, backend=backend, num_samples=num_samples, generator=gen, need_weights=True
        )
        assert isinstance(sampled, torch.Tensor)  # need_weights=True: the estimator's weights (B, H, L, S)
        rows = exact.reshape(-1, exact.size(-1))
        pilot = pilot_size(num_samples)
        alive = rows.sum(-1) > 0
        if pilot:
            design = "multinomial" if backend in ("naive", "hybrid") else "systematic"
            pilot_idx = draw_rows(rows, torch.full((rows.size(0),), pilot) * alive, design, generator=gen)
            shots = adaptive_shots(rows, pilot_idx, q.size(2), num_samples - pilot)
        else:  # with one shot per row there is no pilot, so adaptive keeps the uniform allocation
            shots = torch.full((rows.size(0),), num_samples) * alive
        shots = shots.view(len(heads), -1)
        entropy = -(exact * exact.clamp_min(1e-30).log()).sum(-1)[0]
    fig, axes = plt.subplots(len(heads), 3, figsize=(13, 4 * len(heads)), squeeze=False)
    for row, h in enumerate(heads):
        vmax = float(exact[0, row].max())
        axes[row, 0].imshow(exact[0, row].numpy(), cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        axes[row, 0].set_title(f"head {h}: exact attention")
        axes[row, 1].imshow(sampled[0, row].numpy(), cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        axes[row, 1].set_title(f"head {h}: {backend}, {num_samples} shots/row")
        ax = axes[row, 2]
        ax.plot(entropy[row].numpy(), color="tab:blue", label="row entropy (nats)")
        ax.set_xlabel("query row")
        ax.set_ylabel("entropy (nats)", color="tab:blue")
        twin = ax.twinx()
        twin.plot(shots[row].numpy(), color="tab:orange", label="adaptive shots")
        twin.set_ylabel("adaptive shots", color="tab:orange")
        ax.set_title(f"head {h}: entropy and adaptive shots")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
