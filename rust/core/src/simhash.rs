//! SimHash (random hyperplane) codes: `bits` signs of projections per table, `tables` tables.
//!
//! A vector `x` gets, in table `t`, the code `sum_b [<p_{t,b}, x> > 0] << b` over the table's
//! `bits` Gaussian hyperplanes `p_{t,b}`. Two vectors at angle `theta` share one table's code with
//! probability `(1 - theta/pi)^bits`. The hyperplanes of head `h` are drawn from ChaCha8 stream
//! [`PLANE_STREAM`]` + h` under the seed, so they depend on the seed and the head only (never on how
//! many keys are hashed).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// First ChaCha8 stream of the hyperplanes; row streams (`group << 32 | position`) stay below it.
pub const PLANE_STREAM: u64 = 1 << 62;

/// Largest supported number of bits per table (the bucket array of a table has `2^bits` lists).
pub const MAX_BITS: usize = 16;

/// Dot product with eight independent accumulators (so the compiler can vectorise it).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The hyperplanes of one head: `tables * bits` rows of `dim` standard normal entries.
#[derive(Debug, Clone)]
pub struct SimHash {
    dim: usize,
    bits: usize,
    tables: usize,
    planes: Vec<f32>,
}

impl SimHash {
    /// Draws the hyperplanes of `head` from `seed`; `bits` in 1..=16, `tables` and `dim` >= 1.
    pub fn new(dim: usize, bits: usize, tables: usize, seed: u64, head: u64) -> Result<Self> {
        if !(1..=MAX_BITS).contains(&bits) {
            return Err(Error::InvalidArgument(format!(
                "bits must lie in 1..={MAX_BITS}, got {bits}"
            )));
        }
        if tables == 0 || dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "tables and dim must be >= 1, got tables = {tables}, dim = {dim}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(PLANE_STREAM + head);
        let count = tables * bits * dim;
        let mut planes = Vec::with_capacity(count + 1);
        while planes.len() < count {
            // Box-Muller: two uniforms give two independent standard normals.
            let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
            let u2: f64 = rng.random();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            planes.push((r * a.cos()) as f32);
            planes.push((r * a.sin()) as f32);
        }
        planes.truncate(count);
        Ok(Self {
            dim,
            bits,
            tables,
            planes,
        })
    }

    /// Number of bits per table.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Number of tables.
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// The hyperplanes, row-major `(tables, bits, dim)`.
    pub fn planes(&self) -> &[f32] {
        &self.planes
    }

    /// Writes the `tables` codes of `x` (length `dim`) into `out` (length `tables`).
    pub fn codes(&self, x: &[f32], out: &mut [u32]) {
        let width = self.bits * self.dim;
        for (t, code) in out.iter_mut().enumerate().take(self.tables) {
            let table = &self.planes[t * width..(t + 1) * width];
            *code = table
                .chunks_exact(self.dim)
                .enumerate()
                .fold(0u32, |c, (b, p)| c | (u32::from(dot(p, x) > 0.0) << b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_depend_on_seed_and_head_only() {
        let a = SimHash::new(5, 3, 2, 7, 1).unwrap();
        let b = SimHash::new(5, 3, 2, 7, 1).unwrap();
        let c = SimHash::new(5, 3, 2, 7, 2).unwrap();
        assert_eq!(a.planes(), b.planes());
        assert_ne!(a.planes(), c.planes());
        assert_eq!(a.planes().len(), 30);
    }

    #[test]
    fn codes_match_brute_force_signs() {
        let h = SimHash::new(4, 5, 3, 1, 0).unwrap();
        let x = [0.3f32, -1.0, 2.0, 0.5];
        let mut codes = [0u32; 3];
        h.codes(&x, &mut codes);
        for (t, &code) in codes.iter().enumerate() {
            for b in 0..5 {
                let p = &h.planes()[(t * 5 + b) * 4..(t * 5 + b + 1) * 4];
                let s: f32 = p.iter().zip(&x).map(|(a, b)| a * b).sum();
                assert_eq!((code >> b) & 1 == 1, s > 0.0);
            }
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(SimHash::new(4, 0, 1, 0, 0).is_err());
        assert!(SimHash::new(4, 17, 1, 0, 0).is_err());
        assert!(SimHash::new(4, 8, 0, 0, 0).is_err());
        assert!(SimHash::new(0, 8, 1, 0, 0).is_err());
    }

    #[test]
    fn dot_matches_naive_on_odd_lengths() {
        for n in [1usize, 7, 8, 9, 97] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4);
        }
    }
}
