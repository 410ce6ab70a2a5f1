//! Criterion bench of channel application and TT-SVD at the sizes of the Python bench.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use num_complex::Complex64 as C64;
use qtransformers_core::channels::{
    amplitude_damping, apply_channel, depolarizing, thermal_relaxation,
};
use qtransformers_core::mps::{Mps, Truncation};
use std::hint::black_box;

fn pseudo_random(len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| (((i as u64 + 1) * 2654435761) % 1009) as f64 / 1009.0 - 0.5)
        .collect()
}

fn bench_channels(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_channel");
    group.sample_size(10);
    for &n in &[8usize, 10] {
        let dim = 1 << n;
        let batch = if n < 10 { 4096 / dim } else { 1 };
        let rho: Vec<C64> = pseudo_random(batch * dim * dim)
            .into_iter()
            .map(|x| C64::new(x, 0.0))
            .collect();
        let amp = amplitude_damping(0.2, 0.1).unwrap();
        let dep = depolarizing(0.1, 2).unwrap();
        let th = thermal_relaxation(1.0, 0.8, 0.3, 0.0).unwrap();
        let every: Vec<Vec<usize>> = (0..n).map(|q| vec![q]).collect();
        group.bench_with_input(BenchmarkId::new("amplitude_damping_q1", n), &n, |b, &n| {
            b.iter(|| apply_channel(black_box(&rho), batch, n, &amp, &[vec![1]]).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("depolarizing2_q0_qlast", n),
            &n,
            |b, &n| {
                b.iter(|| {
                    apply_channel(black_box(&rho), batch, n, &dep, &[vec![0, n - 1]]).unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("thermal_every_qubit", n), &n, |b, &n| {
            b.iter(|| apply_channel(black_box(&rho), batch, n, &th, &every).unwrap())
        });
    }
    group.finish();
}

fn bench_tt_svd(c: &mut Criterion) {
    let mut group = c.benchmark_group("tt_svd");
    group.sample_size(10);
    for &n in &[14usize, 18] {
        let data = pseudo_random(1 << n);
        let dims = vec![2; n];
        for (name, max_bond) in [("exact", None), ("max_bond_16", Some(16))] {
            let trunc = Truncation::new(max_bond, 0.0).unwrap();
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| Mps::from_dense(black_box(&data), &dims, trunc).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_channels, bench_tt_svd);
criterion_main!(benches);
