//! Criterion bench of the row samplers at attention-sized inputs.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use qtransformers_core::sampling::{
    allocate_shots, sample_rows, sample_rows_ordered, SampleMethod,
};
use std::hint::black_box;

fn bench_samplers(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample_rows");
    group.sample_size(20);
    for &n in &[256usize, 1024] {
        let rows = 512;
        let weights: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 2654435761) % 1000) as f32 + 1.0)
            .collect();
        for method in [
            SampleMethod::Multinomial,
            SampleMethod::Stratified,
            SampleMethod::Systematic,
        ] {
            group.bench_with_input(BenchmarkId::new(format!("{method:?}"), n), &n, |b, &n| {
                b.iter(|| sample_rows(black_box(&weights), rows, n, 32, method, 1).unwrap())
            });
        }
    }
    group.finish();
}

fn bench_ordered_and_allocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample_rows_ordered");
    group.sample_size(20);
    for &n in &[256usize, 1024] {
        let rows = 512;
        let weights: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 2654435761) % 1000) as f32 + 1.0)
            .collect();
        let order: Vec<i64> = (0..n as i64).rev().collect();
        let shots = vec![32i64; rows];
        group.bench_with_input(BenchmarkId::new("systematic-ordered", n), &n, |b, &n| {
            b.iter(|| {
                sample_rows_ordered(
                    black_box(&weights),
                    rows,
                    n,
                    &shots,
                    32,
                    Some(&order),
                    rows,
                    SampleMethod::Systematic,
                    1,
                    None,
                )
                .unwrap()
            })
        });
    }
    let scores: Vec<f64> = (0..4096)
        .map(|i| ((i * 7919) % 100) as f64 / 100.0)
        .collect();
    group.bench_function("allocate_shots/4096", |b| {
        b.iter(|| allocate_shots(black_box(&scores), 1024, 32 * 1024, 1).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_samplers, bench_ordered_and_allocation);
criterion_main!(benches);
