"""Hybrid mixer patterns and rotary positions: references, causality, cached decoding, extrapolation."""

from __future__ import annotations

import math

import pytest
import torch

from qtransformers import mixers
from qtransformers.exceptions import InvalidArgumentError, QTransformersError, ShapeError
from qtransformers.functional import rope
from qtransformers.mixers.attention import SelfAttentionMixer
from qtransformers.mixers.hybrid import ParallelMixer, layer_mixers, options_for
from qtransformers.mixers.incremental import supports_incremental
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.train.generation import SamplingConfig, generate
from test_prefix_consistency import assert_prefix_consistent

ROPE_MIXERS = [name for name in mixers.available(causal=True) if "rope" in mixers.options_of(name)]
PATTERNS = ["attention+hyena", "qrh,attention", "hyena+phase,spectral", "quantum+qrh"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rope_reference(x: torch.Tensor, base: float, offset: int) -> torch.Tensor:
    """RoPE as a complex product: pair (2i, 2i+1) at position p times exp(i p base^(-2i/E)), float64."""
    e = x.size(-1)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], e // 2, 2).contiguous())
    theta = base ** (-torch.arange(0, e, 2, dtype=torch.float64) / e)
    p = torch.arange(offset, offset + x.size(-2), dtype=torch.float64)
    rotated = pairs * torch.polar(torch.ones(()).double(), p[:, None] * theta[None, :])
    return torch.view_as_real(rotated).reshape(x.shape)


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 3, 97, 8), (1, 2, 5, 64)])
@pytest.mark.parametrize("offset", [0, 13])
def test_rope_equals_the_complex_reference(shape, offset):
    x = torch.randn(*shape, generator=gen(0), dtype=torch.float64)
    got = rope(x, 500.0, offset=offset)
    assert torch.allclose(got, rope_reference(x, 500.0, offset), atol=1e-12)
    assert torch.allclose(got.norm(dim=-1), x.norm(dim=-1))  # a rotation


def test_rope_gradcheck_and_bad_shapes_raise():
    x = torch.randn(1, 2, 7, 4, generator=gen(1), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: rope(a, offset=3), (x,))
    for bad in (torch.zeros(2, 7, 4), torch.zeros(1, 2, 7, 5)):
        with pytest.raises(ShapeError, match="rope"):
            rope(bad)


def test_rope_scores_depend_only_on_the_offset():
    """With one q vector and one k vector at every position, score(p, s) after RoPE is a function of p - s."""
    q = torch.randn(1, 1, 1, 16, generator=gen(2), dtype=torch.float64).expand(1, 1, 40, 16)
    k = torch.randn(1, 1, 1, 16, generator=gen(3), dtype=torch.float64).expand(1, 1, 40, 16)
    scores = rope(q) @ rope(k).transpose(-1, -2)
    assert torch.allclose(scores[..., 1:, 1:], scores[..., :-1, :-1], atol=1e-12)
    assert not torch.allclose(scores[..., 0, :], scores[..., 0, :1].expand(-1, -1, 40), atol=1e-3)  # positions matter
    shifted = rope(q, offset=25) @ rope(k, offset=25).transpose(-1, -2)
    assert torch.allclose(shifted, scores, atol=1e-10)


def test_rope_attention_equals_sdpa_on_rotated_q_and_k():
    torch.manual_seed(0)
    mixer = mixers.build("attention", 16, num_heads=2, rope=True, rope_base=100.0).double()
    x = torch.randn(2, 11, 16, generator=gen(4), dtype=torch.float64)
    q, k, v = mixer.qkv(x).view(2, 11, 3, 2, 8).permute(2, 0, 3, 1, 4)
    q, k = rope_reference(q, 100.0, 0), rope_reference(k, 100.0, 0)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(mixer(x), mixer.out(ref.transpose(1, 2).reshape(2, 11, 16)), atol=1e-12)


def test_rope_needs_an_even_head_size():
    with pytest.raises(InvalidArgumentError, match="even head size"):
        mixers.build("attention", 12, num_heads=4, rope=True)
    with pytest.raises(InvalidArgumentError, match="even head size"):
        mixers.build("quantum", 12, num_heads=4, rope=True)


@pytest.mark.parametrize("name", ROPE_MIXERS)
def test_every_rope_mixer_is_causal_and_prefix_consistent(name):
    torch.manual_seed(0)
    mixer = mixers.build(name, 32, causal=True, num_heads=4, rope=True).double().eval()
    x = torch.randn(2, 97, 32, generator=gen(5), dtype=torch.float64, requires_grad=True)
    assert_prefix_consistent(mixer, x.detach(), f"{name}(rope)")
    t = 40
    mixer(x)[:, t].sum().backward()
    assert x.grad[:, t + 1 :].abs().max() == 0, f"{name} with rope leaks the future"
    assert x.grad[:, : t + 1].abs().max() > 0


def test_rope_is_on_in_the_mixers_of_a_rope_model_and_absent_from_the_others():
    rope_model = ByteLM(ByteLMConfig(mixer="attention,quantum,phase,hyena", dim=32, layers=4, position="rope"))
    assert rope_model.pos is None and all(b.mixer.rope_base == 10000.0 for b in rope_model.blocks[:3])
    learned = ByteLM(ByteLMConfig(mixer="attention,quantum", dim=32, layers=2))
    assert learned.pos is not None and all(b.mixer.rope_base is None for b in learned.blocks)
    with pytest.raises(InvalidArgumentError, match="position"):
        ByteLM(ByteLMConfig(position="alibi"))


def tiny(pattern: str, **kw) -> ByteLM:
    torch.manual_seed(0)
    config = ByteLMConfig(mixer=pattern, dim=32, layers=kw.pop("layers", 2), max_seq_len=97, **kw)
    return ByteLM(config).double().eval()


@pytest.mark.parametrize("pattern", ["attention", "phase", "attention+phase,attention"])
@pytest.mark.parametrize("position", ["rope", "learned"])
def test_cached_decode_equals_the_full_forward(pattern, position):
    model = tiny(pattern, position=position, mixer_options={"num_heads": 4})
    assert model.supports_cache()
    tokens = torch.randint(0, 256, (2, 60), generator=gen(6))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache()
        parts = [model.forward_cached(tokens[:, :5], cache)[0]]
        parts += [model.forward_cached(tokens[:, i : i + 1], cache)[0] for i in range(5, 60)]
    assert (torch.cat(parts, 1) - full).abs().max() <= 1e-10 * full.abs().max()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_hybrid_bytelm_is_causal_and_prefix_consistent(pattern):
    model = tiny(pattern, position="rope")
    tokens = torch.randint(0, 256, (2, 97), generator=gen(7))
    assert_prefix_consistent(model, tokens, f"ByteLM({pattern})")
    changed = tokens.clone()
    changed[:, 50:] = (changed[:, 50:] + 7) % 256
    torch.manual_seed(1)
    with torch.no_grad():
        a, b = tiny(pattern, position="rope")(tokens), tiny(pattern, position="rope")(changed)
    assert torch.equal(a[:, :50], b[:, :50]) or (a[:, :50] - b[:, :50]).abs().max() <= 1e-12
    assert (a[:, 50:] - b[:, 50:]).abs().max() > 1e-6


def test_patterns_repeat_to_the_depth_and_parallel_entries_sum():
    assert layer_mixers("qrh,qrh,qrh,attention", 8) == [("qrh",)] * 3 + [("attention",)] + [("qrh",)] * 3 + [
        ("attention",)
    ]
    with pytest.raises(InvalidArgumentError, match="has 4 entries but the model has 2 layers"):
        layer_mixers("qrh,qrh,qrh,attention", 2)
    model = tiny("hyena+attention,qrh", layers=3)
    kinds = [type(b.mixer).__name__ for b in model.blocks]
    assert kinds == ["ParallelMixer", "QRHLayer", "ParallelMixer"]
    parallel = model.blocks[0].mixer
    assert isinstance(parallel, ParallelMixer) and parallel.causal
    with pytest.raises(InvalidArgumentError, match="at least two"):
        ParallelMixer([parallel.branches[0]])
    x = torch.randn(2, 9, 32, generator=gen(8), dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(parallel(x), parallel.branches[0](x) + parallel.branches[1](x))
    assert not supports_incremental(parallel)  # hyena has no cached forward
    assert supports_incremental(tiny("attention+phase").blocks[0].mixer)


def test_a_single_name_builds_exactly_the_plain_mixer():
    """Same modules, parameters and state_dict keys as before patterns existed (old checkpoints load)."""
    model = tiny("attention")
    torch.manual_seed(0)
    plain = SelfAttentionMixer(32).double()
    assert type(model.blocks[0].mixer) is SelfAttentionMixer
    assert {k for k in model.state_dict() if k.startswith("blocks.0.mixer.")} == {
        "blocks.0.mixer." + k for k in plain.state_dict()
    }
    assert "pos.weight" in model.state_dict()
    model.load_state_dict(tiny("attention").state_dict())


def test_options_map_to_the_mixers_that_accept_them():
    options = {"num_heads": 4, "qrh": {"max_len": 200}, "attention": {"num_heads": 2}}
    model = tiny("attention,quantum+qrh", mixer_options=options)
    assert model.blocks[0].mixer.num_heads == 2  # own options override shared ones
    quantum, qrh = model.blocks[1].mixer.branches
    assert quantum.num_heads == 4 and qrh.max_len == 200
    assert options_for("hyena", options) == {}
    assert tiny("qrh").blocks[0].mixer.max_len == 97  # max_seq_len unless set


@pytest.mark.parametrize(
    ("pattern", "options", "match"),
    [
        ("attention,hyenna", {}, "unknown mixer 'hyenna'"),
        ("attention+fnet", {}, "'fnet'.*cannot be causal"),
        ("attention,,qrh", {}, "unknown mixer ''"),
        ("", {}, "non-empty"),
        ("hyena", {"num_heads": 4}, "accepted by no mixer"),
        ("hyena", {"attention": {"num_heads": 4}}, "does not use"),
        ("attention", {"attention": 4}, "accepted by no mixer"),
    ],
)
def test_bad_patterns_and_options_raise_clear_errors(pattern, options, match):
    with pytest.raises(InvalidArgumentError, match=match) as info:
        ByteLM(ByteLMConfig(mixer=pattern, dim=32, layers=2, mixer_options=options))
    assert isinstance(info.value, QTransformersError) and isinstance(info.value, ValueError)


def test_generation_from_a_hybrid_with_a_cache_equals_recompute():
    model = tiny("attention+phase,attention", position="rope", mixer_options={"num_heads": 4})
    prompt = torch.randint(0, 256, (2, 3), generator=gen(9))
    cached = generate(model, prompt, 30, SamplingConfig(temperature=0), use_cache=True)
    recomputed = generate(model, prompt, 30, SamplingConfig(temperature=0), use_cache=False)
    assert torch.equal(cached, recomputed)


def test_max_context_of_rope_and_learned_models():
    assert tiny("attention").max_context() == 97
    assert tiny("attention", position="rope").max_context() is None
    assert tiny("hyena+attention,qrh", position="none", mixer_options={"qrh": {"max_len": 150}}).max_context() == 150
    with pytest.raises(ShapeError, match="longest context 97"):
        tiny("attention")(torch.zeros(1, 98, dtype=torch.long))
    assert tiny("attention", position="rope")(torch.zeros(1, 300, dtype=torch.long)).isfinite().all()


def word_corpus(n_bytes: int, seed: int) -> torch.Tensor:
    """Bytes of random words from a fixed small vocabulary separated by spaces (a learnable local structure)."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "red", "box", "of", "sun"]
    g = gen(seed)
    text = " ".join(words[i] for i in torch.randint(0, len(words), (n_bytes // 3,), generator=g).tolist())
    return torch.tensor(list(text.encode()[:n_bytes]), dtype=torch.long)


def test_a_rope_model_trained_at_one_context_runs_at_four_times_it():
    """Trained at context 32, the RoPE model's held-out loss at context 128 is finite and close to its loss at 32."""
    torch.manual_seed(0)
    ctx = 32
    model = ByteLM(ByteLMConfig(mixer="attention", dim=32, layers=2, max_seq_len=ctx, position="rope"))
    data, held_out = word_corpus(20000, 0), word_corpus(4000, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = gen(2)
    for _ in range(150):
        starts = torch.randint(0, data.numel() - ctx - 1, (16,), generator=g)
        batch = torch.stack([data[s : s + ctx + 1] for s in starts.tolist()])
        loss = model.loss(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    def held_out_loss(length: int) -> float:
        batch = torch.stack([held_out[s : s + length + 1] for s in range(0, 8 * length, length)])
        with torch.no_grad():
            return model.loss(batch[:, :-1], batch[:, 1:]).item()

    short, long = held_out_loss(ctx), held_out_loss(4 * ctx)
    assert short < 0.6 * math.log(256), f"the model did not learn (loss {short:.3f} at its training context)"
    assert math.isfinite(long) and long <= 1.25 * short, f"loss {long:.3f} at 4x context vs {short:.3f} at 1x"


def test_ablation_gives_heads_to_patterns_whose_mixers_have_heads():
    from qtransformers.train.ablation import Variant, with_heads

    assert with_heads(Variant("p", "hyena+attention,qrh"), 4).options == {"num_heads": 4}
    assert with_heads(Variant("p", "hyena,qrh"), 4).options == {}
