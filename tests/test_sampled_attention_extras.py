"""Baselines, Rust sampler vs reference, modules, mixer, training, Hugging Face, bench and viz."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from safetensors.torch import save_file

from qtransformers import QuantumMultiheadAttention, mixers
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional import (
    allocate_shots,
    allocate_shots_ref,
    draw_rows,
    draw_rows_ref,
    exact_attention,
    linformer_attention,
    nystrom_attention,
    performer_attention,
)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_performer_and_nystrom_approach_exact_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 64, 16, generator=g) * 0.5 for _ in range(3))
    exact, _ = exact_attention(q, k, v)
    coarse = _rel(performer_attention(q, k, v, num_features=8, generator=torch.Generator().manual_seed(1)), exact)
    fine = _rel(performer_attention(q, k, v, num_features=4096, generator=torch.Generator().manual_seed(1)), exact)
    assert fine < 0.05 and fine < coarse
    causal, _ = exact_attention(q, k, v, is_causal=True)
    fine_causal = performer_attention(
        q, k, v, is_causal=True, num_features=4096, generator=torch.Generator().manual_seed(1)
    )
    assert _rel(fine_causal, causal) < 0.05
    # With one landmark per position Nyström is exact once the pinv iteration has converged.
    assert _rel(nystrom_attention(q, k, v, num_landmarks=64, pinv_iterations=30), exact) < 1e-3
    assert _rel(nystrom_attention(q, k, v, num_landmarks=64, pinv_iterations=6), exact) > 1e-2
    assert _rel(nystrom_attention(q, k, v, num_landmarks=4, pinv_iterations=30), exact) > 1e-3


def test_linformer_key_mask_determinism_and_limits():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    keep = torch.ones(2, 1, 1, 16, dtype=torch.bool)
    keep[..., 12:] = False
    v2 = v.clone()
    v2[..., 12:, :] = 1e4
    a = linformer_attention(q, k, v, keep, proj_dim=8, generator=torch.Generator().manual_seed(3))
    b = linformer_attention(q, k, v2, keep, proj_dim=8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    with pytest.raises(InvalidArgumentError):
        linformer_attention(q, k, v, is_causal=True)
    with pytest.raises(InvalidArgumentError):
        nystrom_attention(q, k, v, is_causal=True)


def test_rust_sampler_matches_reference_law_and_allocation():
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(6, 10, generator=g) ** 3
    weights[2] = 0.0
    weights[4, 3:] = 0.0
    order = torch.stack([torch.randperm(10, generator=g) for _ in range(3)])
    shots = torch.tensor([5, 7, 7, 1, 4, 7])
    for method in ("multinomial", "stratified", "systematic"):
        counts = {}
        for sampler in ("torch", "rust"):
            hist = torch.zeros(6, 10)
            for rep in range(300):
                idx = draw_rows(
                    weights,
                    shots,
                    method,
                    order=order,
                    rows_per_order=2,
                    sampler=sampler,
                    generator=torch.Generator().manual_seed(rep),
                )
                assert idx.shape == (6, 7)
                assert (idx[2] == -1).all() and (idx[3, 1:] == -1).all()
                used = idx >= 0
                assert (weights.gather(1, idx.clamp_min(0))[used] > 0).all()
                hist.scatter_add_(1, idx.clamp_min(0), used.float())
            counts[sampler] = hist / hist.sum(-1, keepdim=True).clamp_min(1)
        probs = weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)
        for sampler, freq in counts.items():
            # >= 300 draws per row: a frequency's standard error is <= 0.029; allow 5 of them.
            assert (freq - probs)[[0, 1, 3, 4, 5]].abs().max() < 0.15, (method, sampler)
    a = draw_rows(weights, shots, "systematic", sampler="rust", generator=torch.Generator().manual_seed(1))
    b = draw_rows(weights, shots, "systematic", sampler="rust", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    scores = torch.rand(3, 9, generator=g)
    scores[0, 2] = -1.0
    scores[1] = 0.0
    ref = allocate_shots_ref(scores, 40)
    assert torch.equal(allocate_shots(scores, 40, sampler="rust"), ref)
    assert (ref.sum(-1) == 40).all() and ref[0, 2] == 0 and (ref[1] > 0).all()
    torch.testing.assert_close(
        draw_rows_ref(weights, shots, "systematic", generator=torch.Generator().manual_seed(2)),
        draw_rows(weights, shots, "systematic", generator=torch.Generator().manual_seed(2)),
    )


def test_module_backends_and_per_head_configs():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 32)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(12)
    exact = QuantumMultiheadAttention(32, 4, batch_first=True)
    ref, _ = exact(x, x, x, attn_mask=mask, need_weights=False)
    per_head = QuantumMultiheadAttention(32, 4, batch_first=True, head_configs=[{"backend": "exact"}] * 4)
    per_head.load_state_dict(exact.state_dict())
    torch.testing.assert_close(per_head(x, x, x, attn_mask=mask, need_weights=False)[0], ref)
    for backend in ("naive", "stratified", "hybrid", "performer", "nystrom", "linformer"):
        module = QuantumMultiheadAttention(
            32,
            4,
            batch_first=True,
            quantum_backend=backend,
            num_samples=64,
            control_variate=backend == "stratified",
            seed=0,
        )
        module.load_state_dict(exact.state_dict())
        masked = backend not in ("nystrom", "linformer")
        out, _ = module(x, x, x, attn_mask=mask if masked else None, need_weights=False)
        assert out.shape == ref.shape and torch.isfinite(out).all()
    mixed = QuantumMultiheadAttention(
        32,
        4,
        batch_first=True,
        seed=0,
        head_configs=[
            {"backend": "exact"},
            {"backend": "naive", "num_samples": 4},
            {"backend": "stratified", "adaptive_samples": True},
            {"backend": "performer"},
        ],
    )
    assert torch.isfinite(mixed(x, x, x)[0]).all()
    with pytest.raises(InvalidArgumentError, match="adaptive"):
        mixed(x, x, x, attn_mask=mask)
    with pytest.raises(InvalidArgumentError):
        QuantumMultiheadAttention(32, 4, head_configs=[{"backend": "exact"}])
    with pytest.raises(InvalidArgumentError):
        QuantumMultiheadAttention(32, 4, head_configs=[{"backend": "bogus"}] * 4)


def test_quantum_mixer_is_causal():
    mixer = mixers.build("quantum", 16, causal=True, num_heads=2, num_samples=4)
    x = torch.randn(2, 10, 16)
    y = x.clone()
    y[:, 6:] = torch.randn(2, 4, 16)
    mixer.generator.manual_seed(3)
    a = mixer(x)
    mixer.generator.manual_seed(3)
    b = mixer(y)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    with pytest.raises(InvalidArgumentError):
        mixers.build("quantum", 16, causal=True, num_heads=2, adaptive=True)


@pytest.mark.parametrize(
    "options",
    [
        dict(backend="hybrid"),
        dict(backend="naive", control_variate=True),
        dict(backend="stratified", control_variate=True, cv_block=3),
    ],
    ids=["hybrid", "naive+cv", "stratified+cv"],
)
def test_quantum_mixer_designs_are_prefix_consistent(options):
    # tests/test_prefix_consistency.py covers the default design; these are the other causal ones.
    torch.manual_seed(0)
    mixer = mixers.build("quantum", 16, causal=True, num_heads=2, num_samples=4, **options).double()
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    mixer.generator.manual_seed(5)
    full = mixer(x)
    for t in (1, 8, 17):
        mixer.generator.manual_seed(5)
        torch.testing.assert_close(mixer(x[:, :t]), full[:, :t], rtol=1e-9, atol=1e-9)


def test_training_with_a_sampled_backend_lowers_the_loss(shakespeare_path):
    torch.manual_seed(0)
    data = torch.frombuffer(bytearray(shakespeare_path.read_bytes()[:20000]), dtype=torch.uint8).long()
    model = torch.nn.ModuleDict(
        {
            "embed": torch.nn.Embedding(256, 32),
            "mix": mixers.build("quantum", 32, causal=True, num_heads=2, num_samples=8, backend="stratified"),
            "head": torch.nn.Linear(32, 256),
        }
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(120):
        starts = torch.randint(0, len(data) - 33, (8,), generator=gen)
        chunk = torch.stack([data[s : s + 33] for s in starts.tolist()])
        h = model["embed"](chunk[:, :-1])
        logits = model["head"](h + model["mix"](h))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


def test_huggingface_gpt2_and_bert_parity_and_sampled_causality():
    transformers = pytest.importorskip("transformers")
    from qtransformers.integrations.huggingface import register

    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 12))
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_layer=2, n_head=2, n_embd=32, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    ).eval()
    bert = transformers.BertModel(
        transformers.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=50
        ),
        add_pooling_layer=False,
    ).eval()
    pad = torch.ones(2, 12, dtype=torch.long)
    pad[1, 8:] = 0
    register(backend="exact")
    with torch.no_grad():
        for model, kwargs in ((gpt2, {}), (bert, {"attention_mask": pad})):
            model.set_attn_implementation("sdpa")
            ref = model(ids, **kwargs)[0]
            model.set_attn_implementation("qtransformers")
            torch.testing.assert_close(model(ids, **kwargs)[0], ref, atol=1e-5, rtol=1e-5)
        for backend in ("naive", "stratified", "hybrid"):
            register(backend=backend, num_samples=4, seed=0)
            assert torch.isfinite(bert(ids, attention_mask=pad)[0]).all()
            register(backend=backend, num_samples=4, seed=0)
            a = gpt2(ids).logits
            changed = ids.clone()
            changed[:, 7:] = (changed[:, 7:] + 1) % 50
            register(backend=backend, num_samples=4, seed=0)
            b = gpt2(changed).logits
            torch.testing.assert_close(a[:, :7], b[:, :7])


def test_attention_error_bench_runs(tmp_path):
    from qtransformers.bench import attention_error
    from qtransformers.bench.capture import TinyByteTransformer, capture_qkv

    text = tmp_path / "text.txt"
    text.write_bytes(bytes(range(256)) * 40)
    tensors = capture_qkv(TinyByteTransformer(), text, length=64)
    assert tensors["q"].shape == (2, 4, 64, 64)
    save_file(tensors, str(tmp_path / "cap.safetensors"))
    parser = argparse.ArgumentParser()
    attention_error.add_arguments(parser)
    args = parser.parse_args(
        [
            "--lengths",
            "32",
            "--budgets",
            "4",
            "--seeds",
            "1",
            "--no-progress",
            "--capture",
            str(tmp_path / "cap.safetensors"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    rows = attention_error.run(args)
    peers = attention_error.installed_peers()
    assert {r["impl"] for r in rows} >= {"naive", "stratified+cv", "performer", "linformer", *peers}
    for row in rows:
        if row["impl"] in peers:  # the public implementations run non-causal only
            assert math.isfinite(row["rel_err"]) == (row["regime"] == "gaussian"), row
    assert (tmp_path / "out" / "results.csv").is_file() and (tmp_path / "out" / "error-trained.png").is_file()
    naive = next(r for r in rows if r["impl"] == "naive" and r["regime"] == "gaussian")
    assert naive["rel_err"] > 0 and naive["ratio_to_naive"] == 1.0


def test_viz_writes_png(tmp_path):
    from qtransformers.viz import attention_heatmaps

    q, k, v = (torch.randn(1, 2, 16, 8) for _ in range(3))
    path = attention_heatmaps(q, k, v, tmp_path / "att.png", heads=[1], is_causal=True, num_samples=8)
    assert path.read_bytes()[:4] == b"\x89PNG"
    one = attention_heatmaps(q, k, v, tmp_path / "one.png", heads=[0], num_samples=1)  # m = 1: no pilot
    assert one.read_bytes()[:4] == b"\x89PNG"
