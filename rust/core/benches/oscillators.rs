//! Criterion bench of the gated oscillator bank (the spectral mixer's bands): forward and backward
//! at one context-4096 row of width 128 with 4 bands, the shape of a ByteLM layer at nanoGPT's width.

use criterion::{criterion_group, criterion_main, Criterion};
use qtransformers_core::oscillators::{gated_oscillators, gated_oscillators_backward, BankShape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const SHAPE: BankShape = BankShape {
    batch: 1,
    time: 4096,
    dim: 128,
    bands: 4,
};

/// Seeded uniform values in [lo, hi) (ChaCha8, stream `salt`).
fn values(n: usize, salt: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    rng.set_stream(salt);
    (0..n)
        .map(|_| lo + rng.random::<f32>() * (hi - lo))
        .collect()
}

fn bench_bank(c: &mut Criterion) {
    let BankShape {
        batch: b,
        time: t,
        dim: d,
        bands: s,
    } = SHAPE;
    let v = values(b * t * d, 1, -1.0, 1.0);
    let g = values(b * t * s, 2, 0.0, 1.0);
    let lam = values(2 * s * d, 3, -0.6, 0.6); // |λ| < 0.85: a stable recurrence
    let w = values(2 * s * d, 4, -1.0, 1.0);
    let dy = values(b * t * d, 5, -1.0, 1.0);
    let mut group = c.benchmark_group("gated_oscillators");
    group.sample_size(20);
    group.bench_function("forward_4096x128x4", |bench| {
        bench.iter(|| gated_oscillators(black_box(&v), &g, &lam, &w, SHAPE).unwrap())
    });
    group.bench_function("backward_4096x128x4", |bench| {
        bench.iter(|| gated_oscillators_backward(black_box(&dy), &v, &g, &lam, &w, SHAPE).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_bank);
criterion_main!(benches);
