//! Matrix product states (tensor trains): TT-SVD, recompression, contraction, inner products.
//!
//! An MPS of `n` sites stores cores `G_k` of shape `(r_k, d_k, r_{k+1})` (row-major,
//! `r_0 = r_n = 1`) with `A[s_0, .., s_{n-1}] = G_0[:, s_0, :] ... G_{n-1}[:, s_{n-1}, :]`, the dense
//! array being row-major (site 0 is the slowest axis). SVDs are faer's thin SVD.
//!
//! Truncation keeps, at each cut, the singular values `s_i > cutoff * s_max` and at most
//! `max_bond` of them; the discarded weights `e_k^2 = sum of discarded s_i^2` give the bound
//! `|A - A_mps|_F <= sqrt(sum_k e_k^2)` (Oseledets 2011, Thm 2.2). TT-SVD and [`Mps::compress`]
//! sweep with orthonormal factors on one side, so the discarded parts are mutually orthogonal and
//! the bound is attained up to rounding; after several compressions the errors add up (triangle
//! inequality) and the stored figure is a bound.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use num_complex::Complex64 as C64;

use crate::error::{Error, Result};

/// A scalar an MPS can hold: f64 or complex f64.
pub trait Scalar:
    faer::traits::ComplexField
    + Copy
    + Send
    + Sync
    + std::fmt::Debug
    + std::ops::Mul<Output = Self>
    + std::ops::Add<Output = Self>
    + 'static
{
    /// The value `x + 0i`.
    fn from_f64(x: f64) -> Self;
    /// Complex conjugate.
    fn conj_(self) -> Self;
    /// Squared modulus.
    fn abs2_(self) -> f64;
    /// Real part.
    fn re_(self) -> f64;
    /// Whether the value is finite.
    fn finite_(self) -> bool;
}

impl Scalar for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn conj_(self) -> Self {
        self
    }
    fn abs2_(self) -> f64 {
        self * self
    }
    fn re_(self) -> f64 {
        self
    }
    fn finite_(self) -> bool {
        self.is_finite()
    }
}

impl Scalar for C64 {
    fn from_f64(x: f64) -> Self {
        C64::new(x, 0.0)
    }
    fn conj_(self) -> Self {
        self.conj()
    }
    fn abs2_(self) -> f64 {
        self.norm_sqr()
    }
    fn re_(self) -> f64 {
        self.re
    }
    fn finite_(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

/// Truncation rule applied at every cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truncation {
    /// Largest bond dimension kept (None: no limit).
    pub max_bond: Option<usize>,
    /// Relative cutoff: singular values `<= cutoff * s_max` are dropped (0 drops only exact zeros).
    pub cutoff: f64,
}

impl Truncation {
    /// Validates `max_bond >= 1` and a finite `cutoff >= 0`.
    pub fn new(max_bond: Option<usize>, cutoff: f64) -> Result<Self> {
        if max_bond == Some(0) {
            return Err(Error::InvalidArgument(
                "max_bond must be >= 1 (or None for no limit), got 0".into(),
            ));
        }
        if !(cutoff.is_finite() && cutoff >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "cutoff must be finite and >= 0, got {cutoff}"
            )));
        }
        Ok(Self { max_bond, cutoff })
    }

    /// Number of singular values kept (at least 1) and the discarded squared weight.
    fn rank(&self, s: &[f64]) -> (usize, f64) {
        let smax = s.first().copied().unwrap_or(0.0);
        let mut keep = s
            .iter()
            .take_while(|&&x| x > self.cutoff * smax)
            .count()
            .max(1);
        if let Some(m) = self.max_bond {
            keep = keep.min(m);
        }
        keep = keep.min(s.len());
        (keep, s[keep..].iter().map(|x| x * x).sum())
    }
}

/// A matrix product state with its accumulated truncation-error bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Mps<T> {
    /// Physical dimension of each site.
    pub dims: Vec<usize>,
    /// Bond dimensions `r_0 .. r_n` (`r_0 = r_n = 1`).
    pub bonds: Vec<usize>,
    /// Core `k`, row-major `(r_k, d_k, r_{k+1})`.
    pub cores: Vec<Vec<T>>,
    /// Bound on the Frobenius distance to the array this MPS was built from.
    pub truncation_error: f64,
}

/// Row-major `(m x k) @ (k x n)` with faer's matmul.
fn matmul_rm<T: Scalar>(a: &[T], m: usize, k: usize, b: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); m * n];
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, m, n),
        Accum::Replace,
        MatRef::from_row_major_slice(a, m, k),
        MatRef::from_row_major_slice(b, k, n),
        T::from_f64(1.0),
        Par::rayon(0),
    );
    out
}

fn to_row_major<T: Scalar>(m: MatRef<'_, T>, cols: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(m.nrows() * cols);
    for i in 0..m.nrows() {
        for j in 0..cols {
            out.push(m[(i, j)]);
        }
    }
    out
}

/// Thin SVD `M = U diag(s) V^H` of a row-major `rows x cols` matrix.
fn svd<T: Scalar>(
    data: &[T],
    rows: usize,
    cols: usize,
    cut: usize,
) -> Result<(Mat<T>, Vec<f64>, Mat<T>)> {
    let svd = MatRef::from_row_major_slice(data, rows, cols)
        .thin_svd()
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "SVD of the {rows} x {cols} unfolding at cut {cut} did not converge: {e:?}"
            ))
        })?;
    let s: Vec<f64> = (0..rows.min(cols))
        .map(|i| svd.S().column_vector()[i].re_())
        .collect();
    Ok((svd.U().to_owned(), s, svd.V().to_owned()))
}

fn check_dims(dims: &[usize], len: usize) -> Result<()> {
    if dims.is_empty() || dims.contains(&0) {
        return Err(Error::Shape(format!(
            "site dimensions must be non-empty and >= 1, got {dims:?}"
        )));
    }
    let total = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if total != Some(len) {
        return Err(Error::Shape(format!(
            "site dimensions {dims:?} do not multiply to the array size {len}"
        )));
    }
    Ok(())
}

impl<T: Scalar> Mps<T> {
    /// TT-SVD of a row-major array with site dimensions `dims` (left-to-right sweep).
    pub fn from_dense(data: &[T], dims: &[usize], trunc: Truncation) -> Result<Self> {
        check_dims(dims, data.len())?;
        if let Some(pos) = data.iter().position(|x| !x.finite_()) {
            return Err(Error::InvalidArgument(format!(
                "array must be finite; entry {pos} is not"
            )));
        }
        let n = dims.len();
        let mut bonds = vec![1usize; n + 1];
        let mut cores = Vec::with_capacity(n);
        let mut rest = data.to_vec();
        let mut discarded = 0.0;
        for k in 0..n - 1 {
            let rows = bonds[k] * dims[k];
            let cols = rest.len() / rows;
            let (u, s, v) = svd(&rest, rows, cols, k)?;
            let (keep, lost) = trunc.rank(&s);
            discarded += lost;
            cores.push(to_row_major(u.as_ref(), keep));
            // rest = diag(s[:keep]) V[:, :keep]^H, row-major (keep x cols).
            rest = (0..keep)
                .flat_map(|i| {
                    let (si, v) = (T::from_f64(s[i]), v.as_ref());
                    (0..cols).map(move |j| si * v[(j, i)].conj_())
                })
                .collect();
            bonds[k + 1] = keep;
        }
        cores.push(rest);
        Ok(Self {
            dims: dims.to_vec(),
            bonds,
            cores,
            truncation_error: discarded.sqrt(),
        })
    }

    /// Builds an MPS from cores of shapes `(bonds[k], dims[k], bonds[k+1])`, checking them.
    pub fn from_cores(
        dims: Vec<usize>,
        bonds: Vec<usize>,
        cores: Vec<Vec<T>>,
        truncation_error: f64,
    ) -> Result<Self> {
        let n = dims.len();
        if n == 0 || bonds.len() != n + 1 || cores.len() != n || bonds[0] != 1 || bonds[n] != 1 {
            return Err(Error::Shape(format!(
                "an MPS needs n >= 1 sites, n + 1 bonds starting and ending at 1 and n cores; got dims {dims:?}, bonds {bonds:?}, {} cores",
                cores.len()
            )));
        }
        for k in 0..n {
            let want = bonds[k] * dims[k] * bonds[k + 1];
            if cores[k].len() != want || want == 0 {
                return Err(Error::Shape(format!(
                    "core {k} has {} entries, expected {} x {} x {} = {want}",
                    cores[k].len(),
                    bonds[k],
                    dims[k],
                    bonds[k + 1]
                )));
            }
        }
        Ok(Self {
            dims,
            bonds,
            cores,
            truncation_error,
        })
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.dims.len()
    }

    /// Whether the MPS has no sites (never true for a constructed MPS).
    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }

    /// Number of stored scalars (all cores).
    pub fn num_params(&self) -> usize {
        self.cores.iter().map(Vec::len).sum()
    }

    /// Contracts the MPS into its dense row-major array.
    pub fn to_dense(&self) -> Vec<T> {
        let mut acc = vec![T::from_f64(1.0)];
        let mut prefix = 1usize;
        for k in 0..self.len() {
            let (r, d, r2) = (self.bonds[k], self.dims[k], self.bonds[k + 1]);
            acc = matmul_rm(&acc, prefix, r, &self.cores[k], d * r2);
            prefix *= d;
        }
        acc
    }

    /// `<self|other> = sum conj(self) * other` by a left-to-right transfer-matrix sweep.
    pub fn inner(&self, other: &Self) -> Result<T> {
        if self.dims != other.dims {
            return Err(Error::Shape(format!(
                "inner product needs equal site dimensions, got {:?} and {:?}",
                self.dims, other.dims
            )));
        }
        let mut env = vec![T::from_f64(1.0)]; // (ra x rb)
        for k in 0..self.len() {
            let (ra, rb, d) = (self.bonds[k], other.bonds[k], self.dims[k]);
            let (ra2, rb2) = (self.bonds[k + 1], other.bonds[k + 1]);
            // t[alpha, (s, beta')] = sum_beta env[alpha, beta] B[beta, s, beta']
            let t = matmul_rm(&env, ra, rb, &other.cores[k], d * rb2);
            // env'[alpha', beta'] = sum_{alpha, s} conj(A[(alpha, s), alpha']) t[(alpha, s), beta']
            let a = MatRef::from_row_major_slice(&self.cores[k], ra * d, ra2);
            let mut next = vec![T::from_f64(0.0); ra2 * rb2];
            matmul(
                MatMut::from_row_major_slice_mut(&mut next, ra2, rb2),
                Accum::Replace,
                a.adjoint(),
                MatRef::from_row_major_slice(&t, ra * d, rb2),
                T::from_f64(1.0),
                Par::rayon(0),
            );
            env = next;
        }
        Ok(env[0])
    }

    /// Frobenius (2-)norm of the represented array.
    pub fn norm(&self) -> f64 {
        self.inner(self)
            .map(|z| z.re_().max(0.0).sqrt())
            .unwrap_or(0.0)
    }

    /// Recompresses: QR sweep to left-canonical form, then a right-to-left truncated-SVD sweep.
    ///
    /// The returned MPS's `truncation_error` is this one's plus this step's discarded weight
    /// (triangle inequality), a bound on its distance to the original array.
    pub fn compress(&self, trunc: Truncation) -> Result<Self> {
        let n = self.len();
        let mut cores = self.cores.clone();
        let mut bonds = self.bonds.clone();
        let dims = &self.dims;
        for k in 0..n.saturating_sub(1) {
            let (rows, r2) = (bonds[k] * dims[k], bonds[k + 1]);
            let qr = MatRef::from_row_major_slice(&cores[k], rows, r2).qr();
            let q = qr.compute_thin_Q();
            let rank = q.ncols();
            cores[k] = to_row_major(q.as_ref(), rank);
            let r = to_row_major(qr.thin_R(), r2);
            let right = dims[k + 1] * bonds[k + 2];
            cores[k + 1] = matmul_rm(&r, rank, r2, &cores[k + 1], right);
            bonds[k + 1] = rank;
        }
        let mut discarded = 0.0;
        for k in (1..n).rev() {
            let (rows, cols) = (bonds[k], dims[k] * bonds[k + 1]);
            let (u, s, v) = svd(&cores[k], rows, cols, k)?;
            let (keep, lost) = trunc.rank(&s);
            discarded += lost;
            let v = v.as_ref();
            cores[k] = (0..keep)
                .flat_map(|i| (0..cols).map(move |j| v[(j, i)].conj_()))
                .collect();
            // us = U[:, :keep] diag(s[:keep]), (rows x keep)
            let u = u.as_ref();
            let s = &s;
            let us: Vec<T> = (0..rows)
                .flat_map(|i| (0..keep).map(move |j| u[(i, j)] * T::from_f64(s[j])))
                .collect();
            let left = bonds[k - 1] * dims[k - 1];
            cores[k - 1] = matmul_rm(&cores[k - 1], left, rows, &us, keep);
            bonds[k] = keep;
        }
        Ok(Self {
            dims: dims.clone(),
            bonds,
            cores,
            truncation_error: self.truncation_error + discarded.sqrt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<f64> {
        (0..len)
            .map(|i| ((((i as u64 + 1) * 2654435761) ^ seed) % 1009) as f64 / 1009.0 - 0.5)
            .collect()
    }

    fn dist<T: Scalar>(a: &[T], b: &[T]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x + T::from_f64(-1.0) * *y).abs2_())
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn exact_round_trip_without_truncation() {
        let data = pseudo_random(2 * 3 * 4 * 5, 1);
        let mps =
            Mps::from_dense(&data, &[2, 3, 4, 5], Truncation::new(None, 0.0).unwrap()).unwrap();
        assert_eq!(mps.bonds, vec![1, 2, 6, 5, 1]);
        assert!(dist(&mps.to_dense(), &data) < 1e-12);
        assert_eq!(mps.truncation_error, 0.0);
        let norm = data.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((mps.norm() - norm).abs() < 1e-12);
    }

    #[test]
    fn complex_round_trip_and_inner_product() {
        let re = pseudo_random(64, 3);
        let im = pseudo_random(64, 4);
        let a: Vec<C64> = re.iter().zip(&im).map(|(x, y)| C64::new(*x, *y)).collect();
        let b: Vec<C64> = im.iter().zip(&re).map(|(x, y)| C64::new(*x, -*y)).collect();
        let t = Truncation::new(None, 0.0).unwrap();
        let (ma, mb) = (
            Mps::from_dense(&a, &[2; 6], t).unwrap(),
            Mps::from_dense(&b, &[2; 6], t).unwrap(),
        );
        assert!(dist(&ma.to_dense(), &a) < 1e-12);
        let want: C64 = a.iter().zip(&b).map(|(x, y)| x.conj() * y).sum();
        assert!((ma.inner(&mb).unwrap() - want).norm() < 1e-12);
    }

    #[test]
    fn truncation_error_is_attained() {
        let data = pseudo_random(1 << 10, 7);
        let t = Truncation::new(Some(4), 0.0).unwrap();
        let mps = Mps::from_dense(&data, &[2; 10], t).unwrap();
        assert!(mps.bonds.iter().all(|&r| r <= 4));
        let err = dist(&mps.to_dense(), &data);
        assert!(
            err > 0.0 && (err - mps.truncation_error).abs() <= 1e-9 * err,
            "{err} vs {}",
            mps.truncation_error
        );
    }

    #[test]
    fn compress_bounds_and_keeps_exact_states() {
        let data = pseudo_random(1 << 8, 11);
        let exact = Mps::from_dense(&data, &[2; 8], Truncation::new(None, 0.0).unwrap()).unwrap();
        let same = exact.compress(Truncation::new(None, 0.0).unwrap()).unwrap();
        assert!(dist(&same.to_dense(), &data) < 1e-12);
        let small = exact
            .compress(Truncation::new(Some(3), 0.0).unwrap())
            .unwrap();
        assert!(small.bonds.iter().all(|&r| r <= 3));
        let err = dist(&small.to_dense(), &data);
        assert!(err <= small.truncation_error * (1.0 + 1e-9) + 1e-12);
        assert!(err >= 0.5 * small.truncation_error);
    }

    #[test]
    fn bad_input_is_an_error() {
        let t = Truncation::new(None, 0.0).unwrap();
        assert!(matches!(
            Mps::from_dense(&[1.0f64; 6], &[2, 2], t),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            Mps::from_dense(&[f64::NAN; 4], &[2, 2], t),
            Err(Error::InvalidArgument(_))
        ));
        assert!(Truncation::new(Some(0), 0.0).is_err());
        assert!(Truncation::new(None, -1.0).is_err());
        let a = Mps::from_dense(&[1.0f64; 4], &[2, 2], t).unwrap();
        let b = Mps::from_dense(&[1.0f64; 4], &[4], t).unwrap();
        assert!(a.inner(&b).is_err());
    }
}
