"""Decoding through a SampledKVCache: ByteLM (``--attention-cache sampled``) and Hugging Face ``generate()``.

With a tail budget at least the cache length the estimator enumerates every key, so the generated
tokens equal exact decoding; with a small budget decoding runs and each step scores fewer keys
than the cache holds once the context is long.
"""

from __future__ import annotations

import pytest
import torch

from qtransformers.cli import main
from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.models.sampled_decoding import cache_stats, sampled_decode_cache
from qtransformers.train import TrainConfig, Trainer
from qtransformers.train.generation import SamplingConfig, generate

SMALL = dict(budget=4, tables=2, bits=4, sinks=2, window=4)


def _lm(mixer: str = "attention", max_seq_len: int = 160) -> ByteLM:
    torch.manual_seed(0)
    return ByteLM(ByteLMConfig(mixer=mixer, dim=32, layers=2, max_seq_len=max_seq_len, mixer_options={})).eval()


def test_bytelm_sampled_cache_with_a_full_budget_generates_the_exact_tokens():
    model = _lm(max_seq_len=24)
    prompt = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(1))
    greedy = SamplingConfig(temperature=0)
    exact = generate(model, prompt, 30, greedy)  # 35 > max_seq_len: the window slides
    sampled = generate(model, prompt, 30, greedy, attention_cache="sampled", cache_options=dict(budget=64))
    assert torch.equal(sampled, exact)


def test_bytelm_sampled_cache_logits_match_the_full_forward_with_a_full_budget():
    model = _lm()
    tokens = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(2))
    cache = sampled_decode_cache(model, budget=64)
    with torch.no_grad():
        full = model(tokens)
        parts = [model.forward_cached(tokens[:, :9], cache)[0]]
        parts += [model.forward_cached(tokens[:, i : i + 1], cache)[0] for i in range(9, 40)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)


def test_bytelm_sampled_cache_with_a_small_budget_scores_fewer_keys_than_it_holds():
    model = _lm()
    prompt = torch.randint(0, 256, (1, 100), generator=torch.Generator().manual_seed(3))
    cache = sampled_decode_cache(model, **SMALL)
    with torch.no_grad():
        model.forward_cached(prompt, cache)
        logits, _ = model.forward_cached(prompt[:, -1:], cache)
    assert torch.isfinite(logits).all()
    for stats in cache_stats(cache):
        assert stats["keys_scored"].shape == (1, 8, 1)  # (B, H, Lq): one decode row per head
        assert int(stats["cache_length"]) == 101
        assert (stats["keys_scored"] < 101).all(), stats


def test_sampled_cache_needs_the_attention_mixer_and_a_cache():
    prompt = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(InvalidArgumentError, match="'phase'"):
        generate(_lm("phase"), prompt, 2, attention_cache="sampled")
    with pytest.raises(InvalidArgumentError, match="use_cache"):
        generate(_lm(), prompt, 2, attention_cache="sampled", use_cache=False)
    with pytest.raises(InvalidArgumentError, match="attention_cache"):
        generate(_lm(), prompt, 2, attention_cache="lsh")


def test_generate_cli_with_the_sampled_cache(tmp_path, capsys, shakespeare_path):
    data = tmp_path / "small.txt"
    data.write_bytes(shakespeare_path.read_bytes()[:20000])
    model = ByteLMConfig(mixer="attention", dim=16, layers=1, max_seq_len=32)
    Trainer(model, TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=2, batch_size=2, eval_batches=1)).run()
    capsys.readouterr()
    base = ["generate", "--checkpoint", str(tmp_path / "run"), "--prompt", "ROMEO:", "--temperature", "0"]
    assert main([*base, "--max-new-bytes", "40"]) == 0
    exact = capsys.readouterr().out
    assert main([*base, "--max-new-bytes", "40", "--attention-cache", "sampled", "--cache-budget", "64"]) == 0
    assert capsys.readouterr().out == exact  # budget 64 >= every cache length here: the same greedy bytes
    assert main([*base, "--max-new-bytes", "40", "--attention-cache", "sampled", "--cache-budget", "2"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


def _tiny_hf(kind: str):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "llama":  # grouped-query attention: 4 query heads over 2 key/value heads
        config = transformers.LlamaConfig(
            vocab_size=101,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
        )
        return transformers.LlamaForCausalLM(config).eval()
    config = transformers.GPT2Config(vocab_size=101, n_embd=64, n_layer=2, n_head=4, n_positions=256)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_hf_generate_through_the_sampled_cache_equals_exact_generation_with_a_full_budget(kind):
    from qtransformers.integrations.huggingface_cache import generate_sampled

    model = _tiny_hf(kind)
    ids = torch.randint(0, 101, (1, 12), generator=torch.Generator().manual_seed(1))
    greedy = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False, pad_token_id=0)
    exact = model.generate(ids, **greedy)
    tokens, cache = generate_sampled(model, ids, cache_options=dict(budget=64), **greedy)
    assert torch.equal(tokens, exact)
    assert model.config._attn_implementation == "sdpa"  # restored
    assert all(len(history) == 24 for history in cache.history)  # the prefill, then one call per new token


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_hf_generate_with_a_small_budget_scores_fewer_keys_than_the_cache_holds(kind):
    from qtransformers.integrations.huggingface_cache import generate_sampled

    model = _tiny_hf(kind)
    ids = torch.randint(0, 101, (1, 120), generator=torch.Generator().manual_seed(2))
    tokens, cache = generate_sampled(
        model, ids, cache_options=SMALL, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0
    )
    assert tokens.shape == (1, 128)
    for history in cache.history:
        for step, stats in enumerate(history[1:], start=1):
            assert int(stats["cache_length"]) == 120 + step
            assert (stats["keys_scored"] < 120 + step).all(), (step, stats)


def test_hf_sampled_cache_refuses_another_attention_and_beam_search():
    from qtransformers.integrations.huggingface_cache import SampledCache

    model = _tiny_hf("llama")
    ids = torch.randint(0, 101, (1, 10), generator=torch.Generator().manual_seed(3))
    cache = SampledCache(model.config, budget=8)
    with torch.no_grad():
        model(ids, cache=cache)  # sdpa attends over the new keys only: fine for the prefill...
        with pytest.raises(BackendUnavailableError, match="never attended"):
            model(ids[:, :1], cache=cache)  # ...but the cache notices at the next step
    with pytest.raises(InvalidArgumentError, match="beam search"):
        cache.reorder_cache(torch.tensor([0]))
