//! Measurement-shot samplers over rows of non-negative weights.
//!
//! A row of `n` weights `w` (not necessarily normalised) defines the distribution
//! `p_i = w_i / sum(w)`. Each sampler draws `shots` indices per row:
//!
//! * [`SampleMethod::Multinomial`]: i.i.d. draws (inverse CDF of independent uniforms).
//! * [`SampleMethod::Stratified`]: one uniform in each of the `shots` equal strata of [0, 1).
//! * [`SampleMethod::Systematic`]: one shared uniform offset for all strata.
//!
//! In all three each individual draw has marginal law `p`, so the average of `f(i_j)`
//! is an unbiased estimate of `sum_i p_i f(i)`. Rows are independent and processed in
//! parallel; row `r` uses its own ChaCha stream, so results do not depend on threading.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// How shots are placed along the cumulative distribution of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleMethod {
    /// Independent draws.
    Multinomial,
    /// One independent uniform per stratum `[j/m, (j+1)/m)`.
    Stratified,
    /// One shared uniform offset `(j + u)/m`.
    Systematic,
}

impl SampleMethod {
    /// Parses `"multinomial"`, `"stratified"` or `"systematic"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "multinomial" => Ok(Self::Multinomial),
            "stratified" => Ok(Self::Stratified),
            "systematic" => Ok(Self::Systematic),
            other => Err(Error::InvalidArgument(format!(
                "unknown sampling method {other:?}; expected one of \"multinomial\", \"stratified\", \"systematic\""
            ))),
        }
    }
}

/// A float type the samplers accept (f32 or f64).
pub trait Weight: Copy + Send + Sync {
    /// Widens to f64.
    fn to_f64(self) -> f64;
}
impl Weight for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl Weight for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// Checks that `weights` holds `rows * n` finite, non-negative values.
fn validate<W: Weight>(weights: &[W], rows: usize, n: usize) -> Result<()> {
    if weights.len() != rows * n {
        return Err(Error::Shape(format!(
            "weights has {} elements, expected rows * n = {rows} * {n}",
            weights.len()
        )));
    }
    if let Some(pos) = weights.iter().position(|w| {
        let w = w.to_f64();
        !(w.is_finite() && w >= 0.0)
    }) {
        return Err(Error::InvalidArgument(format!(
            "weights must be finite and non-negative; found {} at row {}, column {}",
            weights[pos].to_f64(),
            pos / n.max(1),
            pos % n.max(1)
        )));
    }
    Ok(())
}

/// Index of the first cumulative weight strictly above `target` (clamped to a positive-weight index).
fn search(cdf: &[f64], target: f64) -> usize {
    let idx = cdf.partition_point(|&c| c <= target);
    let mut idx = idx.min(cdf.len() - 1);
    // Never return a zero-weight index: step back over flat tail segments.
    while idx > 0 && cdf[idx] == cdf[idx - 1] {
        idx -= 1;
    }
    idx
}

/// Draws `shots` indices for one row into `out`; a row of total weight 0 yields `-1` everywhere.
fn sample_row<W: Weight>(row: &[W], out: &mut [i64], method: SampleMethod, rng: &mut ChaCha8Rng) {
    let mut cdf = Vec::with_capacity(row.len());
    let mut acc = 0.0f64;
    for w in row {
        acc += w.to_f64();
        cdf.push(acc);
    }
    if acc <= 0.0 {
        out.fill(-1);
        return;
    }
    let m = out.len() as f64;
    let offset: f64 = rng.random();
    for (j, slot) in out.iter_mut().enumerate() {
        let u = match method {
            SampleMethod::Multinomial => rng.random::<f64>(),
            SampleMethod::Stratified => (j as f64 + rng.random::<f64>()) / m,
            SampleMethod::Systematic => (j as f64 + offset) / m,
        };
        *slot = search(&cdf, u * acc) as i64;
    }
}

/// Draws `shots` indices for each of `rows` rows of `n` weights (row-major), in parallel.
///
/// Returns a row-major `rows * shots` vector of indices in `0..n` (or `-1` for a row
/// whose weights sum to zero). The same `seed` gives the same result.
pub fn sample_rows<W: Weight>(
    weights: &[W],
    rows: usize,
    n: usize,
    shots: usize,
    method: SampleMethod,
    seed: u64,
) -> Result<Vec<i64>> {
    if n == 0 {
        return Err(Error::Shape("cannot sample from rows of length 0".into()));
    }
    validate(weights, rows, n)?;
    let mut out = vec![0i64; rows * shots];
    if shots == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(shots)
        .zip(weights.par_chunks(n))
        .enumerate()
        .for_each(|(r, (dst, row))| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(r as u64);
            sample_row(row, dst, method, &mut rng);
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(idx: &[i64], n: usize) -> Vec<f64> {
        let mut h = vec![0.0; n];
        for &i in idx {
            h[i as usize] += 1.0;
        }
        let total = idx.len() as f64;
        h.iter().map(|c| c / total).collect()
    }

    #[test]
    fn marginals_match_probabilities() {
        let w = [0.1f64, 0.0, 0.3, 0.6];
        for method in [SampleMethod::Multinomial, SampleMethod::Stratified, SampleMethod::Systematic] {
            let rows = 4000;
            let weights: Vec<f64> = w.iter().cycle().take(rows * 4).copied().collect();
            let idx = sample_rows(&weights, rows, 4, 8, method, 7).unwrap();
            let h = histogram(&idx, 4);
            for (p, q) in w.iter().zip(&h) {
                // 32000 draws: standard error of a frequency is at most 0.0028.
                assert!((p - q).abs() < 0.012, "{method:?}: {h:?} vs {w:?}");
            }
            assert_eq!(h[1], 0.0, "zero-weight index drawn by {method:?}");
        }
    }

    #[test]
    fn systematic_is_exact_on_dyadic_rows() {
        // With shots = 4 and p = (1/2, 1/4, 1/4) every systematic draw has counts (2, 1, 1).
        let idx = sample_rows(&[2.0f32, 1.0, 1.0], 1, 3, 4, SampleMethod::Systematic, 3).unwrap();
        let mut counts = [0; 3];
        for i in idx {
            counts[i as usize] += 1;
        }
        assert_eq!(counts, [2, 1, 1]);
    }

    #[test]
    fn same_seed_same_draws_and_streams_differ() {
        let w: Vec<f64> = (0..64).map(|i| (i % 7) as f64 + 0.5).collect();
        let a = sample_rows(&w, 4, 16, 10, SampleMethod::Multinomial, 11).unwrap();
        let b = sample_rows(&w, 4, 16, 10, SampleMethod::Multinomial, 11).unwrap();
        let c = sample_rows(&w, 4, 16, 10, SampleMethod::Multinomial, 12).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a[..10], a[10..20], "rows must use distinct streams");
    }

    #[test]
    fn zero_rows_give_minus_one() {
        let idx = sample_rows(&[0.0f64, 0.0, 1.0, 1.0], 2, 2, 3, SampleMethod::Stratified, 0).unwrap();
        assert_eq!(&idx[..3], &[-1, -1, -1]);
        assert!(idx[3..].iter().all(|&i| i == 0 || i == 1));
    }

    #[test]
    fn invalid_input_is_an_error() {
        assert!(matches!(
            sample_rows(&[1.0f64, -1.0], 1, 2, 1, SampleMethod::Multinomial, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            sample_rows(&[1.0f64, f64::NAN], 1, 2, 1, SampleMethod::Multinomial, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(sample_rows(&[1.0f64; 3], 2, 2, 1, SampleMethod::Multinomial, 0), Err(Error::Shape(_))));
        assert!(matches!(sample_rows::<f64>(&[], 1, 0, 1, SampleMethod::Multinomial, 0), Err(Error::Shape(_))));
        assert!(SampleMethod::parse("bogus").is_err());
    }
}
