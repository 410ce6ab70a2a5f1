//! Causal FFT convolution along the last axis of a (B, C, T) array, and its backward.
//!
//! `y[b, c, t] = sum_{j <= t} k[c / g, j] * u[b, c, t - j]` with K kernels shared by groups of
//! `g = C / K` consecutive channels (g = 1: one kernel per channel): each row is zero-padded to an even
//! 5-smooth length `n >= 2T - 1`, transformed with `realfft` (real-to-complex), multiplied by
//! the kernel's spectrum and transformed back; only the first T samples are kept, so no
//! output sees a later input. Plans are made once per length and cached (one planner per
//! float type, shared by all threads); rows run in parallel with rayon.
//!
//! The backward is the same shape of work: `grad_u = corr(grad_y, k)` (multiply by the
//! conjugate kernel spectrum) and `grad_k[c] = sum_b corr(grad_y, u)`, accumulated per channel
//! in the frequency domain so that each channel needs a single inverse transform.

use std::sync::{Arc, Mutex, OnceLock};

use num_complex::Complex;
use rayon::prelude::*;
use realfft::{ComplexToReal, FftNum, RealFftPlanner, RealToComplex};

use crate::error::{Error, Result};

/// Float types the convolution runs in, each with its own cached planner.
pub trait ConvFloat: FftNum {
    /// The process-wide planner of this type (it caches every plan it makes).
    fn planner() -> &'static Mutex<RealFftPlanner<Self>>;
}

impl ConvFloat for f32 {
    fn planner() -> &'static Mutex<RealFftPlanner<f32>> {
        static PLANNER: OnceLock<Mutex<RealFftPlanner<f32>>> = OnceLock::new();
        PLANNER.get_or_init(|| Mutex::new(RealFftPlanner::new()))
    }
}

impl ConvFloat for f64 {
    fn planner() -> &'static Mutex<RealFftPlanner<f64>> {
        static PLANNER: OnceLock<Mutex<RealFftPlanner<f64>>> = OnceLock::new();
        PLANNER.get_or_init(|| Mutex::new(RealFftPlanner::new()))
    }
}

/// The transform length used for sequences of length `t`: the smallest even 5-smooth
/// number `>= 2t - 1` (so the circular convolution never wraps into the kept samples).
pub fn fft_len(t: usize) -> usize {
    let need = (2 * t).saturating_sub(1).max(2);
    let mut n = need + (need % 2);
    loop {
        let mut m = n;
        for p in [2, 3, 5] {
            while m.is_multiple_of(p) {
                m /= p;
            }
        }
        if m == 1 {
            return n;
        }
        n += 2;
    }
}

struct Plans<T: FftNum> {
    n: usize,
    forward: Arc<dyn RealToComplex<T>>,
    inverse: Arc<dyn ComplexToReal<T>>,
}

impl<T: ConvFloat> Plans<T> {
    fn new(t: usize) -> Result<Self> {
        let n = fft_len(t);
        let mut planner = T::planner()
            .lock()
            .map_err(|_| Error::InvalidArgument("FFT planner lock poisoned".into()))?;
        Ok(Self {
            n,
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
        })
    }

    fn bins(&self) -> usize {
        self.n / 2 + 1
    }

    /// Spectrum of `row` zero-padded to `n`, written into `out` (`pad` is scratch of length n).
    fn rfft(&self, row: &[T], pad: &mut [T], out: &mut [Complex<T>]) -> Result<()> {
        pad[..row.len()].copy_from_slice(row);
        pad[row.len()..].fill(T::zero());
        self.forward.process(pad, out).map_err(fft_error)
    }

    /// First `out.len()` samples of the inverse transform of `spec`, divided by `n`.
    fn irfft(&self, spec: &mut [Complex<T>], pad: &mut [T], out: &mut [T]) -> Result<()> {
        // Spectra of real signals: DC and Nyquist are real; clear rounding residue there.
        spec[0].im = T::zero();
        let last = spec.len() - 1;
        if self.n.is_multiple_of(2) {
            spec[last].im = T::zero();
        }
        self.inverse.process(spec, pad).map_err(fft_error)?;
        let scale = T::one() / T::from_usize(self.n).unwrap_or_else(T::one);
        for (o, p) in out.iter_mut().zip(pad.iter()) {
            *o = *p * scale;
        }
        Ok(())
    }
}

fn fft_error(err: realfft::FftError) -> Error {
    Error::InvalidArgument(format!("FFT failed: {err}"))
}

fn check(name: &str, len: usize, want: usize, shape: &str) -> Result<()> {
    if len != want {
        return Err(Error::Shape(format!(
            "{name} has {len} elements, expected {want} for shape {shape}"
        )));
    }
    Ok(())
}

fn check_dims(b: usize, c: usize, t: usize, kernels: usize) -> Result<usize> {
    if b == 0 || c == 0 || t == 0 {
        return Err(Error::Shape(format!(
            "causal_fftconv needs non-empty (B, C, T), got ({b}, {c}, {t})"
        )));
    }
    if kernels == 0 || !c.is_multiple_of(kernels) {
        return Err(Error::Shape(format!(
            "the number of kernels K = {kernels} must divide the number of channels C = {c}"
        )));
    }
    Ok(c / kernels)
}

/// Spectra of every kernel row, (C, n/2 + 1), computed in parallel.
fn kernel_spectra<T: ConvFloat>(
    plans: &Plans<T>,
    k: &[T],
    c: usize,
    t: usize,
) -> Result<Vec<Complex<T>>> {
    let bins = plans.bins();
    let mut spec = vec![Complex::new(T::zero(), T::zero()); c * bins];
    spec.par_chunks_mut(bins)
        .zip(k.par_chunks(t))
        .try_for_each_init(
            || vec![T::zero(); plans.n],
            |pad, (out, row)| plans.rfft(row, pad, out),
        )?;
    Ok(spec)
}

/// Causal convolution of `u` (B, C, T) with kernels `k` (K, T), channel c using kernel c / (C / K).
///
/// Returns (B, C, T).
pub fn causal_fftconv<T: ConvFloat>(
    u: &[T],
    k: &[T],
    b: usize,
    c: usize,
    t: usize,
    kernels: usize,
) -> Result<Vec<T>> {
    let group = check_dims(b, c, t, kernels)?;
    let shape = format!("(B, C, T) = ({b}, {c}, {t})");
    check("u", u.len(), b * c * t, &shape)?;
    check(
        "k",
        k.len(),
        kernels * t,
        &format!("(K, T) = ({kernels}, {t})"),
    )?;
    let plans = Plans::<T>::new(t)?;
    let kspec = kernel_spectra(&plans, k, kernels, t)?;
    let bins = plans.bins();
    let mut y = vec![T::zero(); b * c * t];
    y.par_chunks_mut(t)
        .zip(u.par_chunks(t))
        .enumerate()
        .try_for_each_init(
            || {
                (
                    vec![T::zero(); plans.n],
                    vec![Complex::new(T::zero(), T::zero()); bins],
                )
            },
            |(pad, spec), (row, (out, inp))| {
                plans.rfft(inp, pad, spec)?;
                let kernel = (row % c) / group;
                let kc = &kspec[kernel * bins..(kernel + 1) * bins];
                for (s, kv) in spec.iter_mut().zip(kc) {
                    *s = *s * *kv;
                }
                plans.irfft(spec, pad, out)
            },
        )?;
    Ok(y)
}

/// Gradients of [`causal_fftconv`]: given `g` = dL/dy (B, C, T), returns (dL/du (B, C, T), dL/dk (K, T)).
pub fn causal_fftconv_backward<T: ConvFloat>(
    g: &[T],
    u: &[T],
    k: &[T],
    b: usize,
    c: usize,
    t: usize,
    kernels: usize,
) -> Result<(Vec<T>, Vec<T>)> {
    let group = check_dims(b, c, t, kernels)?;
    let shape = format!("(B, C, T) = ({b}, {c}, {t})");
    check("grad", g.len(), b * c * t, &shape)?;
    check("u", u.len(), b * c * t, &shape)?;
    check(
        "k",
        k.len(),
        kernels * t,
        &format!("(K, T) = ({kernels}, {t})"),
    )?;
    let plans = Plans::<T>::new(t)?;
    let kspec = kernel_spectra(&plans, k, kernels, t)?;
    let bins = plans.bins();
    let zero = Complex::new(T::zero(), T::zero());
    // One task per kernel: it writes the grad_u rows of its `group` channels (B of each) and its grad_k row
    // in place. Chunk i of grad_u (group · T samples) holds batch row i / K, kernel i % K.
    let mut grad_u = vec![T::zero(); b * c * t];
    let mut grad_k = vec![T::zero(); kernels * t];
    let mut owned: Vec<Vec<&mut [T]>> = (0..kernels).map(|_| Vec::with_capacity(b)).collect();
    for (i, chunk) in grad_u.chunks_mut(group * t).enumerate() {
        owned[i % kernels].push(chunk);
    }
    grad_k
        .par_chunks_mut(t)
        .zip(owned.into_par_iter())
        .enumerate()
        .try_for_each_init(
            || (vec![T::zero(); plans.n], vec![zero; bins], vec![zero; bins]),
            |(pad, gspec, uspec), (kernel, (gk, mut rows))| -> Result<()> {
                let kc = &kspec[kernel * bins..(kernel + 1) * bins];
                let mut acc = vec![zero; bins];
                for (bi, row) in rows.iter_mut().enumerate() {
                    for gi in 0..group {
                        let off = (bi * c + kernel * group + gi) * t;
                        plans.rfft(&g[off..off + t], pad, gspec)?;
                        plans.rfft(&u[off..off + t], pad, uspec)?;
                        for ((a, gs), us) in acc.iter_mut().zip(gspec.iter()).zip(uspec.iter()) {
                            *a = *a + *gs * us.conj();
                        }
                        for (gs, kv) in gspec.iter_mut().zip(kc) {
                            *gs = *gs * kv.conj();
                        }
                        plans.irfft(gspec, pad, &mut row[gi * t..(gi + 1) * t])?;
                    }
                }
                plans.irfft(&mut acc, pad, gk)
            },
        )?;
    Ok((grad_u, grad_k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(u: &[f64], k: &[f64], b: usize, c: usize, t: usize, kernels: usize) -> Vec<f64> {
        let group = c / kernels;
        let mut y = vec![0.0; b * c * t];
        for bi in 0..b {
            for ch in 0..c {
                for i in 0..t {
                    let mut s = 0.0;
                    for j in 0..=i {
                        s += k[(ch / group) * t + j] * u[(bi * c + ch) * t + i - j];
                    }
                    y[(bi * c + ch) * t + i] = s;
                }
            }
        }
        y
    }

    fn data(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn fft_len_is_even_smooth_and_long_enough() {
        for t in [1, 2, 3, 97, 111, 1025, 16384] {
            let n = fft_len(t);
            assert!(n >= 2 * t - 1 && n.is_multiple_of(2), "t={t} n={n}");
        }
        assert_eq!(fft_len(16384), 32768);
    }

    #[test]
    fn matches_direct_convolution_on_odd_sizes() {
        for (b, c, t, kernels) in [(2, 3, 97, 3), (1, 2, 111, 2), (1, 1, 1, 1), (2, 8, 33, 2)] {
            let u = data(b * c * t, 1);
            let k = data(kernels * t, 2);
            let y = causal_fftconv(&u, &k, b, c, t, kernels).unwrap();
            let want = direct(&u, &k, b, c, t, kernels);
            for (a, w) in y.iter().zip(&want) {
                assert!((a - w).abs() < 1e-10, "{a} vs {w}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (b, c, t, kernels) = (2, 4, 13, 2);
        let u = data(b * c * t, 3);
        let k = data(kernels * t, 4);
        let g = data(b * c * t, 5);
        let (gu, gk) = causal_fftconv_backward(&g, &u, &k, b, c, t, kernels).unwrap();
        let loss = |u: &[f64], k: &[f64]| -> f64 {
            direct(u, k, b, c, t, kernels)
                .iter()
                .zip(&g)
                .map(|(y, g)| y * g)
                .sum()
        };
        let eps = 1e-6;
        // every element: each (batch row, kernel) block of grad_u is written by its own task
        for i in 0..b * c * t {
            let (mut up, mut down) = (u.clone(), u.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss(&up, &k) - loss(&down, &k)) / (2.0 * eps);
            assert!((fd - gu[i]).abs() < 1e-6, "grad_u[{i}] {fd} vs {}", gu[i]);
        }
        for i in 0..kernels * t {
            let (mut up, mut down) = (k.clone(), k.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss(&u, &up) - loss(&u, &down)) / (2.0 * eps);
            assert!((fd - gk[i]).abs() < 1e-6, "grad_k[{i}] {fd} vs {}", gk[i]);
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(matches!(
            causal_fftconv::<f32>(&[0.0; 5], &[0.0; 2], 1, 1, 2, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            causal_fftconv::<f32>(&[], &[], 0, 1, 2, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            causal_fftconv::<f32>(&[0.0; 6], &[0.0; 4], 1, 3, 2, 2),
            Err(Error::Shape(_))
        ));
        assert!(
            causal_fftconv_backward::<f64>(&[0.0; 4], &[0.0; 4], &[0.0; 3], 1, 2, 2, 2).is_err()
        );
    }
}
