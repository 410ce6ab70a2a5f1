"""Swap nn.MultiheadAttention for QuantumMultiheadAttention inside a TransformerEncoder.

With the exact backend the converted model computes the same function; run:
    python examples/drop_in_attention.py
"""

import copy

import torch
from torch import nn

from qtransformers import QuantumMultiheadAttention, convert_attention

torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, dropout=0.0, batch_first=True)
encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()

quantum = convert_attention(copy.deepcopy(encoder), quantum_backend="exact")
assert all(isinstance(layer.self_attn, QuantumMultiheadAttention) for layer in quantum.layers)

x = torch.randn(2, 32, 64)
mask = nn.Transformer.generate_square_subsequent_mask(32)
# With gradients enabled torch does not take its fused kernel, so QuantumMultiheadAttention.forward runs.
expected = encoder(x, mask=mask, is_causal=True)
got = quantum(x, mask=mask, is_causal=True)
print(f"max |difference| = {(got - expected).abs().max().item():.2e}")

# The state_dict of a QuantumMultiheadAttention loads into nn.MultiheadAttention and back.
mha = nn.MultiheadAttention(64, 4, batch_first=True)
mha.load_state_dict(quantum.layers[0].self_attn.state_dict())
print("state_dict keys:", list(mha.state_dict()))
