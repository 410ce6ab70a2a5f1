"""ByteLM over every causal mixer: causality per mixer, tied embeddings, cached decoding, phase mixer."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from qtransformers import mixers
from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.mixers.phase import ConceptLayer, PhaseMixer, golden_phases, phase_energies
from qtransformers.models import ByteLM, ByteLMConfig

CAUSAL_MIXERS = mixers.available(causal=True)
T = 24


def _tiny(name, **kw):
    torch.manual_seed(0)
    return ByteLM(ByteLMConfig(mixer=name, dim=32, layers=2, max_seq_len=T, **kw)).eval()


@pytest.mark.parametrize("name", CAUSAL_MIXERS)
def test_bytelm_is_causal(name):
    """Changing bytes after position t leaves logits at positions <= t unchanged (and does change later ones)."""
    model = _tiny(name)
    x = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(1))
    for t in (0, 7, T - 2):
        y = x.clone()
        y[:, t + 1 :] = (y[:, t + 1 :] + 101) % 256
        with torch.no_grad():  # twin copies: a sampling mixer's generator starts from the same state in both
            torch.manual_seed(5)
            a = copy.deepcopy(model)(x)
            torch.manual_seed(5)
            b = copy.deepcopy(model)(y)
        scale = a.abs().max()
        assert (a[:, : t + 1] - b[:, : t + 1]).abs().max() <= 1e-5 * scale, f"{name} leaks future bytes into t={t}"
        assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-4 * scale, f"{name} ignores its input after t={t}"


@pytest.mark.parametrize("name", CAUSAL_MIXERS)
def test_mixer_gradient_is_causal(name):
    """d mixer(x)[t] / d x[s] is exactly zero for s > t (a leakage test through autograd)."""
    torch.manual_seed(0)
    mixer = mixers.build(name, 32, causal=True)
    x = torch.randn(1, T, 32, requires_grad=True)
    t = T // 2
    mixer(x)[:, t].sum().backward()
    assert x.grad[:, t + 1 :].abs().max() <= 1e-6 * x.grad[:, : t + 1].abs().max()
    assert x.grad[:, : t + 1].abs().max() > 0


def test_tied_embeddings_and_parameter_count():
    model = _tiny("attention")
    names = [n for n, _ in model.named_parameters()]
    assert not any("head" in n for n in names)  # no separate output matrix
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    h = model.hidden(torch.randint(0, 256, (1, 5)))
    assert torch.allclose(model.logits(h), h @ model.embed.weight.t())
    expected_per_block = (3 * 32 * 32 + 3 * 32) + (32 * 32 + 32) + 2 * (2 * 32) + (32 * 128 + 128) + (128 * 32 + 32)
    assert model.num_parameters() == 256 * 32 + T * 32 + 2 * expected_per_block + 2 * 32


def test_bad_config_and_input():
    with pytest.raises(InvalidArgumentError, match="unknown mixer"):
        ByteLM(ByteLMConfig(mixer="nope"))
    model = _tiny("attention")
    with pytest.raises(ShapeError, match="max_seq_len"):
        model(torch.zeros(1, T + 1, dtype=torch.long))
    with pytest.raises(ShapeError, match="expected tokens"):
        model(torch.zeros(T, dtype=torch.long))


@pytest.mark.parametrize("name", ["attention", "phase"])
def test_cached_decoding_equals_full_recompute(name):
    model = _tiny(name)
    assert model.supports_cache()
    x = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache()
        parts = [model.forward_cached(x[:, :9], cache)[0]]
        parts += [model.forward_cached(x[:, i : i + 1], cache)[0] for i in range(9, T)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == T


def test_golden_phases():
    phases = golden_phases(64)
    assert phases[1].item() == pytest.approx(2 * math.pi * (math.sqrt(5) - 1) / 2, rel=1e-6)
    gaps = torch.diff(torch.sort(phases).values)
    assert gaps.min() > 0.01  # evenly spread (three-gap theorem), never aligned


def _energies_ref(phases):
    """O(T^2) float64 reference of phase_energies with complex tensors."""
    p = phases.double()
    b, t, h, d = p.shape
    u = torch.polar(torch.ones_like(p), p)
    local = (1 - torch.cos(p[:, 1:] - p[:, :-1])).mean()
    glob = torch.stack([1 - u[:, : s + 1].mean(1).abs().square().mean() for s in range(t)]).mean()
    psi = u / math.sqrt(d)
    ent = []
    for i in range(h):
        for j in range(h):
            if i != j:
                ent.append((psi[:, :, i] * psi[:, :, j].conj()).sum(-1).abs().square().mean())
    return local, glob, torch.stack(ent).mean()


def test_phase_energies_match_reference():
    phases = torch.randn(2, 13, 3, 5, generator=torch.Generator().manual_seed(0)) * 2
    got = phase_energies(phases)
    local, glob, ent = _energies_ref(phases)
    assert got["local"].item() == pytest.approx(local.item(), abs=1e-5)
    assert got["global"].item() == pytest.approx(glob.item(), abs=1e-5)
    assert got["entanglement"].item() == pytest.approx(ent.item(), abs=1e-5)


def test_phase_energies_limits():
    # a constant-step phase ramp: local energy is exactly 1 - cos(step)
    ramp = (torch.arange(10.0) * 0.3).view(1, 10, 1, 1).expand(1, 10, 2, 4)
    e = phase_energies(ramp)
    assert e["local"].item() == pytest.approx(1 - math.cos(0.3), abs=1e-6)
    assert e["entanglement"].item() == pytest.approx(1.0, abs=1e-6)  # identical heads fully overlap
    e = phase_energies(torch.zeros(1, 10, 2, 4))
    assert e["global"].item() == pytest.approx(0.0, abs=1e-6) and e["coherence"].item() == pytest.approx(1.0)


def test_phase_energies_are_causal():
    """The global term at the prefix [0, t] does not depend on later phases: only prefix sums are used."""
    p = torch.randn(1, 12, 2, 4)
    q = p.clone()
    q[:, 8:] += 1.0
    assert phase_energies(p[:, :8])["global"] == phase_energies(q[:, :8])["global"]


def test_phase_mixer_has_no_host_sync():
    """A forward on the meta device succeeds only if nothing reads tensor values on the host."""
    with torch.device("meta"):
        mixer = PhaseMixer(32, num_heads=4)
        y = mixer(torch.empty(2, 16, 32))
    assert y.shape == (2, 16, 32) and y.is_meta


def test_phase_mixer_records_differentiable_energies():
    model = _tiny("phase").train()
    model(torch.randint(0, 256, (2, T)))
    energies = model.energy_terms()
    assert set(energies) == {"local", "global", "entanglement", "coherence"}
    (energies["local"] + energies["global"] + energies["entanglement"]).backward()
    grad = model.blocks[0].mixer.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert _tiny("attention").energy_terms() is None


def _interference_reference(mixer, x):
    """PhaseMixer's output from its formula: softmax over s <= t of sum_j a_tj a_sj cos(phi_tj - phi_sj + w_j (t - s))."""
    b, t, _ = x.shape
    h, d = mixer.num_heads, mixer.head_dim
    qa, qp, ka, kp, v = mixer.proj(x).double().view(b, t, 5, h, d).unbind(2)
    omega = mixer.rope_base ** (-torch.arange(d, dtype=torch.float64) / d)
    pos = torch.arange(t, dtype=torch.float64)
    base = mixer.base_phase.double()
    phi_q = base + mixer.max_phase_shift * torch.tanh(qp) + omega * pos[:, None, None]
    phi_k = base + mixer.max_phase_shift * torch.tanh(kp) + omega * pos[:, None, None]
    a_q, a_k = F.softplus(qa), F.softplus(ka)
    # score[b, h, t, s] = sum_j a_q[b,t,h,j] a_k[b,s,h,j] cos(phi_q[b,t,h,j] - phi_k[b,s,h,j])
    diff = phi_q[:, :, None] - phi_k[:, None, :]  # (B, T, S, H, d)
    score = (a_q[:, :, None] * a_k[:, None, :] * torch.cos(diff)).sum(-1).permute(0, 3, 1, 2) / math.sqrt(2 * d)
    future = torch.ones(t, t, dtype=torch.bool).triu(1) if mixer.causal else torch.zeros(t, t, dtype=torch.bool)
    weights = torch.softmax(score.masked_fill(future, float("-inf")), dim=-1)
    y = weights @ v.transpose(1, 2)  # (B, H, T, d)
    return mixer.out(y.transpose(1, 2).reshape(b, t, h * d).float())


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t", [1, 2, 97])
@pytest.mark.parametrize("heads", [1, 4])
def test_phase_mixer_matches_its_interference_formula(t, heads, causal):
    """Output and input gradient equal the explicit score formula (float64, dense mask) at T = 1, 2 and 97."""
    torch.manual_seed(t)
    mixer = PhaseMixer(32, num_heads=heads, concepts=0, causal=causal)
    x = torch.randn(2, t, 32, requires_grad=True)
    got = mixer(x)
    ref = _interference_reference(mixer, x)
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
    w = torch.randn_like(ref)
    (g_got,) = torch.autograd.grad((got * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    assert (g_got - g_ref).abs().max() <= 1e-4 * g_ref.abs().max()


def test_concept_layer_is_convex_mix_of_concepts():
    layer = ConceptLayer(16, 5)
    out = layer(torch.randn(3, 7, 16))
    # every output is a convex combination of the 5 concept vectors: solve for the weights
    weights = torch.linalg.lstsq(layer.concepts.detach().t(), out.detach().reshape(-1, 16).t()).solution
    assert torch.allclose(weights.sum(0), torch.ones(21), atol=1e-4) and weights.min() > -1e-4


@pytest.mark.parametrize("name", ["attention", "phase"])
def test_activation_checkpointing_gives_the_same_gradients(name):
    x = torch.randint(0, 256, (2, T))
    grads = []
    for flag in (False, True):
        model = _tiny(name, activation_checkpointing=flag).train()
        loss = model.loss(x, x)
        if name == "phase":
            loss = loss + model.energy_terms()["local"]
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_phase_mixer_bfloat16_autocast_keeps_rotary_phases_exact():
    """Under bf16 autocast the phase mixer's output stays close to float32 even at positions near 1000."""
    torch.manual_seed(0)
    mixer = PhaseMixer(32, num_heads=4, concepts=0)
    x = torch.randn(1, 1024, 32)
    with torch.no_grad():
        ref = mixer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = mixer(x).float()
    err = (low - ref).norm() / ref.norm()
    assert err < 0.005, err  # casting the phases to bf16 before cos/sin gave 0.010 here
