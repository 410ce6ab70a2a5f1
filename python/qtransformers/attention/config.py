"""Keyword options of the quantum attention backends, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qtransformers.exceptions import InvalidArgumentError


@dataclass(frozen=True)
class QuantumConfig:
    """How attention rows are estimated.

    Attributes:
        backend: name of a registered backend ("exact"; sampled ones are added by their modules).
        num_samples: measurement shots per query row (sampled backends).
        adaptive_samples: reallocate shots across rows by entropy under the same total budget.
        control_variate: subtract a cheap estimate with known expectation (sampled backends).
        top_k: keys handled exactly by the hybrid backend.
        seed: seed of the module's generator (None: torch's global RNG); in ``head_configs``,
            the seed of that head's own generator (None: the module's generator).
        options: extra backend-specific options.
    """

    backend: str = "exact"
    num_samples: int = 32
    adaptive_samples: bool = False
    control_variate: bool = False
    top_k: int | None = None
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise InvalidArgumentError(f"num_samples must be a positive int, got {self.num_samples!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise InvalidArgumentError(f"top_k must be None or a non-negative int, got {self.top_k!r}")
