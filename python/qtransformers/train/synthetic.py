"""Synthetic recall tasks: multi-query associative recall (MQAR), selective copying, induction heads.

Every generator returns ``(inputs, targets)``, both (B, N) int64: ``inputs`` are tokens in
[0, vocab), ``targets[b, t]`` is the token the model must predict *at* position t (from inputs
0..t), or ``IGNORE`` (-100, skipped by ``F.cross_entropy``) where nothing is scored. The same
``torch.Generator`` state gives the same batch.

- :func:`mqar` follows Zoology (Arora et al. 2024, ``zoology/data/multiquery_ar.py``): the
  vocabulary is split in two, keys from [1, vocab/2) and values from [vocab/2, vocab), each
  drawn without replacement; the sequence starts with the ``pairs`` key-value pairs
  ``k1 v1 k2 v2 ...``; each key is then queried once, at an even offset ``2·g`` after the pairs
  with the gap slot g drawn without replacement with probability ∝ g^(a-1) (a = ``power_a``,
  0.01: queries close to the pairs are likelier, as repeated bigrams in text); every other
  position holds a random token of the whole vocabulary. The answer (the key's value) is
  scored at the query token.
- :func:`selective_copy` (Mamba, Gu & Dao 2023): ``items`` distinct data tokens at random
  positions (in order) among noise tokens (0) in the first N - items positions, the last of
  which is a separator (1); the data tokens are then copied in order, teacher-forced: at the
  separator predict d1, at d_i predict d_{i+1} (``items`` scored positions).
- :func:`induction` (the H3 / Olsson et al. task): random tokens in which a trigger token (1)
  appears once, followed by an answer token; the sequence ends with the trigger and the
  answer is scored there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError

IGNORE = -100


def _distinct(batch: int, low: int, high: int, count: int, generator: torch.Generator) -> Tensor:
    """(batch, count) tokens in [low, high), distinct within each row."""
    return torch.rand(batch, high - low, generator=generator).argsort(dim=1)[:, :count] + low


def mqar(
    batch: int, seq_len: int, *, pairs: int, vocab: int, generator: torch.Generator, power_a: float = 0.01
) -> tuple[Tensor, Tensor]:
    """Zoology's MQAR batch: inputs and targets (B, N); ``pairs`` key-value pairs, each queried once."""
    if pairs < 1 or 4 * pairs > seq_len or seq_len % 2:
        raise InvalidArgumentError(f"MQAR needs pairs >= 1, 4·pairs <= N and N even, got {pairs} pairs, N {seq_len}")
    if vocab // 2 - 1 < pairs:
        raise InvalidArgumentError(f"vocab {vocab} has fewer than {pairs} keys (keys are [1, vocab/2))")
    if not 0 < power_a <= 1:
        raise InvalidArgumentError(f"power_a must be in (0, 1], got {power_a}")
    keys = _distinct(batch, 1, vocab // 2, pairs, generator)
    values = _distinct(batch, vocab // 2, vocab, pairs, generator)
    context = 2 * pairs
    space = (seq_len - context) // 2
    weights = power_a * torch.arange(1, space + 1, dtype=torch.float64) ** (power_a - 1)
    gaps = torch.multinomial(weights.expand(batch, space), pairs, replacement=False, generator=generator)
    inputs = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    query = context + 2 * gaps
    inputs.scatter_(1, query, keys)
    targets = torch.full_like(inputs, IGNORE).scatter_(1, query, values)
    return inputs, targets


def selective_copy(
    batch: int, seq_len: int, *, items: int, vocab: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Selective copying batch (B, N): ``items`` data tokens hidden among noise, copied after a separator."""
    context = seq_len - items
    if items < 1 or context < items + 1:
        raise InvalidArgumentError(f"selective copy needs 1 <= items and 2·items + 1 <= N, got {items}, N {seq_len}")
    if vocab - 2 < items:
        raise InvalidArgumentError(f"vocab {vocab} has fewer than {items} data tokens (tokens 0, 1 are reserved)")
    data = _distinct(batch, 2, vocab, items, generator)
    slots = torch.rand(batch, context - 1, generator=generator).argsort(dim=1)[:, :items].sort(dim=1).values
    inputs = torch.zeros(batch, seq_len, dtype=torch.long)
    inputs.scatter_(1, slots, data)
    inputs[:, context - 1] = 1
    inputs[:, context:] = data
    targets = torch.full_like(inputs, IGNORE)
    targets[:, context - 1 : seq_len - 1] = data
    return inputs, targets


def induction(batch: int, seq_len: int, *, vocab: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Induction-head batch (B, N): a trigger (1) then an answer somewhere; the final trigger is scored."""
    if seq_len < 4 or vocab < 3:
        raise InvalidArgumentError(f"induction needs N >= 4 and vocab >= 3, got N {seq_len}, vocab {vocab}")
    inputs = torch.randint(2, vocab, (batch, seq_len), generator=generator)
    where = torch.randint(0, seq_len - 2, (batch, 1), generator=generator)
    inputs.scatter_(1, where, 1)
    answer = inputs.gather(1, where + 1)
    inputs[:, -1] = 1
    targets = torch.full_like(inputs, IGNORE)
    targets[:, -1:] = answer
    return inputs, targets


def make_batch(
    task: str, batch: int, seq_len: int, *, items: int, vocab: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A batch of ``task`` (one of :data:`TASKS`); ``items`` is MQAR's pairs and selective copy's data tokens."""
    if task == "mqar":
        return mqar(batch, seq_len, pairs=items, vocab=vocab, generator=generator)
    if task == "selective-copy":
        return selective_copy(batch, seq_len, items=items, vocab=vocab, generator=generator)
    if task == "induction":
        return induction(batch, seq_len, vocab=vocab, generator=generator)
    raise InvalidArgumentError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")


TASKS = ("mqar", "selective-copy", "induction")
