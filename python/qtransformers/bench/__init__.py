"""Benchmark suites behind ``qtransformers bench SUITE``.

``SUITES`` maps a suite name to the module that defines ``add_arguments(parser)`` and
``run(args)``; ``speed`` runs when no suite is named.
"""

SUITES = {
    "speed": "qtransformers.bench.speed",
    "quantum": "qtransformers.bench.quantum",
    "attention-error": "qtransformers.bench.attention_error",
    "long-context": "qtransformers.bench.long_context",
    "real-model": "qtransformers.bench.real_model",
    "decode": "qtransformers.bench.decode",
    "all": "qtransformers.bench.pipeline",
    "decode-bias": "qtransformers.bench.decode_bias",
    "recall": "qtransformers.bench.recall",
    "step-ratio": "qtransformers.bench.step_ratio",
}

DEFAULT_SUITE = "speed"
