"""``qtransformers generate``: continue a prompt with a trained checkpoint; prints UTF-8 text."""

from __future__ import annotations

import argparse
import sys

import torch

from qtransformers.train.checkpoint import load_checkpoint
from qtransformers.train.data import decode, encode
from qtransformers.train.generation import SamplingConfig, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qtransformers generate``."""
    parser.add_argument(
        "--checkpoint", required=True, help="run folder (uses its latest checkpoint) or checkpoint folder"
    )
    parser.add_argument("--prompt", default="\n", help="text to continue (default a newline)")
    parser.add_argument("--max-new-bytes", type=int, default=200, help="bytes to generate (default 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy (default 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k most likely bytes")
    parser.add_argument("--top-p", type=float, default=None, help="keep the smallest set with probability >= p")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="penalty >= 1 for recent bytes")
    parser.add_argument(
        "--sampler",
        default="standard",
        choices=["standard", "quantum"],
        help="quantum: QLLM's stability-annealed sampler",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--no-cache", dest="use_cache", action="store_false", help="recompute instead of caching")
    parser.add_argument(
        "--attention-cache",
        default="exact",
        choices=["exact", "sampled"],
        help="exact KV caches (default) or a sampled (LSH-indexed) KV cache per attention layer",
    )
    parser.add_argument("--cache-budget", type=int, default=64, help="sampled cache: keys per row (default 64)")
    parser.add_argument(
        "--cache-epsilon", type=float, default=None, help="sampled cache: size each row's tail from this error bound"
    )


def run(args: argparse.Namespace) -> str:
    """Generate and write the prompt plus continuation to stdout (invalid UTF-8 becomes U+FFFD)."""
    model, _, _ = load_checkpoint(args.checkpoint, args.device)
    config = SamplingConfig(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        quantum=args.sampler == "quantum",
    )
    prompt = encode(args.prompt or "\n").view(1, -1).to(args.device)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    options = dict(budget=args.cache_budget, epsilon=args.cache_epsilon, seed=args.seed)
    out = generate(
        model,
        prompt,
        args.max_new_bytes,
        config,
        generator=generator,
        use_cache=args.use_cache,
        attention_cache=args.attention_cache,
        cache_options=options if args.attention_cache == "sampled" else None,
    )
    text = decode(out[0].tolist())
    sys.stdout.buffer.write(text.encode("utf-8") + b"\n")
    sys.stdout.flush()
    return text
