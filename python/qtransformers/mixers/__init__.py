"""Token mixers: modules mapping (B, T, D) -> (B, T, D), enumerable by name.

Every mixer is built as ``build(name, dim, causal=..., **options)``; a mixer that is
registered as causal never lets position t see positions t' > t (tests check it).
"""

from qtransformers.mixers.registry import available, build, options_of, register, supports_causal

__all__ = ["available", "build", "options_of", "register", "supports_causal"]
