"""Bad input to QuantumMultiheadAttention raises a clear QTransformersError where torch raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtransformers import QTransformersError, QuantumMultiheadAttention
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError

E, H = 8, 2


def pair(**config):
    ref = nn.MultiheadAttention(E, H, **config)
    ours = QuantumMultiheadAttention(E, H, **config)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def x(*shape):
    return torch.randn(*shape)


# (description, module config, args, kwargs, expected error class, a fragment the message must contain)
BAD_CALLS = [
    ("wrong query width", {}, (x(4, 2, 6), x(4, 2, 8), x(4, 2, 8)), {}, ShapeError, "(4, 2, 6)"),
    ("wrong key width", {}, (x(4, 2, 8), x(4, 2, 6), x(4, 2, 6)), {}, ShapeError, "kdim=8"),
    ("4-D query", {}, (x(1, 4, 2, 8), x(1, 4, 2, 8), x(1, 4, 2, 8)), {}, ShapeError, "(1, 4, 2, 8)"),
    ("2-D key with 3-D query", {}, (x(4, 2, 8), x(4, 8), x(4, 8)), {}, ShapeError, "(4, 8)"),
    ("batch mismatch", {}, (x(4, 2, 8), x(5, 3, 8), x(5, 3, 8)), {}, ShapeError, "batch"),
    ("key/value length mismatch", {}, (x(4, 2, 8), x(5, 2, 8), x(6, 2, 8)), {}, ShapeError, "(6, 2, 8)"),
    (
        "kdim key/value length mismatch",
        dict(kdim=4, vdim=6),
        (x(4, 2, 8), x(5, 2, 4), x(7, 2, 6)),
        {},
        ShapeError,
        "(7, 2, 6)",
    ),
    (
        "attn_mask of wrong shape",
        {},
        (x(4, 2, 8), x(5, 2, 8), x(5, 2, 8)),
        dict(attn_mask=torch.zeros(4, 4, dtype=torch.bool)),
        ShapeError,
        "(4, 4)",
    ),
    (
        "3-D attn_mask with wrong batch*heads",
        {},
        (x(4, 2, 8), x(5, 2, 8), x(5, 2, 8)),
        dict(attn_mask=torch.zeros(3, 4, 5, dtype=torch.bool)),
        ShapeError,
        "(3, 4, 5)",
    ),
    (
        "key_padding_mask of wrong shape",
        {},
        (x(4, 2, 8), x(5, 2, 8), x(5, 2, 8)),
        dict(key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
        ShapeError,
        "(2, 4)",
    ),
    (
        "integer attn_mask",
        {},
        (x(4, 2, 8), x(4, 2, 8), x(4, 2, 8)),
        dict(attn_mask=torch.zeros(4, 4, dtype=torch.int64)),
        DTypeError,
        "int64",
    ),
    (
        "integer key_padding_mask",
        {},
        (x(4, 2, 8), x(4, 2, 8), x(4, 2, 8)),
        dict(key_padding_mask=torch.zeros(2, 4, dtype=torch.int32)),
        DTypeError,
        "int32",
    ),
    (
        "is_causal without a mask",
        {},
        (x(4, 2, 8), x(4, 2, 8), x(4, 2, 8)),
        dict(is_causal=True),
        InvalidArgumentError,
        "attn_mask",
    ),
    (
        "unbatched 3-D attn_mask of wrong shape",
        {},
        (x(4, 8), x(5, 8), x(5, 8)),
        dict(attn_mask=torch.zeros(3, 4, 5, dtype=torch.bool)),
        ShapeError,
        "(3, 4, 5)",
    ),
    (
        "unbatched 2-D key_padding_mask",
        {},
        (x(4, 8), x(5, 8), x(5, 8)),
        dict(key_padding_mask=torch.zeros(1, 5, dtype=torch.bool)),
        ShapeError,
        "(1, 5)",
    ),
]


@pytest.mark.parametrize("desc,config,args,kwargs,error,fragment", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_where_torch_raises(desc, config, args, kwargs, error, fragment):
    ref, ours = pair(**config)
    with pytest.raises(Exception):
        ref(*args, **kwargs)
    with pytest.raises(error) as info:
        ours(*args, **kwargs)
    assert isinstance(info.value, QTransformersError)
    assert isinstance(info.value, (ValueError, TypeError))
    assert fragment in str(info.value)


def test_constructor_errors():
    with pytest.raises(InvalidArgumentError, match="divisible"):
        QuantumMultiheadAttention(10, 3)
    with pytest.raises(InvalidArgumentError, match="greater than 0"):
        QuantumMultiheadAttention(0, 1)
    with pytest.raises(InvalidArgumentError, match="unknown quantum_backend 'bogus'"):
        QuantumMultiheadAttention(8, 2, quantum_backend="bogus")
    with pytest.raises(InvalidArgumentError, match="num_samples"):
        QuantumMultiheadAttention(8, 2, num_samples=0)
    with pytest.raises(Exception):
        nn.MultiheadAttention(10, 3)


def test_valid_calls_do_not_raise():
    """The checks are not over-eager: torch's accepted cases pass."""
    _, ours = pair(kdim=4, vdim=6)
    out, weights = ours(
        x(4, 2, 8), x(5, 2, 4), x(5, 2, 6), attn_mask=torch.zeros(2 * H, 4, 5), key_padding_mask=torch.zeros(2, 5)
    )
    assert out.shape == (4, 2, 8) and weights.shape == (2, 4, 5)
    _, ours = pair()
    out, weights = ours(x(4, 8), x(5, 8), x(5, 8), attn_mask=torch.zeros(H, 4, 5, dtype=torch.bool))
    assert out.shape == (4, 8) and weights.shape == (4, 5)
