"""Language models built on the mixer registry."""

from qtransformers.models.bytelm import Block, ByteLM, ByteLMConfig, DecodeCache

__all__ = ["Block", "ByteLM", "ByteLMConfig", "DecodeCache"]
