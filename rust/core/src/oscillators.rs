//! Banks of damped complex oscillators gated per token: the recurrence form of the spectral mixer.
//!
//! For v (B, T, D), gates g (B, T, S), poles λ (S, D) and weights w (S, D), both complex and
//! passed as (2, S, D) arrays (real parts, then imaginary parts):
//!
//! ```text
//! h[b, s, d, t] = λ[s, d] · h[b, s, d, t - 1] + v[b, t, d]        (h[.., -1] = 0)
//! y[b, t, d]    = Σ_s g[b, t, s] · Re(w[s, d] · h[b, s, d, t])
//! ```
//!
//! so `h = Σ_{j ≤ t} λ^j v[t - j]` and each band is the causal convolution of v with the kernel
//! `Re(w λ^j)`, a damped oscillator when |λ| < 1. The recurrence computes it in O(T) per
//! channel, where the FFT convolution of the same kernel is O(T log T) and needs the kernel
//! materialised. Batch rows run in parallel with rayon.
//!
//! The backward recomputes the states of one batch row, then runs the adjoint recurrence
//! `a_t = c_t · conj(w) + conj(λ) · a_{t+1}` (c_t = g[t, s] · dL/dy[t, d]) backwards in time:
//! `dL/dv_t = Σ_s Re(a_t)`, `dL/dλ = Σ_t a_t · conj(h_{t-1})`, `dL/dw = Σ_t c_t · conj(h_t)` and
//! `dL/dg[t, s] = Σ_d dL/dy[t, d] · Re(w h_t)` (complex gradients as dL/dRe + i·dL/dIm).

use rayon::prelude::*;
use realfft::FftNum;

use crate::error::{Error, Result};

/// Sizes of one call: batch, time, channels, bands.
#[derive(Clone, Copy, Debug)]
pub struct BankShape {
    /// Batch rows B.
    pub batch: usize,
    /// Time steps T.
    pub time: usize,
    /// Channels D.
    pub dim: usize,
    /// Bands S.
    pub bands: usize,
}

impl BankShape {
    fn check(
        &self,
        v: &[impl Sized],
        g: &[impl Sized],
        lam: &[impl Sized],
        w: &[impl Sized],
    ) -> Result<()> {
        let BankShape {
            batch: b,
            time: t,
            dim: d,
            bands: s,
        } = *self;
        if b == 0 || t == 0 || d == 0 || s == 0 {
            return Err(Error::Shape(format!(
                "gated_oscillators needs non-empty sizes, got B = {b}, T = {t}, D = {d}, S = {s}"
            )));
        }
        for (name, len, want, shape) in [
            (
                "v",
                v.len(),
                b * t * d,
                format!("(B, T, D) = ({b}, {t}, {d})"),
            ),
            (
                "gates",
                g.len(),
                b * t * s,
                format!("(B, T, S) = ({b}, {t}, {s})"),
            ),
            (
                "poles",
                lam.len(),
                2 * s * d,
                format!("(2, S, D) = (2, {s}, {d})"),
            ),
            (
                "weights",
                w.len(),
                2 * s * d,
                format!("(2, S, D) = (2, {s}, {d})"),
            ),
        ] {
            if len != want {
                return Err(Error::Shape(format!(
                    "{name} has {len} elements, expected {want} for shape {shape}"
                )));
            }
        }
        Ok(())
    }
}

/// Time steps between the checkpoints of the backward, which recomputes each block's states from its own.
const BLOCK: usize = 64;

/// Runs the recurrence over the rows of `v` (T', D) from the states `hr`, `hi` (S·D, updated in place),
/// calling `visit(t, s, h_re, h_im)` with the D states of each band after step t.
fn scan<T: FftNum>(
    v: &[T],
    d: usize,
    lam: &[T],
    hr: &mut [T],
    hi: &mut [T],
    mut visit: impl FnMut(usize, usize, &[T], &[T]),
) {
    let (lr, li) = lam.split_at(hr.len());
    for (ti, vrow) in v.chunks_exact(d).enumerate() {
        for (si, (((hr, hi), lr), li)) in hr
            .chunks_exact_mut(d)
            .zip(hi.chunks_exact_mut(d))
            .zip(lr.chunks_exact(d))
            .zip(li.chunks_exact(d))
            .enumerate()
        {
            for ((((r, i), &a), &b), &x) in
                hr.iter_mut().zip(hi.iter_mut()).zip(lr).zip(li).zip(vrow)
            {
                let (pr, pi) = (*r, *i);
                *r = a * pr - b * pi + x;
                *i = a * pi + b * pr;
            }
            visit(ti, si, hr, hi);
        }
    }
}

/// Forward of the bank: y (B, T, D) from v (B, T, D), gates (B, T, S), poles and weights (2, S, D).
pub fn gated_oscillators<T: FftNum>(
    v: &[T],
    g: &[T],
    lam: &[T],
    w: &[T],
    shape: BankShape,
) -> Result<Vec<T>> {
    shape.check(v, g, lam, w)?;
    let (t, d, s) = (shape.time, shape.dim, shape.bands);
    let (wr, wi) = w.split_at(s * d);
    let mut y = vec![T::zero(); shape.batch * t * d];
    y.par_chunks_mut(t * d)
        .zip(v.par_chunks(t * d))
        .zip(g.par_chunks(t * s))
        .for_each(|((yb, vb), gb)| {
            let (mut hr, mut hi) = (vec![T::zero(); s * d], vec![T::zero(); s * d]);
            scan(vb, d, lam, &mut hr, &mut hi, |ti, si, hr, hi| {
                let gate = gb[ti * s + si];
                let band = si * d..(si + 1) * d;
                let yrow = &mut yb[ti * d..(ti + 1) * d];
                for ((((y, &r), &i), &a), &b) in yrow
                    .iter_mut()
                    .zip(hr)
                    .zip(hi)
                    .zip(&wr[band.clone()])
                    .zip(&wi[band])
                {
                    *y = *y + gate * (a * r - b * i);
                }
            });
        });
    Ok(y)
}

/// `Σ_d dy[d] · Re(w[d] h[d])`, in eight interleaved partial sums (a fixed order, so the sum is
/// deterministic, and independent lanes, so it vectorises).
fn gate_gradient<T: FftNum>(dy: &[T], hr: &[T], hi: &[T], wr: &[T], wi: &[T]) -> T {
    let mut partial = [T::zero(); 8];
    for (i, ((((&g, &r), &im), &a), &b)) in dy.iter().zip(hr).zip(hi).zip(wr).zip(wi).enumerate() {
        partial[i % 8] = partial[i % 8] + g * (a * r - b * im);
    }
    partial.iter().fold(T::zero(), |acc, &p| acc + p)
}

/// Gradients of the bank.
pub struct BankGrads<T> {
    /// dL/dv, (B, T, D).
    pub v: Vec<T>,
    /// dL/dgates, (B, T, S).
    pub gates: Vec<T>,
    /// dL/dpoles, (2, S, D): real parts, then imaginary parts.
    pub poles: Vec<T>,
    /// dL/dweights, (2, S, D).
    pub weights: Vec<T>,
}

/// The backward over one batch row: writes its dL/dv and dL/dgates, returns its parameter gradients
/// (poles re, im, then weights re, im; each S·D). The states are recomputed a block at a time from
/// checkpoints every [`BLOCK`] steps, so the memory is O(T/BLOCK + BLOCK) states, not O(T).
#[allow(clippy::too_many_arguments)]
fn backward_row<T: FftNum>(
    dy: &[T],
    v: &[T],
    g: &[T],
    lam: &[T],
    w: &[T],
    shape: BankShape,
    grad_v: &mut [T],
    grad_g: &mut [T],
) -> Vec<T> {
    let (t, d, s) = (shape.time, shape.dim, shape.bands);
    let sd = s * d;
    let (lr, li) = lam.split_at(sd);
    let (wr, wi) = w.split_at(sd);
    let blocks = t.div_ceil(BLOCK);
    let (mut hr, mut hi) = (vec![T::zero(); sd], vec![T::zero(); sd]);
    let mut checkpoints = vec![T::zero(); 2 * blocks * sd]; // the states before each block: re, then im
    for (j, cp) in checkpoints.chunks_exact_mut(2 * sd).enumerate() {
        cp[..sd].copy_from_slice(&hr);
        cp[sd..].copy_from_slice(&hi);
        let rows = &v[j * BLOCK * d..((j + 1) * BLOCK).min(t) * d];
        scan(rows, d, lam, &mut hr, &mut hi, |_, _, _, _| {});
    }
    // sr, sim: row i + 1 holds the states after the block's step i, row 0 those before it
    let (mut sr, mut sim) = (
        vec![T::zero(); (BLOCK + 1) * sd],
        vec![T::zero(); (BLOCK + 1) * sd],
    );
    let mut params = vec![T::zero(); 4 * sd];
    let (pole_grads, weight_grads) = params.split_at_mut(2 * sd);
    let (glr, gli) = pole_grads.split_at_mut(sd);
    let (gwr, gwi) = weight_grads.split_at_mut(sd);
    let (mut ar, mut ai) = (vec![T::zero(); sd], vec![T::zero(); sd]);
    for j in (0..blocks).rev() {
        let (start, end) = (j * BLOCK, ((j + 1) * BLOCK).min(t));
        let cp = &checkpoints[2 * j * sd..2 * (j + 1) * sd];
        hr.copy_from_slice(&cp[..sd]);
        hi.copy_from_slice(&cp[sd..]);
        sr[..sd].copy_from_slice(&cp[..sd]);
        sim[..sd].copy_from_slice(&cp[sd..]);
        scan(
            &v[start * d..end * d],
            d,
            lam,
            &mut hr,
            &mut hi,
            |i, si, r, im| {
                let k = (i + 1) * sd + si * d;
                sr[k..k + d].copy_from_slice(r);
                sim[k..k + d].copy_from_slice(im);
            },
        );
        for i in (0..end - start).rev() {
            let ti = start + i;
            let dyrow = &dy[ti * d..(ti + 1) * d];
            let gvrow = &mut grad_v[ti * d..(ti + 1) * d];
            for si in 0..s {
                let band = si * d..(si + 1) * d;
                let (now, before) = ((i + 1) * sd + si * d, i * sd + si * d);
                let (hr, hi) = (&sr[now..now + d], &sim[now..now + d]);
                let (qr, qi) = (&sr[before..before + d], &sim[before..before + d]);
                let (lr, li) = (&lr[band.clone()], &li[band.clone()]);
                let (wr, wi) = (&wr[band.clone()], &wi[band.clone()]);
                let gate = g[ti * s + si];
                grad_g[ti * s + si] = gate_gradient(dyrow, hr, hi, wr, wi);
                let adjoint = ar[band.clone()].iter_mut().zip(ai[band.clone()].iter_mut());
                let inputs = dyrow.iter().zip(gvrow.iter_mut());
                let states = hr.iter().zip(hi).zip(qr.iter().zip(qi));
                let coefficients = lr.iter().zip(li).zip(wr.iter().zip(wi));
                let pole_grads = glr[band.clone()]
                    .iter_mut()
                    .zip(gli[band.clone()].iter_mut());
                let grads = pole_grads.zip(gwr[band.clone()].iter_mut().zip(gwi[band].iter_mut()));
                for (
                    (
                        (((a_r, a_i), (&dyv, gv)), ((&h_r, &h_i), (&q_r, &q_i))),
                        ((&l_r, &l_i), (&w_r, &w_i)),
                    ),
                    ((gl_r, gl_i), (gw_r, gw_i)),
                ) in adjoint.zip(inputs).zip(states).zip(coefficients).zip(grads)
                {
                    let c = gate * dyv;
                    *gw_r = *gw_r + c * h_r;
                    *gw_i = *gw_i - c * h_i;
                    let (pr, pi) = (*a_r, *a_i);
                    *a_r = c * w_r + l_r * pr + l_i * pi;
                    *a_i = l_r * pi - l_i * pr - c * w_i;
                    *gv = *gv + *a_r;
                    *gl_r = *gl_r + *a_r * q_r + *a_i * q_i;
                    *gl_i = *gl_i + *a_i * q_r - *a_r * q_i;
                }
            }
        }
    }
    params
}

/// Backward of [`gated_oscillators`] given `grad` = dL/dy (B, T, D).
pub fn gated_oscillators_backward<T: FftNum>(
    grad: &[T],
    v: &[T],
    g: &[T],
    lam: &[T],
    w: &[T],
    shape: BankShape,
) -> Result<BankGrads<T>> {
    shape.check(v, g, lam, w)?;
    if grad.len() != v.len() {
        return Err(Error::Shape(format!(
            "grad has {} elements, expected {} like v",
            grad.len(),
            v.len()
        )));
    }
    let (t, d, s) = (shape.time, shape.dim, shape.bands);
    let sd = s * d;
    let mut grad_v = vec![T::zero(); v.len()];
    let mut grad_g = vec![T::zero(); g.len()];
    let per_row = grad_v
        .par_chunks_mut(t * d)
        .zip(grad_g.par_chunks_mut(t * s))
        .zip(grad.par_chunks(t * d))
        .zip(v.par_chunks(t * d).zip(g.par_chunks(t * s)))
        .map(|(((gvb, ggb), dy), (vb, gb))| backward_row(dy, vb, gb, lam, w, shape, gvb, ggb))
        .collect::<Vec<_>>();
    // summed in batch order, so the result does not depend on how rayon split the rows
    let mut params = vec![T::zero(); 4 * sd];
    for part in per_row {
        for (a, p) in params.iter_mut().zip(part) {
            *a = *a + p;
        }
    }
    let weights = params[2 * sd..].to_vec();
    let mut poles = params;
    poles.truncate(2 * sd);
    Ok(BankGrads {
        v: grad_v,
        gates: grad_g,
        poles,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(7);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// y by its definition: direct sums of Re(w λ^j) v[t - j], powers of λ from polar form.
    fn direct(v: &[f64], g: &[f64], lam: &[f64], w: &[f64], shape: BankShape) -> Vec<f64> {
        let BankShape {
            batch: b,
            time: t,
            dim: d,
            bands: s,
        } = shape;
        let sd = s * d;
        let mut y = vec![0.0; b * t * d];
        for bi in 0..b {
            for ti in 0..t {
                for si in 0..s {
                    for di in 0..d {
                        let k = si * d + di;
                        let (rho, theta) = (lam[k].hypot(lam[sd + k]), lam[sd + k].atan2(lam[k]));
                        let (wm, wp) = (w[k].hypot(w[sd + k]), w[sd + k].atan2(w[k]));
                        let mut sum = 0.0;
                        for j in 0..=ti {
                            let kernel = wm * rho.powi(j as i32) * (wp + theta * j as f64).cos();
                            sum += kernel * v[(bi * t + ti - j) * d + di];
                        }
                        y[(bi * t + ti) * d + di] += g[(bi * t + ti) * s + si] * sum;
                    }
                }
            }
        }
        y
    }

    fn poles(s: usize, d: usize, seed: u64) -> Vec<f64> {
        let angles = data(s * d, seed);
        let radii = data(s * d, seed + 1);
        let re = angles
            .iter()
            .zip(&radii)
            .map(|(a, r)| (0.7 + 0.5 * r) * (6.0 * a).cos());
        let im = angles
            .iter()
            .zip(&radii)
            .map(|(a, r)| (0.7 + 0.5 * r) * (6.0 * a).sin());
        re.chain(im).collect()
    }

    #[test]
    fn forward_matches_the_direct_sum() {
        for shape in [
            BankShape {
                batch: 2,
                time: 9,
                dim: 3,
                bands: 2,
            },
            BankShape {
                batch: 1,
                time: 1,
                dim: 1,
                bands: 1,
            },
            BankShape {
                batch: 3,
                time: 17,
                dim: 1,
                bands: 4,
            },
        ] {
            let (b, t, d, s) = (shape.batch, shape.time, shape.dim, shape.bands);
            let (v, g, lam, w) = (
                data(b * t * d, 1),
                data(b * t * s, 2),
                poles(s, d, 3),
                data(2 * s * d, 4),
            );
            let y = gated_oscillators(&v, &g, &lam, &w, shape).unwrap();
            for (a, e) in y.iter().zip(direct(&v, &g, &lam, &w, shape)) {
                assert!((a - e).abs() < 1e-12, "{a} vs {e}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // 150 steps: more than two checkpoint blocks, the last one partial
        for (batch, time, dim, bands) in [(2, 7, 3, 2), (1, 150, 2, 2)] {
            backward_case(BankShape {
                batch,
                time,
                dim,
                bands,
            });
        }
    }

    fn backward_case(shape: BankShape) {
        let (b, t, d, s) = (shape.batch, shape.time, shape.dim, shape.bands);
        let (v, g, lam, w) = (
            data(b * t * d, 5),
            data(b * t * s, 6),
            poles(s, d, 7),
            data(2 * s * d, 8),
        );
        let dy = data(b * t * d, 9);
        let loss = |v: &[f64], g: &[f64], lam: &[f64], w: &[f64]| -> f64 {
            let y = gated_oscillators(v, g, lam, w, shape).unwrap();
            y.iter().zip(&dy).map(|(a, b)| a * b).sum()
        };
        let grads = gated_oscillators_backward(&dy, &v, &g, &lam, &w, shape).unwrap();
        let eps = 1e-6;
        let numeric = |which: usize, i: usize| {
            let mut args = [v.clone(), g.clone(), lam.clone(), w.clone()];
            args[which][i] += eps;
            let up = loss(&args[0], &args[1], &args[2], &args[3]);
            args[which][i] -= 2.0 * eps;
            let down = loss(&args[0], &args[1], &args[2], &args[3]);
            (up - down) / (2.0 * eps)
        };
        for (which, analytic) in [&grads.v, &grads.gates, &grads.poles, &grads.weights]
            .into_iter()
            .enumerate()
        {
            for (i, a) in analytic.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (a - n).abs() < 1e-6 * (1.0 + n.abs()),
                    "argument {which}, element {i}: {a} vs {n}"
                );
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let shape = BankShape {
            batch: 1,
            time: 2,
            dim: 2,
            bands: 1,
        };
        assert!(
            gated_oscillators::<f32>(&[0.0; 3], &[0.0; 2], &[0.0; 4], &[0.0; 4], shape).is_err()
        );
        assert!(
            gated_oscillators::<f32>(&[0.0; 4], &[0.0; 2], &[0.0; 2], &[0.0; 4], shape).is_err()
        );
        let empty = BankShape {
            batch: 0,
            time: 2,
            dim: 2,
            bands: 1,
        };
        assert!(gated_oscillators::<f32>(&[], &[], &[0.0; 4], &[0.0; 4], empty).is_err());
        assert!(gated_oscillators_backward::<f64>(
            &[0.0; 3], &[0.0; 4], &[0.0; 2], &[0.0; 4], &[0.0; 4], shape
        )
        .is_err());
    }
}
