//! Quantum noise channels (CPTP maps) in Kraus form, and their application to density matrices.
//!
//! Conventions:
//!
//! * Qubit `i` is bit `i` of a basis index (little-endian, as Qiskit). A channel on `m` qubits
//!   applied to `targets = [q_0, .., q_{m-1}]` acts on the state's qubit `q_t` with its own qubit
//!   `t`, i.e. bit `t` of the channel's local index is bit `q_t` of the state's index.
//! * A channel `E(rho) = sum_k K_k rho K_k^dagger` is stored as `k` row-major `d x d` Kraus
//!   matrices, `d = 2^m`.
//! * Application never builds the `4^n x 4^n` superoperator of the whole register: it builds the
//!   `d^2 x d^2` superoperator of the channel's own qubits and applies it, in place, to every
//!   `d x d` block `rho[r + off(a), c + off(b)]`, in parallel over groups of rows.

use num_complex::Complex64 as C64;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Most qubits a channel may act on (its superoperator has `16^m` entries).
pub const MAX_CHANNEL_QUBITS: usize = 5;

/// A channel in Kraus form: `ops.len()` row-major matrices of size `dim x dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Kraus {
    /// Number of qubits the channel acts on.
    pub num_qubits: usize,
    /// The Kraus matrices, each row-major with `dim * dim` entries.
    pub ops: Vec<Vec<C64>>,
}

impl Kraus {
    /// Builds a channel from row-major Kraus matrices of side `2^num_qubits`, checking shapes.
    pub fn new(num_qubits: usize, ops: Vec<Vec<C64>>) -> Result<Self> {
        if num_qubits == 0 || num_qubits > MAX_CHANNEL_QUBITS {
            return Err(Error::InvalidArgument(format!(
                "a channel acts on 1 to {MAX_CHANNEL_QUBITS} qubits, got {num_qubits}"
            )));
        }
        let d = 1usize << num_qubits;
        if ops.is_empty() {
            return Err(Error::Shape(
                "a channel needs at least one Kraus operator".into(),
            ));
        }
        if let Some((i, op)) = ops.iter().enumerate().find(|(_, op)| op.len() != d * d) {
            return Err(Error::Shape(format!(
                "Kraus operator {i} has {} entries, expected {d} x {d} = {}",
                op.len(),
                d * d
            )));
        }
        if ops
            .iter()
            .flatten()
            .any(|z| !(z.re.is_finite() && z.im.is_finite()))
        {
            return Err(Error::InvalidArgument(
                "Kraus operators must be finite".into(),
            ));
        }
        Ok(Self { num_qubits, ops })
    }

    /// Side `d = 2^m` of each Kraus matrix.
    pub fn dim(&self) -> usize {
        1 << self.num_qubits
    }

    /// The channel's own superoperator `S[(i, j), (a, b)] = sum_k K[i, a] conj(K[j, b])`, row-major
    /// `d^2 x d^2`, so that `vec(E(rho)) = S vec(rho)` with row-major `vec`.
    pub fn superoperator(&self) -> Vec<C64> {
        let d = self.dim();
        let d2 = d * d;
        let mut s = vec![C64::new(0.0, 0.0); d2 * d2];
        for op in &self.ops {
            // Kraus matrices are often sparse (Paulis, damping): pair only their non-zeros.
            let nz: Vec<(usize, usize, C64)> = op
                .iter()
                .enumerate()
                .filter(|(_, z)| z.norm_sqr() > 0.0)
                .map(|(idx, z)| (idx / d, idx % d, *z))
                .collect();
            for &(i, a, kia) in &nz {
                for &(j, b, kjb) in &nz {
                    s[(i * d + j) * d2 + a * d + b] += kia * kjb.conj();
                }
            }
        }
        s
    }

    /// `sum_k K_k^dagger K_k - I` in the Frobenius norm (0 for a trace-preserving channel).
    pub fn trace_preservation_error(&self) -> f64 {
        let d = self.dim();
        let mut acc = vec![C64::new(0.0, 0.0); d * d];
        for op in &self.ops {
            for i in 0..d {
                for j in 0..d {
                    acc[i * d + j] += (0..d)
                        .map(|r| op[r * d + i].conj() * op[r * d + j])
                        .sum::<C64>();
                }
            }
        }
        acc.iter()
            .enumerate()
            .map(|(idx, z)| (z - if idx / d == idx % d { 1.0 } else { 0.0 }).norm_sqr())
            .sum::<f64>()
            .sqrt()
    }
}

fn check_range(name: &str, value: f64, lo: f64, hi: f64, what: &str) -> Result<()> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{name} must be in [{lo}, {hi}] for {what}, got {value}"
        )))
    }
}

fn c(re: f64) -> C64 {
    C64::new(re, 0.0)
}

/// The Pauli matrices I, X, Y, Z (row-major 2 x 2).
fn pauli(index: usize) -> [C64; 4] {
    let (o, l, i) = (c(0.0), c(1.0), C64::new(0.0, 1.0));
    match index {
        0 => [l, o, o, l],
        1 => [o, l, l, o],
        2 => [o, -i, i, o],
        _ => [l, o, o, -l],
    }
}

/// Largest depolarizing probability on `num_qubits` qubits, `4^n / (4^n - 1)`.
pub fn depolarizing_max(num_qubits: usize) -> f64 {
    let d2 = 4f64.powi(num_qubits as i32);
    d2 / (d2 - 1.0)
}

/// Depolarizing channel `rho -> (1 - p) rho + p Tr(rho) I / d` (Nielsen & Chuang Eq. 8.100).
///
/// Kraus form: `sqrt(1 - p + p / d^2) I` and `sqrt(p / d^2) P` for the `d^2 - 1` non-identity
/// Pauli strings `P`, since `sum_P P rho P = d Tr(rho) I` over all `d^2` strings. Complete
/// positivity needs `0 <= p <= d^2 / (d^2 - 1)`; `p = 1` is the fully depolarizing channel.
pub fn depolarizing(p: f64, num_qubits: usize) -> Result<Kraus> {
    if num_qubits == 0 || num_qubits > MAX_CHANNEL_QUBITS {
        return Err(Error::InvalidArgument(format!(
            "num_qubits must be in [1, {MAX_CHANNEL_QUBITS}] for the depolarizing channel, got {num_qubits}"
        )));
    }
    let pmax = depolarizing_max(num_qubits);
    check_range(
        "p",
        p,
        0.0,
        pmax,
        &format!("a {num_qubits}-qubit depolarizing channel (4^n/(4^n-1))"),
    )?;
    let d = 1usize << num_qubits;
    let d2 = (d * d) as f64;
    let mut ops = Vec::with_capacity(d * d);
    for string in 0..d * d {
        let weight = if string == 0 {
            1.0 - p + p / d2
        } else {
            p / d2
        };
        let amp = weight.max(0.0).sqrt();
        if amp == 0.0 && string != 0 {
            continue;
        }
        // Digit t (base 4) of `string` is the Pauli on qubit t.
        let mut op = vec![c(0.0); d * d];
        for (idx, entry) in op.iter_mut().enumerate() {
            let (row, col) = (idx / d, idx % d);
            let mut z = c(amp);
            for t in 0..num_qubits {
                let m = pauli((string >> (2 * t)) & 3);
                z *= m[((row >> t) & 1) * 2 + ((col >> t) & 1)];
            }
            *entry = z;
        }
        ops.push(op);
    }
    Kraus::new(num_qubits, ops)
}

/// Generalized amplitude damping with damping `gamma` towards a bath whose excited-state
/// population is `excited_state_population` (Nielsen & Chuang Sec. 8.3.5; Qiskit's
/// `amplitude_damping_error`): `rho_11 -> (1 - gamma) rho_11 + gamma * p1`, coherences times
/// `sqrt(1 - gamma)`. With `p1 = 0` it is plain amplitude damping (two Kraus operators).
pub fn amplitude_damping(gamma: f64, excited_state_population: f64) -> Result<Kraus> {
    check_range("gamma", gamma, 0.0, 1.0, "amplitude damping")?;
    let p1 = excited_state_population;
    check_range(
        "excited_state_population",
        p1,
        0.0,
        1.0,
        "amplitude damping",
    )?;
    let (c0, c1) = ((1.0 - p1).sqrt(), p1.sqrt());
    let (keep, decay) = ((1.0 - gamma).sqrt(), gamma.sqrt());
    let candidates = [
        [c(c0), c(0.0), c(0.0), c(c0 * keep)],
        [c(0.0), c(c0 * decay), c(0.0), c(0.0)],
        [c(c1 * keep), c(0.0), c(0.0), c(c1)],
        [c(0.0), c(0.0), c(c1 * decay), c(0.0)],
    ];
    Kraus::new(1, nonzero_ops(&candidates))
}

/// Phase damping: coherences `rho_01` times `sqrt(1 - gamma)`, populations unchanged
/// (Nielsen & Chuang Sec. 8.3.6; Qiskit's `phase_damping_error`).
pub fn phase_damping(gamma: f64) -> Result<Kraus> {
    check_range("gamma", gamma, 0.0, 1.0, "phase damping")?;
    let candidates = [
        [c(1.0), c(0.0), c(0.0), c((1.0 - gamma).sqrt())],
        [c(0.0), c(0.0), c(0.0), c(gamma.sqrt())],
    ];
    Kraus::new(1, nonzero_ops(&candidates))
}

/// Thermal relaxation for `time` with relaxation times `t1`, `t2` (`t2 <= 2 t1`):
/// populations relax as `rho_11 -> p1 + (rho_11 - p1) e^{-time/t1}` and coherences decay as
/// `e^{-time/t2}`. Built as generalized amplitude damping with `gamma = 1 - e^{-time/t1}` followed
/// by phase damping with `1 - lambda = e^{-2 time/t2 + time/t1}` (Kraus products, zeros dropped).
pub fn thermal_relaxation(
    t1: f64,
    t2: f64,
    time: f64,
    excited_state_population: f64,
) -> Result<Kraus> {
    if !(t1.is_finite() && t1 > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "t1 must be finite and > 0, got {t1}"
        )));
    }
    if !(t2.is_finite() && t2 > 0.0 && t2 <= 2.0 * t1) {
        return Err(Error::InvalidArgument(format!(
            "t2 must be in (0, 2 * t1] = (0, {}] for thermal relaxation, got {t2}",
            2.0 * t1
        )));
    }
    if !(time.is_finite() && time >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "time must be finite and >= 0, got {time}"
        )));
    }
    let gamma = 1.0 - (-time / t1).exp();
    let lambda = (1.0 - (-2.0 * time / t2 + time / t1).exp()).clamp(0.0, 1.0);
    let damp = amplitude_damping(gamma, excited_state_population)?;
    let dephase = phase_damping(lambda)?;
    let mut ops = Vec::new();
    for a in &dephase.ops {
        for b in &damp.ops {
            let prod = matmul2(a, b);
            if prod.iter().any(|z| z.norm_sqr() > 0.0) {
                ops.push(prod.to_vec());
            }
        }
    }
    Kraus::new(1, ops)
}

fn matmul2(a: &[C64], b: &[C64]) -> [C64; 4] {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    ]
}

/// The candidates that are not identically zero (at least the first one).
fn nonzero_ops(candidates: &[[C64; 4]]) -> Vec<Vec<C64>> {
    let mut ops: Vec<Vec<C64>> = candidates
        .iter()
        .filter(|m| m.iter().any(|z| z.norm_sqr() > 0.0))
        .map(|m| m.to_vec())
        .collect();
    if ops.is_empty() {
        ops.push(candidates[0].to_vec());
    }
    ops
}

/// Checks `targets` against an `num_qubits`-qubit register and returns the offsets
/// `off[a] = sum_t bit_t(a) << targets[t]` of the channel's local indices.
fn local_offsets(targets: &[usize], num_qubits: usize) -> Result<Vec<usize>> {
    if let Some(&q) = targets.iter().find(|&&q| q >= num_qubits) {
        return Err(Error::InvalidArgument(format!(
            "qubit {q} is out of range for a {num_qubits}-qubit state (qubits are 0..{num_qubits})"
        )));
    }
    for (i, q) in targets.iter().enumerate() {
        if targets[..i].contains(q) {
            return Err(Error::InvalidArgument(format!(
                "qubits must be distinct, got {targets:?}"
            )));
        }
    }
    let d = 1usize << targets.len();
    Ok((0..d)
        .map(|a| {
            targets
                .iter()
                .enumerate()
                .map(|(t, &q)| ((a >> t) & 1) << q)
                .sum()
        })
        .collect())
}

/// A matrix pointer shared by the parallel tasks of one in-place application.
#[derive(Clone, Copy)]
struct MatPtr(*mut C64);
// SAFETY: tasks read and write through it only the rows of their own group (see `Kernel::group`).
unsafe impl Send for MatPtr {}
unsafe impl Sync for MatPtr {}

/// One validated application of a channel's own superoperator on fixed target qubits.
///
/// Rows are handled in groups: the `d` rows `r0 + off[a]` sharing the non-target bits `r0` are
/// transformed in place, block by block (`d x d` entries at columns `c0 + off[b]`), since the new
/// block depends only on the old one. Groups touch disjoint rows, so they run in parallel.
struct Kernel<'a> {
    dim: usize,
    m: usize,
    rests: Vec<usize>,
    off: Vec<usize>,
    superop: &'a [C64],
    /// Compressed rows of the superoperator (multi-qubit Pauli channels are mostly zeros).
    starts: Vec<usize>,
    columns: Vec<usize>,
    values: Vec<C64>,
    /// Use the unrolled dense product (1-qubit channels, dense superoperators).
    dense: bool,
    /// The superoperator's real parts when it is real (as for all built-in channels): half the flops.
    real: Option<Vec<f64>>,
}

impl<'a> Kernel<'a> {
    fn new(num_qubits: usize, superop: &'a [C64], targets: &[usize]) -> Result<Self> {
        let m = targets.len();
        if m == 0 || m > num_qubits.min(MAX_CHANNEL_QUBITS) {
            return Err(Error::Shape(format!(
                "a channel on {m} qubits cannot act on a {num_qubits}-qubit state (at most {MAX_CHANNEL_QUBITS} channel qubits)"
            )));
        }
        let d2 = 1usize << (2 * m);
        if superop.len() != d2 * d2 {
            return Err(Error::Shape(format!(
                "superoperator has {} entries, expected (d^2)^2 = {} for {m} qubits",
                superop.len(),
                d2 * d2
            )));
        }
        let off = local_offsets(targets, num_qubits)?;
        let dim = 1usize << num_qubits;
        let mask: usize = targets.iter().map(|&q| 1usize << q).sum();
        let rests = (0..dim).filter(|c| c & mask == 0).collect();
        let (mut starts, mut columns, mut values) = (vec![0usize], Vec::new(), Vec::new());
        for row in superop.chunks(d2) {
            for (l, &v) in row.iter().enumerate().filter(|(_, v)| v.norm_sqr() > 0.0) {
                columns.push(l);
                values.push(v);
            }
            starts.push(columns.len());
        }
        let dense = d2 <= 4 || 4 * values.len() > d2 * d2;
        let real = superop
            .iter()
            .all(|z| z.im == 0.0)
            .then(|| superop.iter().map(|z| z.re).collect());
        Ok(Self {
            dim,
            m,
            rests,
            off,
            superop,
            starts,
            columns,
            values,
            dense,
            real,
        })
    }

    /// Writes the channel applied to the `dim x dim` matrix `src` (None: `dst` itself, in place)
    /// into `dst`, over row groups in parallel or in sequence.
    fn run(&self, src: Option<&[C64]>, dst: &mut [C64], parallel: bool) {
        match self.m {
            1 => self.groups::<2, 4>(src, dst, parallel),
            2 => self.groups::<4, 16>(src, dst, parallel),
            3 => self.groups::<8, 64>(src, dst, parallel),
            4 => self.groups::<16, 256>(src, dst, parallel),
            _ => self.groups::<32, 1024>(src, dst, parallel),
        }
    }

    fn groups<const D: usize, const D2: usize>(
        &self,
        src: Option<&[C64]>,
        dst: &mut [C64],
        parallel: bool,
    ) {
        let size = self.dim * self.dim;
        assert!(
            dst.len() == size && src.is_none_or(|s| s.len() == size),
            "kernel applied to a matrix of another size"
        );
        let from = MatPtr(src.map_or(dst.as_mut_ptr(), |s| s.as_ptr().cast_mut()));
        let to = MatPtr(dst.as_mut_ptr());
        // SAFETY: `dst` is borrowed mutably (and `src`, a different allocation, immutably) for
        // the whole call; every group touches only its own rows (see `group`).
        if parallel {
            let min_len = (16384 / (D * self.dim)).max(1);
            self.rests
                .par_iter()
                .with_min_len(min_len)
                .for_each(|&r0| unsafe { self.group::<D, D2>(from, to, r0) });
        } else {
            self.rests
                .iter()
                .for_each(|&r0| unsafe { self.group::<D, D2>(from, to, r0) });
        }
    }

    /// Applies the superoperator to the rows `r0 + off[a]` of the matrix at `from`, writing the
    /// same entries of `to` (which may be `from`: each block is read whole before it is written).
    ///
    /// # Safety
    /// Both point to live `dim x dim` matrices, `from` is only read, and no other thread accesses
    /// these rows: `r0` has zeros on every target bit and `off[a]` only target bits, so distinct
    /// `r0` give disjoint row sets; all indices are below `dim * dim`.
    unsafe fn group<const D: usize, const D2: usize>(&self, from: MatPtr, to: MatPtr, r0: usize) {
        let off: [usize; D] = std::array::from_fn(|a| self.off[a]);
        let inputs: [*const C64; D] =
            std::array::from_fn(|a| unsafe { from.0.add((r0 + off[a]) * self.dim).cast_const() });
        let rows: [*mut C64; D] =
            std::array::from_fn(|a| unsafe { to.0.add((r0 + off[a]) * self.dim) });
        let mut x = [C64::new(0.0, 0.0); D2];
        for &c0 in &self.rests {
            for a in 0..D {
                for b in 0..D {
                    x[a * D + b] = unsafe { *inputs[a].add(c0 + off[b]) };
                }
            }
            for (i, row) in rows.iter().enumerate() {
                for (j, col) in off.iter().enumerate() {
                    let o = i * D + j;
                    let y = if let (true, Some(re)) = (self.dense, &self.real) {
                        let s = &re[o * D2..][..D2];
                        let (mut a, mut b) = (0.0, 0.0);
                        for l in 0..D2 {
                            a += s[l] * x[l].re;
                            b += s[l] * x[l].im;
                        }
                        C64::new(a, b)
                    } else if self.dense {
                        let s = &self.superop[o * D2..][..D2];
                        (0..D2).map(|l| s[l] * x[l]).sum::<C64>()
                    } else if self.real.is_some() {
                        let (mut a, mut b) = (0.0, 0.0);
                        for e in self.starts[o]..self.starts[o + 1] {
                            let (v, z) = (self.values[e].re, x[self.columns[e]]);
                            a += v * z.re;
                            b += v * z.im;
                        }
                        C64::new(a, b)
                    } else {
                        (self.starts[o]..self.starts[o + 1])
                            .map(|e| self.values[e] * x[self.columns[e]])
                            .sum::<C64>()
                    };
                    unsafe { *row.add(c0 + col) = y };
                }
            }
        }
    }
}

/// Applies `channel` on each qubit tuple of `target_sets` in turn (e.g. every qubit of the
/// register) to the `batch` row-major `2^n x 2^n` density matrices in `rho`; returns the result.
///
/// Cost `O(batch * 4^n * d^2)` per target set for a `d x d` channel; no `4^n x 4^n` matrix is
/// formed. With at least as many matrices as threads each thread takes whole matrices through
/// all target sets (a matrix stays in cache); otherwise the row groups of one matrix are split.
pub fn apply_channel(
    rho: &[C64],
    batch: usize,
    num_qubits: usize,
    channel: &Kraus,
    target_sets: &[Vec<usize>],
) -> Result<Vec<C64>> {
    let dim = 1usize << num_qubits;
    if rho.len() != batch * dim * dim {
        return Err(Error::Shape(format!(
            "rho has {} entries, expected batch * 2^n * 2^n = {batch} * {dim} * {dim}",
            rho.len()
        )));
    }
    if let Some(t) = target_sets.iter().find(|t| t.len() != channel.num_qubits) {
        return Err(Error::Shape(format!(
            "a {}-qubit channel needs {} target qubits, got {t:?}",
            channel.num_qubits, channel.num_qubits
        )));
    }
    let superop = channel.superoperator();
    let kernels = target_sets
        .iter()
        .map(|t| Kernel::new(num_qubits, &superop, t))
        .collect::<Result<Vec<_>>>()?;
    let Some((first, rest)) = kernels.split_first() else {
        return Ok(rho.to_vec());
    };
    let mut state = vec![C64::new(0.0, 0.0); rho.len()];
    if batch == 0 {
        return Ok(state);
    }
    // The first target set reads rho and writes state; the others transform state in place.
    let parallel_rows = batch < rayon::current_num_threads();
    let apply = |(dst, src): (&mut [C64], &[C64])| {
        first.run(Some(src), dst, parallel_rows);
        rest.iter().for_each(|k| k.run(None, dst, parallel_rows));
    };
    if parallel_rows {
        state
            .chunks_mut(dim * dim)
            .zip(rho.chunks(dim * dim))
            .for_each(apply);
    } else {
        state
            .par_chunks_mut(dim * dim)
            .zip(rho.par_chunks(dim * dim))
            .for_each(apply);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense `sum_k (K (x) I) rho (K (x) I)^dagger` for a 1-qubit channel on qubit `q` of `n`.
    fn kraus_dense(rho: &[C64], n: usize, ch: &Kraus, q: usize) -> Vec<C64> {
        let dim = 1 << n;
        let mut out = vec![c(0.0); dim * dim];
        for op in &ch.ops {
            // Full operator F[r, s] = K[bit_q(r), bit_q(s)] if the other bits agree.
            let f = |r: usize, s: usize| {
                if (r & !(1 << q)) != (s & !(1 << q)) {
                    c(0.0)
                } else {
                    op[((r >> q) & 1) * 2 + ((s >> q) & 1)]
                }
            };
            for i in 0..dim {
                for j in 0..dim {
                    let mut z = c(0.0);
                    for a in 0..dim {
                        for b in 0..dim {
                            z += f(i, a) * rho[a * dim + b] * f(j, b).conj();
                        }
                    }
                    out[i * dim + j] += z;
                }
            }
        }
        out
    }

    fn random_state(n: usize, seed: u64) -> Vec<C64> {
        // Pure state from a fixed pseudo-random vector: rho = psi psi^dagger / |psi|^2.
        let dim = 1 << n;
        let psi: Vec<C64> = (0..dim)
            .map(|i| {
                let x = (((i as u64 + 1) * 2654435761) ^ seed) % 1000;
                C64::new(
                    x as f64 / 1000.0 - 0.5,
                    ((x * 7) % 1000) as f64 / 1000.0 - 0.5,
                )
            })
            .collect();
        let norm: f64 = psi.iter().map(|z| z.norm_sqr()).sum();
        let mut rho = vec![c(0.0); dim * dim];
        for i in 0..dim {
            for j in 0..dim {
                rho[i * dim + j] = psi[i] * psi[j].conj() / norm;
            }
        }
        rho
    }

    #[test]
    fn all_channels_are_trace_preserving() {
        let channels = [
            depolarizing(0.3, 1).unwrap(),
            depolarizing(depolarizing_max(2), 2).unwrap(),
            amplitude_damping(0.4, 0.2).unwrap(),
            phase_damping(0.7).unwrap(),
            thermal_relaxation(1.0, 1.5, 0.8, 0.1).unwrap(),
        ];
        for ch in &channels {
            assert!(ch.trace_preservation_error() < 1e-12, "{ch:?}");
        }
        assert_eq!(depolarizing(0.1, 2).unwrap().ops.len(), 16);
        assert_eq!(amplitude_damping(0.3, 0.0).unwrap().ops.len(), 2);
    }

    #[test]
    fn apply_matches_dense_kraus_sum() {
        let n = 3;
        let rho = random_state(n, 5);
        let ch = thermal_relaxation(1.0, 0.7, 0.5, 0.2).unwrap();
        for q in 0..n {
            let fast = apply_channel(&rho, 1, n, &ch, &[vec![q]]).unwrap();
            let slow = kraus_dense(&rho, n, &ch, q);
            let err: f64 = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (a - b).norm())
                .fold(0.0, f64::max);
            assert!(err < 1e-13, "qubit {q}: {err}");
        }
    }

    #[test]
    fn two_qubit_depolarizing_closed_form_on_chosen_qubits() {
        // Fully depolarizing qubits (0, 2) of 3: rho -> Tr_{0,2}(rho) (x) I/4 on those qubits.
        let n = 3;
        let dim = 8;
        let rho = random_state(n, 9);
        let p = 0.6;
        let out = apply_channel(&rho, 1, n, &depolarizing(p, 2).unwrap(), &[vec![0, 2]]).unwrap();
        for i in 0..dim {
            for j in 0..dim {
                let mut expect = rho[i * dim + j] * (1.0 - p);
                if (i & 5) == (j & 5) {
                    let partial: C64 = (0..4)
                        .map(|a| {
                            let off = (a & 1) | ((a >> 1) << 2);
                            rho[((i & 2) | off) * dim + ((j & 2) | off)]
                        })
                        .sum();
                    expect += partial * p / 4.0;
                }
                assert!((out[i * dim + j] - expect).norm() < 1e-13, "({i}, {j})");
            }
        }
    }

    #[test]
    fn amplitude_damping_populations() {
        let rho = vec![c(0.25), c(0.1), c(0.1), c(0.75)];
        let (g, p1) = (0.3, 0.2);
        let out =
            apply_channel(&rho, 1, 1, &amplitude_damping(g, p1).unwrap(), &[vec![0]]).unwrap();
        assert!((out[3].re - (0.75 * (1.0 - g) + g * p1)).abs() < 1e-14);
        assert!((out[1].re - 0.1 * (1.0 - g).sqrt()).abs() < 1e-14);
    }

    #[test]
    fn invalid_parameters_name_the_range() {
        let err = depolarizing(1.5, 1).unwrap_err().to_string();
        assert!(err.contains("[0, 1.3333333333333333]"), "{err}");
        assert!(amplitude_damping(-0.1, 0.0).is_err());
        assert!(amplitude_damping(0.1, 1.1).is_err());
        assert!(phase_damping(f64::NAN).is_err());
        let err = thermal_relaxation(1.0, 2.5, 0.1, 0.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(0, 2]"), "{err}");
        assert!(depolarizing(0.1, 0).is_err());
        let rho = vec![c(1.0), c(0.0), c(0.0), c(0.0)];
        let ch = phase_damping(0.1).unwrap();
        assert!(matches!(
            apply_channel(&rho, 1, 1, &ch, &[vec![1]]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            apply_channel(&rho, 2, 1, &ch, &[vec![0]]),
            Err(Error::Shape(_))
        ));
    }
}
