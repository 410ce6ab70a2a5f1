"""Benchmark suites behind ``qtransformers bench SUITE``.

``SUITES`` maps a suite name to the module that defines ``add_arguments(parser)`` and
``run(args)``; ``speed`` runs when no suite is named.
"""

SUITES = {
    "speed": "qtransformers.bench.speed",
    "quantum": "qtransformers.bench.quantum",
    "attention-error": "qtransformers.bench.attention_error",
    "long-context": "qtransformers.bench.long_context",
    "recall": "qtransformers.bench.recall",
}

DEFAULT_SUITE = "speed"
