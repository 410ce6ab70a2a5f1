"""Generation: cached == recomputed decoding, sampling filters, QLLM's sampler, the CLI's UTF-8 output."""

import pytest
import torch

from qtransformers.cli import main
from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.train import TrainConfig, Trainer
from qtransformers.train.generation import (
    SamplingConfig,
    apply_repetition_penalty,
    filter_top_k_top_p,
    generate,
    next_byte,
    phase_stability,
)


@pytest.mark.parametrize("name", ["attention", "phase"])
def test_cached_generation_equals_recompute_past_the_window(name):
    torch.manual_seed(0)
    model = ByteLM(ByteLMConfig(mixer=name, dim=32, layers=2, max_seq_len=16))
    prompt = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(1))
    config = SamplingConfig(temperature=1.0, top_k=50, repetition_penalty=1.3, quantum=True)
    a = generate(model, prompt, 30, config, generator=torch.Generator().manual_seed(7), use_cache=True)
    b = generate(model, prompt, 30, config, generator=torch.Generator().manual_seed(7), use_cache=False)
    assert a.shape == (2, 35) and torch.equal(a[:, :5], prompt)
    assert torch.equal(a, b)  # 30 new bytes > max_seq_len 16: the window slides and stays exact


def test_greedy_picks_the_argmax():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    stability = torch.zeros(2)
    assert next_byte(logits, logits[:, :0].long(), SamplingConfig(temperature=0), stability, None).tolist() == [1, 0]
    assert next_byte(logits, logits[:, :0].long(), SamplingConfig(top_k=1), stability, None).tolist() == [1, 0]


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    assert torch.isinf(filter_top_k_top_p(logits, 2, None)).tolist() == [[False, False, True, True]]
    # nucleus 0.7: 0.5 + 0.25 crosses 0.7, so exactly the two largest survive
    assert torch.isinf(filter_top_k_top_p(logits, None, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_top_k_top_p(logits, None, 0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_top_k_top_p(logits, None, 1.0)).any()


def test_repetition_penalty():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), torch.tensor([2.0]))
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_phase_stability_range():
    h = torch.randn(3, 8)
    assert torch.allclose(phase_stability(h, h), torch.ones(3))
    assert torch.allclose(phase_stability(h, -h), torch.zeros(3), atol=1e-6)


def test_quantum_sampler_anneals_temperature_by_stability():
    """Frequencies match softmax(logits / T_eff) with T_eff = T_min + (T - T_min)(1 - s), within 4 standard errors."""
    n = 20000
    logits = torch.tensor([1.0, 0.0, -1.0]).expand(n, 3)
    gen = torch.Generator().manual_seed(0)
    config = SamplingConfig(temperature=2.0, min_temperature=0.5, quantum=True)
    for s, t_eff in ((1.0, 0.5), (0.5, 1.25), (0.0, 2.0)):
        draws = next_byte(logits, logits[:, :0].long(), config, torch.full((n,), s), gen)
        expected = torch.softmax(torch.tensor([1.0, 0.0, -1.0]) / t_eff, 0)
        freq = torch.bincount(draws, minlength=3).double() / n
        se = torch.sqrt(expected * (1 - expected) / n)
        assert ((freq - expected).abs() <= 4 * se).all(), (s, freq, expected)


def test_quantum_penalty_is_coherence_aware():
    """At stability 1 the repetition penalty is 1 + 2(p - 1): a repeated byte loses twice the log-odds."""
    logits = torch.tensor([[2.0, 1.75]])
    recent = torch.tensor([[0]])
    config = SamplingConfig(temperature=0, repetition_penalty=1.1, quantum=True)
    assert next_byte(logits, recent, config, torch.zeros(1), None).item() == 0  # 2 / 1.1 = 1.82 > 1.75
    assert next_byte(logits, recent, config, torch.ones(1), None).item() == 1  # 2 / 1.2 = 1.67 < 1.75


def test_bad_sampling_arguments():
    model = ByteLM(ByteLMConfig(dim=16, layers=1, max_seq_len=8))
    with pytest.raises(InvalidArgumentError, match="top_p"):
        generate(model, torch.zeros(1, 2, dtype=torch.long), 3, SamplingConfig(top_p=0.0))
    with pytest.raises(ShapeError, match="non-empty prompt"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)


def test_generate_cli_prints_valid_utf8(tmp_path, capsysbinary, shakespeare_path):
    data = tmp_path / "small.txt"
    data.write_bytes(shakespeare_path.read_bytes()[:20000])
    model = ByteLMConfig(mixer="attention", dim=16, layers=1, max_seq_len=16)
    Trainer(model, TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=2, batch_size=2, eval_batches=1)).run()
    capsysbinary.readouterr()
    for sampler in ("standard", "quantum"):
        argv = [
            "generate",
            "--checkpoint",
            str(tmp_path / "run"),
            "--prompt",
            "ΨQRH:",
            "--max-new-bytes",
            "40",
            "--temperature",
            "1.5",
            "--top-p",
            "0.95",
            "--repetition-penalty",
            "1.2",
            "--sampler",
            sampler,
        ]
        assert main(argv) == 0
        out = capsysbinary.readouterr().out
        text = out.decode("utf-8")  # raises if the output were not valid UTF-8
        assert text.startswith("ΨQRH:") and len(out) >= len("ΨQRH:".encode()) + 1
