//! Criterion bench of the row samplers at attention-sized inputs.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use qtransformers_core::sampling::{sample_rows, SampleMethod};
use std::hint::black_box;

fn bench_samplers(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample_rows");
    group.sample_size(20);
    for &n in &[256usize, 1024] {
        let rows = 512;
        let weights: Vec<f32> = (0..rows * n).map(|i| ((i * 2654435761) % 1000) as f32 + 1.0).collect();
        for method in [SampleMethod::Multinomial, SampleMethod::Stratified, SampleMethod::Systematic] {
            group.bench_with_input(BenchmarkId::new(format!("{method:?}"), n), &n, |b, &n| {
                b.iter(|| sample_rows(black_box(&weights), rows, n, 32, method, 1).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_samplers);
criterion_main!(benches);
