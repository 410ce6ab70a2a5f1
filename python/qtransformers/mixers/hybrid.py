"""Hybrid models: per-layer mixer patterns and parallel mixers whose outputs are summed.

A *pattern* names the mixer of every layer: comma-separated entries repeated cyclically to the
depth (``"qrh,qrh,qrh,attention"`` over 8 layers is two copies: a sequential hybrid, as in
Zoology's and Jamba's few-attention-layers models), and an entry may join several mixers with
``+`` (``"hyena+quantum"``): a :class:`ParallelMixer` runs them on the same (normalised) input
and sums their outputs (a parallel hybrid, as Based and Hymba combine attention with
convolution or SSM heads in one layer). A single name is one plain mixer.

Options (``mixer_options`` of a model): a key that names a mixer and maps to a dict gives
options to that mixer only (``{"qrh": {"max_len": 512}}``); any other key is shared and goes
to every mixer of the pattern whose constructor accepts it (``num_heads`` reaches attention and
quantum, not hyena). A per-mixer option overrides a shared one; a shared key that no mixer of
the pattern accepts raises (a typo is never ignored).
"""

from __future__ import annotations

from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.mixers.incremental import forward_incremental, register_incremental, supports_incremental
from qtransformers.mixers.registry import available, build, options_of, supports_causal


def parse_pattern(pattern: str) -> list[tuple[str, ...]]:
    """Entries of ``pattern`` ("a,b+c"), each a tuple of mixer names; raises on empty or unknown names."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidArgumentError(f"a mixer pattern must be a non-empty string, got {pattern!r}")
    known = available()
    entries = []
    for entry in pattern.split(","):
        names = tuple(name.strip() for name in entry.split("+"))
        for name in names:
            if name not in known:
                raise InvalidArgumentError(
                    f"unknown mixer {name!r} in pattern {pattern!r}; available: {', '.join(known)}"
                )
        entries.append(names)
    return entries


def layer_mixers(pattern: str, layers: int, *, causal: bool = True) -> list[tuple[str, ...]]:
    """The entry of each of ``layers`` layers: ``pattern``'s entries repeated cyclically; checks causality.

    Raises when the pattern has more entries than ``layers`` (cutting it would silently drop mixers,
    e.g. the attention layer of ``"qrh,qrh,qrh,attention"`` at depth 2).
    """
    entries = parse_pattern(pattern)
    if len(entries) > layers:
        raise InvalidArgumentError(
            f"pattern {pattern!r} has {len(entries)} entries but the model has {layers} layers; "
            f"use at least {len(entries)} layers"
        )
    if causal:
        for name in sorted({n for entry in entries for n in entry}):
            if not supports_causal(name):
                raise InvalidArgumentError(f"mixer {name!r} in pattern {pattern!r} cannot be causal")
    return [entries[i % len(entries)] for i in range(layers)]


def options_for(name: str, options: dict, defaults: dict[str, dict] | None = None) -> dict:
    """Options of mixer ``name``: its ``defaults``, then the shared keys of ``options`` it accepts, then its own dict."""
    accepted = options_of(name)
    own = options.get(name, {})
    if not isinstance(own, dict):
        raise InvalidArgumentError(f"options of mixer {name!r} must be a dict, got {own!r}")
    shared = {k: v for k, v in options.items() if k in accepted and not _is_mixer_key(k, v)}
    return {**(defaults or {}).get(name, {}), **shared, **own}


def check_options(pattern: str, options: dict) -> None:
    """Raise if a shared key of ``options`` is accepted by no mixer of ``pattern``, or a per-mixer key is unused."""
    names = {n for entry in parse_pattern(pattern) for n in entry}
    for key, value in options.items():
        if _is_mixer_key(key, value):
            if key not in names:
                raise InvalidArgumentError(f"options for mixer {key!r}, which pattern {pattern!r} does not use")
        elif not any(key in options_of(n) for n in names):
            raise InvalidArgumentError(
                f"option {key!r} is accepted by no mixer of pattern {pattern!r} ({', '.join(sorted(names))})"
            )


def _is_mixer_key(key: str, value: object) -> bool:
    return isinstance(value, dict) and key in available()


class ParallelMixer(nn.Module):
    """Mixers run on the same input, outputs summed: (B, T, D) -> (B, T, D); causal if every branch is."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        if len(branches) < 2:
            raise InvalidArgumentError(f"a parallel mixer needs at least two branches, got {len(branches)}")
        self.branches = nn.ModuleList(branches)
        self.causal = all(bool(getattr(b, "causal", False)) for b in branches)

    def forward(self, x: Tensor) -> Tensor:
        """Sum of every branch's output on ``x`` (B, T, D)."""
        y = self.branches[0](x)
        for branch in self.branches[1:]:
            y = y + branch(x)
        return y


def build_entry(
    entry: tuple[str, ...], dim: int, options: dict, defaults: dict[str, dict] | None = None, *, causal: bool = True
) -> nn.Module:
    """One layer's mixer: the named mixer, or a :class:`ParallelMixer` of several, each given its options."""
    built = [build(name, dim, causal=causal, **options_for(name, options, defaults)) for name in entry]
    return built[0] if len(built) == 1 else ParallelMixer(built)


def _parallel_supported(mixer: ParallelMixer) -> bool:
    return all(supports_incremental(b) for b in mixer.branches)


@register_incremental(ParallelMixer, supported=_parallel_supported)
def _parallel_incremental(mixer: ParallelMixer, x: Tensor, cache: dict) -> Tensor:
    y = forward_incremental(mixer.branches[0], x, cache.setdefault(0, {}))
    for i, branch in enumerate(mixer.branches[1:], start=1):
        y = y + forward_incremental(branch, x, cache.setdefault(i, {}))
    return y
