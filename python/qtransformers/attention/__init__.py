"""Attention modules: QuantumMultiheadAttention and its pluggable backends."""

from qtransformers.attention.backends import available_backends, get_backend, register_backend
from qtransformers.attention.config import QuantumConfig
from qtransformers.attention.convert import convert_attention
from qtransformers.attention.kvcache import SampledKVCache
from qtransformers.attention.multihead import QuantumMultiheadAttention

__all__ = [
    "QuantumConfig",
    "QuantumMultiheadAttention",
    "SampledKVCache",
    "available_backends",
    "convert_attention",
    "get_backend",
    "register_backend",
]
