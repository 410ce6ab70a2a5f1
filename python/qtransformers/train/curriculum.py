"""QLLM's curriculum: the weights of the auxiliary energy losses move through training stages.

A stage pins the weights at a fraction of training; between two stages the weights move
linearly, before the first and after the last they stay put. The default curriculum learns
plain language modelling first, then adds local coherence, then global interference, then
entanglement, reaching the final weights at 75 % of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtransformers.exceptions import InvalidArgumentError

ENERGY_TERMS = ("local", "global", "entanglement")


@dataclass(frozen=True)
class Stage:
    """Loss weights (term -> weight) reached at fraction ``at`` in [0, 1] of training."""

    at: float
    weights: dict


class Curriculum:
    """Piecewise-linear schedule of energy-loss weights over training stages."""

    def __init__(self, stages: list[Stage]) -> None:
        if not stages:
            raise InvalidArgumentError("a curriculum needs at least one stage")
        for stage in stages:
            if not 0.0 <= stage.at <= 1.0:
                raise InvalidArgumentError(f"stage position must be in [0, 1], got {stage.at}")
            unknown = set(stage.weights) - set(ENERGY_TERMS)
            if unknown:
                raise InvalidArgumentError(f"unknown energy terms {sorted(unknown)}; known: {ENERGY_TERMS}")
        self.stages = sorted(stages, key=lambda s: s.at)

    @classmethod
    def staged(cls, local: float, global_: float, entanglement: float) -> Curriculum:
        """The default four stages: none, + local, + global, + entanglement (final weights from 75 %)."""
        final = {"local": local, "global": global_, "entanglement": entanglement}
        zero = dict.fromkeys(ENERGY_TERMS, 0.0)
        return cls(
            [
                Stage(0.0, zero),
                Stage(0.25, {**zero, "local": local}),
                Stage(0.5, {**zero, "local": local, "global": global_}),
                Stage(0.75, final),
            ]
        )

    @classmethod
    def constant(cls, local: float, global_: float, entanglement: float) -> Curriculum:
        """The same weights throughout."""
        return cls([Stage(0.0, {"local": local, "global": global_, "entanglement": entanglement})])

    def weights(self, step: int, total: int) -> dict[str, float]:
        """The weight of every energy term at ``step`` of ``total``."""
        frac = min(max(step / max(total, 1), 0.0), 1.0)

        def value(stage: Stage, term: str) -> float:
            return float(stage.weights.get(term, 0.0))

        before = [s for s in self.stages if s.at <= frac]
        after = [s for s in self.stages if s.at > frac]
        if not before:
            return {t: value(after[0], t) for t in ENERGY_TERMS}
        if not after:
            return {t: value(before[-1], t) for t in ENERGY_TERMS}
        lo, hi = before[-1], after[0]
        mix = (frac - lo.at) / (hi.at - lo.at)
        return {t: (1 - mix) * value(lo, t) + mix * value(hi, t) for t in ENERGY_TERMS}
