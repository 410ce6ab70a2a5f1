//! Criterion bench of the sampled KV cache: append (hashing into the SimHash index) and attend.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use qtransformers_core::kvcache::{LshConfig, SampledKvCache};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const HEADS: usize = 8;
const DIM: usize = 64;

fn config() -> LshConfig {
    LshConfig {
        bits: 10,
        tables: 16,
        sinks: 4,
        window: 16,
        budget: 256,
        epsilon: None,
        delta: 0.05,
    }
}

/// Seeded uniform values in [-1, 1) (ChaCha8, stream `salt`).
fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    rng.set_stream(salt);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

fn filled(len: usize) -> SampledKvCache {
    let mut cache = SampledKvCache::new(1, HEADS, DIM, DIM, config(), 0).unwrap();
    let k = values(HEADS * len * DIM, 1);
    let v = values(HEADS * len * DIM, 2);
    cache.append(&k, &v, len).unwrap();
    cache
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("kvcache_append");
    group.sample_size(10);
    for &new in &[1usize, 1024] {
        let k = values(HEADS * new * DIM, 3);
        let v = values(HEADS * new * DIM, 4);
        group.bench_with_input(BenchmarkId::new("append", new), &new, |b, &new| {
            b.iter_batched(
                || filled(4096),
                |mut cache| {
                    cache.append(black_box(&k), black_box(&v), new).unwrap();
                    cache // dropped outside the timed section
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn bench_attend(c: &mut Criterion) {
    let mut group = c.benchmark_group("kvcache_attend");
    group.sample_size(10);
    for &len in &[4096usize, 65536] {
        let mut cache = filled(len);
        let q = values(HEADS * DIM, 5);
        for exact in [false, true] {
            let name = if exact { "exact" } else { "sampled" };
            group.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                b.iter(|| {
                    cache
                        .attend(black_box(&q), 1, None, 0.125, exact, false)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_append, bench_attend);
criterion_main!(benches);
