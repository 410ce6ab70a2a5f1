"""QuantumMultiheadAttention where nn.MultiheadAttention's own tests probe: nested tensors, mixed dtypes, generators."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from qtransformers import QTransformersError, QuantumMultiheadAttention
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError

E, H = 8, 2


def torch_and_ours(dtype=torch.float64, **config):
    """nn.MultiheadAttention with random state and a QuantumMultiheadAttention holding the same state."""
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, H, dtype=dtype, **config)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    ours = QuantumMultiheadAttention(E, H, dtype=dtype, **config)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def outcome(module, args, kwargs):
    """(output, weights) or the exception the call raised."""
    try:
        return module(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - the test compares what each module raises
        return err


def assert_same_outcome(ref, ours, args, kwargs):
    """Where torch runs, ours gives the same output; where torch raises, ours raises a typed DTypeError."""
    expected, got = outcome(ref, args, kwargs), outcome(ours, args, kwargs)
    if isinstance(expected, Exception):
        assert isinstance(got, DTypeError), f"torch raised {expected!r}; ours gave {got!r}"
        assert isinstance(got, QTransformersError) and isinstance(got, TypeError)
        return
    assert not isinstance(got, Exception), f"torch ran; ours raised {got!r}"
    assert got[0].dtype == expected[0].dtype
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    if expected[1] is not None:
        torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)


def _retype(module: nn.Module, name: str, dtype: torch.dtype) -> None:
    owner, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner) if owner else module
    setattr(owner, attr, nn.Parameter(getattr(owner, attr).detach().to(dtype)))


PARAMS = {  # parameter given another dtype -> module config it needs
    "in_proj_bias": {},
    "in_proj_bias (kdim)": dict(kdim=6, vdim=4),
    "in_proj_weight": {},
    "q_proj_weight": dict(kdim=6, vdim=4),
    "out_proj.weight": {},
    "out_proj.bias": {},
    "bias_k": dict(add_bias_kv=True),
}


@pytest.mark.parametrize("param", list(PARAMS))
@pytest.mark.parametrize("param_dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_mixed_parameter_dtypes_match_torch(param, param_dtype, batch_first):
    """A float64 module with one parameter in another dtype, over layouts, batch sizes, modes and grad."""
    config = PARAMS[param]
    ref, ours = torch_and_ours(batch_first=batch_first, **config)
    for m in (ref, ours):
        _retype(m, param.split(" ")[0], param_dtype)
    g = torch.Generator().manual_seed(1)
    for batch, train, grad, kind in itertools.product([None, 1, 3], [False, True], [False, True], ["self", "cross"]):
        if kind == "self" and config.get("kdim"):
            continue
        for m in (ref, ours):
            m.train(train)

        def rand(width, length):
            shape = (
                (length, width)
                if batch is None
                else ((batch, length, width) if batch_first else (length, batch, width))
            )
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        query = rand(E, 4)
        args = (query, query, query) if kind == "self" else (query, rand(ref.kdim, 5), rand(ref.vdim, 5))
        with torch.set_grad_enabled(grad):
            assert_same_outcome(ref, ours, args, dict(need_weights=not train))


def test_half_in_proj_bias_with_double_query_runs_in_eval():
    """The issue's case: torch runs it (batch_first, batch of several); ours did raise a raw RuntimeError."""
    ref, ours = torch_and_ours(batch_first=True)
    for m in (ref, ours):
        _retype(m, "in_proj_bias", torch.float16)
        m.eval()
    x = torch.randn(3, 5, E, dtype=torch.float64)
    with torch.no_grad():
        expected, got = ref(x, x, x), ours(x, x, x)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


@pytest.mark.parametrize("query_dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mask_dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("which", ["attn", "kpm", "both", "attn_float_kpm_bool"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_float_mask_dtypes_match_torch(query_dtype, mask_dtype, which, need_weights):
    ref, ours = torch_and_ours(dtype=query_dtype, batch_first=True)
    x = torch.randn(2, 4, E, dtype=query_dtype)
    attn = torch.zeros(4, 4, dtype=mask_dtype) if which != "kpm" else None
    kpm = None
    if which in ("kpm", "both"):
        kpm = torch.zeros(2, 4, dtype=mask_dtype)
    elif which == "attn_float_kpm_bool":
        kpm = torch.zeros(2, 4, dtype=torch.bool)
    assert_same_outcome(ref, ours, (x, x, x), dict(attn_mask=attn, key_padding_mask=kpm, need_weights=need_weights))


def test_mixed_dtypes_under_autocast_run_as_torch():
    ref, ours = torch_and_ours(dtype=torch.float32, batch_first=True)
    x = torch.randn(2, 4, E, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = ref(x, x, x), ours(x, x, x)
    assert got[0].dtype == expected[0].dtype
    torch.testing.assert_close(got[0], expected[0], atol=2e-2, rtol=2e-2)


# ----------------------------------------------------------------------------- nested tensors

NESTED_CONFIGS = {
    "plain": dict(),
    "no_bias": dict(bias=False),
    "bias_kv": dict(add_bias_kv=True),
    "zero_attn": dict(add_zero_attn=True),
    "bias_kv_zero_attn": dict(add_bias_kv=True, add_zero_attn=True),
    "kdim_vdim": dict(kdim=6, vdim=4),
}
Q_LENS, KV_LENS = [3, 1, 97], [5, 2, 1]  # one row, one key and an odd size among them
GRAD_MODES = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def nested(lengths, width, layout, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nested.nested_tensor(
        [torch.randn(n, width, generator=g, dtype=torch.float64) for n in lengths], layout=layout
    )


def nested_inputs(module, kind, layout):
    """(query, key, value) nested; self-attention passes the same tensor three times."""
    query = nested(Q_LENS, E, layout, 1)
    if kind == "self":
        return query, query, query
    return query, nested(KV_LENS, module.kdim, layout, 2), nested(KV_LENS, module.vdim, layout, 3)


NESTED_CASES = [
    (c, k) for c in NESTED_CONFIGS for k in ("self", "cross") if not (k == "self" and "kdim" in NESTED_CONFIGS[c])
]


@pytest.mark.filterwarnings("ignore:.*nested tensors is in prototype stage")
@pytest.mark.parametrize("config_name,kind", NESTED_CASES)
@pytest.mark.parametrize("layout", [torch.jagged, torch.strided], ids=["jagged", "strided"])
@pytest.mark.parametrize("grad_mode", list(GRAD_MODES))
@pytest.mark.parametrize(
    "need_weights,average",
    [(True, True), (True, False), (False, True)],
    ids=["avg_weights", "head_weights", "no_weights"],
)
def test_nested_input_equals_torch_on_each_sequence(config_name, kind, layout, grad_mode, need_weights, average):
    ref, ours = torch_and_ours(batch_first=True, **NESTED_CONFIGS[config_name])
    ref.eval(), ours.eval()
    query, key, value = nested_inputs(ref, kind, layout)
    with GRAD_MODES[grad_mode]():
        out, weights = ours(query, key, value, need_weights=need_weights, average_attn_weights=average)
        assert out.is_nested and out.layout == layout and out.size(0) == len(Q_LENS)
        for i, (q, k, v) in enumerate(zip(query.unbind(), key.unbind(), value.unbind())):
            q = q.unsqueeze(0)
            k, v = (q, q) if kind == "self" else (k.unsqueeze(0), v.unsqueeze(0))
            expected, expected_w = ref(q, k, v, need_weights=need_weights, average_attn_weights=average)
            torch.testing.assert_close(out[i], expected[0], atol=1e-5, rtol=1e-5)
            if need_weights:
                rows, cols = expected_w.shape[-2:]
                torch.testing.assert_close(weights[i, ..., :rows, :cols], expected_w[0], atol=1e-5, rtol=1e-5)
                assert not weights[i, ..., rows:, :].any() and not weights[i, ..., :, cols:].any()
    if need_weights:
        extra = (ours.bias_k is not None) + ours.add_zero_attn
        src = max(Q_LENS) if kind == "self" else max(KV_LENS)
        heads = () if average else (H,)
        assert weights.shape == (len(Q_LENS), *heads, max(Q_LENS), src + extra)
    else:
        assert weights is None


@pytest.mark.filterwarnings("ignore:.*nested tensors is in prototype stage")
@pytest.mark.parametrize("average", [True, False])
def test_strided_nested_equals_torch_nested_fast_path(average):
    """Where nn.MultiheadAttention itself takes nested input (eval, no grad, self-attention), outputs agree."""
    ref, ours = torch_and_ours(dtype=torch.float32, batch_first=True)
    ref.eval(), ours.eval()
    x = torch.nested.nested_tensor([torch.randn(3, E), torch.randn(6, E), torch.randn(1, E)])
    with torch.no_grad():
        expected, expected_w = ref(x, x, x, average_attn_weights=average)
        got, got_w = ours(x, x, x, average_attn_weights=average)
    assert got.is_nested and got.layout == expected.layout
    for a, b in zip(got.unbind(), expected.unbind()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_w, expected_w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "config_name,kind", [("plain", "self"), ("bias_kv_zero_attn", "cross"), ("kdim_vdim", "cross")]
)
def test_nested_gradients_equal_torch_on_each_sequence(config_name, kind):
    ref, ours = torch_and_ours(batch_first=True, **NESTED_CONFIGS[config_name])
    query, key, value = nested_inputs(ref, kind, torch.jagged)
    leaves = [t.detach().clone().requires_grad_(True) for t in (query, key, value)]
    q_in, k_in, v_in = (leaves[0],) * 3 if kind == "self" else leaves
    out, weights = ours(q_in, k_in, v_in)
    (out.values().square().sum() + weights.square().sum()).backward()
    for i, parts in enumerate(zip(*(t.detach().unbind() for t in (query, key, value)))):
        q, k, v = (p.unsqueeze(0).clone().requires_grad_(True) for p in parts)
        k, v = (q, q) if kind == "self" else (k, v)
        expected, expected_w = ref(q, k, v)
        (expected.square().sum() + expected_w.square().sum()).backward()
        torch.testing.assert_close(leaves[0].grad[i], q.grad[0], atol=1e-5, rtol=1e-5)
        if kind == "cross":
            torch.testing.assert_close(leaves[1].grad[i], k.grad[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(leaves[2].grad[i], v.grad[0], atol=1e-5, rtol=1e-5)
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5, msg=name)


def _sequential(module, query, key, value, **kwargs):
    """The module run on each sequence of nested query/key/value alone, one after the other."""
    return [
        module(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), **kwargs)[0][0]
        for q, k, v in zip(query.unbind(), key.unbind(), value.unbind())
    ]


def test_nested_dropout_in_train_mode_equals_each_sequence_in_turn():
    _, ours = torch_and_ours(batch_first=True, dropout=0.5, add_bias_kv=True)
    ours.train()
    query, key, value = nested_inputs(ours, "cross", torch.jagged)
    for need_weights in (True, False):
        torch.manual_seed(3)
        out, _ = ours(query, key, value, need_weights=need_weights)
        torch.manual_seed(3)
        for got, expected in zip(out.unbind(), _sequential(ours, query, key, value, need_weights=need_weights)):
            torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
        ours.eval()
        assert not torch.allclose(ours(query, key, value)[0].values(), out.values())
        ours.train()


SAMPLED = [
    dict(quantum_backend="naive", num_samples=8),
    dict(quantum_backend="stratified", num_samples=8, control_variate=True),
    dict(quantum_backend="hybrid", num_samples=8, top_k=2),
    dict(quantum_backend="performer", num_samples=8),
    dict(quantum_backend="nystrom", num_samples=2),
    dict(quantum_backend="linformer", num_samples=4),
    dict(head_configs=[{"backend": "naive", "seed": 4}, {"backend": "stratified", "num_samples": 4}]),
]


@pytest.mark.parametrize("options", SAMPLED, ids=lambda o: o.get("quantum_backend", "head_configs"))
def test_sampled_nested_equals_each_sequence_in_turn_under_the_same_seed(options):
    """Sampled backends: the nested call is the module run on each sequence alone, in order, same seed."""
    query, key, value = (nested(lens, E, torch.jagged, s) for lens, s in ((Q_LENS, 1), (KV_LENS, 2), (KV_LENS, 3)))
    modules = []
    for _ in range(2):
        torch.manual_seed(0)
        modules.append(QuantumMultiheadAttention(E, H, batch_first=True, seed=11, dtype=torch.float64, **options))
    out, weights = modules[0](query, key, value, need_weights=False)
    assert weights is None and out.is_nested
    for got, expected in zip(out.unbind(), _sequential(modules[1], query, key, value, need_weights=False)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def _jagged(*lengths, width=E):
    return torch.nested.nested_tensor([torch.randn(n, width) for n in lengths], layout=torch.jagged)


NESTED_ERRORS = {  # description -> (module config, query, key, value, forward kwargs, error, message fragment)
    "attn_mask": (
        {},
        "q",
        "q",
        "q",
        dict(attn_mask=torch.zeros(3, 3, dtype=torch.bool)),
        InvalidArgumentError,
        "attn_mask",
    ),
    "key_padding_mask": (
        {},
        "q",
        "q",
        "q",
        dict(key_padding_mask=torch.zeros(2, 3, dtype=torch.bool)),
        InvalidArgumentError,
        "key_padding_mask",
    ),
    "batch_first=False": (dict(batch_first=False), "q", "q", "q", {}, InvalidArgumentError, "batch_first"),
    "dense key and value": ({}, "q", torch.randn(2, 3, E), torch.randn(2, 3, E), {}, DTypeError, "nested"),
    "different sequence counts": ({}, "q", _jagged(2), _jagged(2), {}, ShapeError, "sequences"),
    "key/value lengths differ": ({}, "q", _jagged(2, 3), _jagged(2, 4), {}, ShapeError, "differ"),
    "wrong key width": ({}, "q", _jagged(2, 3, width=5), _jagged(2, 3, width=5), {}, ShapeError, "kdim"),
}


@pytest.mark.parametrize("desc", list(NESTED_ERRORS))
def test_bad_nested_input_raises_typed_errors_where_torch_raises(desc):
    config, query, key, value, kwargs, error, fragment = NESTED_ERRORS[desc]
    ref = nn.MultiheadAttention(E, H, **{"batch_first": True, **config}).eval()
    ours = QuantumMultiheadAttention(E, H, **{"batch_first": True, **config}).eval()
    nt = _jagged(3, 2)
    args = [nt if t == "q" else t for t in (query, key, value)]
    with torch.no_grad():
        with pytest.raises(Exception):
            ref(*args, **kwargs)
        with pytest.raises(error, match=fragment) as info:
            ours(*args, **kwargs)
    assert isinstance(info.value, QTransformersError)


# ----------------------------------------------------------------------------- generators


def _head_outputs(module, x):
    """Each head's attention output (N, L, H, head_dim): out_proj is made the identity."""
    with torch.no_grad():
        module.out_proj.weight.copy_(torch.eye(module.embed_dim))
        module.out_proj.bias.zero_()
        out, _ = module(x, x, x, need_weights=False)
    return out.unflatten(-1, (module.num_heads, module.head_dim))


def test_per_head_seed_gives_that_head_its_own_generator():
    """A head's seed fixes its draws, whatever the other heads are and whatever the global RNG holds."""
    seeded = {"backend": "naive", "num_samples": 8, "seed": 5}
    layouts = [
        [{"backend": "naive", "num_samples": 4}, {"backend": "exact"}, seeded, {"backend": "stratified"}],
        [
            {"backend": "stratified", "num_samples": 16},
            {"backend": "naive", "num_samples": 2},
            seeded,
            {"backend": "hybrid", "top_k": 1},
        ],
        [seeded, seeded, seeded, {"backend": "naive", "num_samples": 4, "seed": 6}],
    ]
    x = torch.randn(2, 6, 16)
    outs = []
    for i, head_configs in enumerate(layouts):
        torch.manual_seed(0)
        module = QuantumMultiheadAttention(16, 4, batch_first=True, head_configs=head_configs, seed=i)
        torch.manual_seed(100 + i)  # the other heads draw from elsewhere
        outs.append(_head_outputs(module, x))
    for other in outs[1:]:
        torch.testing.assert_close(other[:, :, 2], outs[0][:, :, 2], atol=0, rtol=0)
    assert not torch.equal(outs[0][:, :, 0], outs[1][:, :, 0])


def test_head_without_seed_draws_from_the_module_generator():
    configs = [{"backend": "naive", "num_samples": 4}] * 2
    x = torch.randn(2, 6, 8)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        module = QuantumMultiheadAttention(8, 2, batch_first=True, head_configs=configs, seed=9)
        assert module.head_configs[0].seed is None
        torch.manual_seed(len(outs))  # the global RNG differs; the module's generator does not
        outs.append(_head_outputs(module, x))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def _seeded_module(**kwargs):
    torch.manual_seed(0)
    return QuantumMultiheadAttention(
        8,
        2,
        batch_first=True,
        quantum_backend="naive",
        num_samples=4,
        seed=3,
        head_configs=[{"backend": "naive", "seed": 7}, {"backend": "stratified"}],
        **kwargs,
    )


@pytest.mark.parametrize(
    "move",
    [
        lambda m: m.to(torch.float64),
        lambda m: m.to("cpu"),
        lambda m: m.cpu(),
        lambda m: m.to(torch.device("cpu"), torch.float64),
        lambda m: m.double().float(),
    ],
    ids=["to_dtype", "to_cpu_str", "cpu", "to_device_dtype", "double_float"],
)
def test_generators_survive_casts_and_same_device_moves(move):
    """.to/.cpu on the generators' device keep them (same objects, same state): output stays reproducible."""
    x = torch.randn(2, 5, 8)
    module = _seeded_module()
    generators = [module.generator, *module.head_generators]
    module(x, x, x)  # advance the streams; a move must not rewind them
    states = [g.get_state() for g in generators if g is not None]
    module = move(module)
    assert [module.generator, *module.head_generators] == generators
    assert all(torch.equal(g.get_state(), s) for g, s in zip([g for g in generators if g is not None], states))
    reference = _seeded_module()
    reference(x, x, x)
    y = x.to(module.out_proj.weight.dtype)
    torch.testing.assert_close(module(y, y, y)[0], reference.to(y.dtype)(y, y, y)[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "move",
    [lambda m: m.cuda(), lambda m: m.to("cuda"), lambda m: m.to(torch.device("cuda", 0))],
    ids=["cuda", "to_str", "to_device"],
)
def test_generators_follow_the_module_to_cuda(move):
    x = torch.randn(2, 5, 8, device="cuda")
    outs = []
    for _ in range(2):
        module = move(_seeded_module())
        assert module.generator.device.type == "cuda"
        assert module.head_generators[0].device.type == "cuda" and module.head_generators[1] is None
        assert module.generator.initial_seed() == 3 and module.head_generators[0].initial_seed() == 7
        outs.append(module(x, x, x)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    built_there = _seeded_module(device="cuda")
    built_there.load_state_dict(module.state_dict())
    torch.testing.assert_close(built_there(x, x, x)[0], outs[0], atol=0, rtol=0)
    assert move(built_there.cpu()).generator.device.type == "cuda"


def test_torch_refuses_the_jagged_input_we_take():
    """The README's stated difference: this torch's nn.MultiheadAttention raises on jagged input; ours runs."""
    ref, ours = torch_and_ours(dtype=torch.float32, batch_first=True)
    ref.eval(), ours.eval()
    x = _jagged(3, 5)
    with torch.no_grad():
        with pytest.raises(Exception):
            ref(x, x, x)
        out, weights = ours(x, x, x)
    assert out.is_nested and weights.shape == (2, 5, 5)
