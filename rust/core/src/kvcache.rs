//! Sampled softmax attention over a SimHash-indexed key/value store, and a KV cache built on it.
//!
//! For one query row with visible keys `V` (keys before its causal limit whose additive bias is
//! not `-inf`), the estimator splits `V` into
//!
//! * candidates `C`: keys sharing the query's SimHash code in at least one table, the first
//!   `sinks` positions and the last `window` positions before the limit (visible ones only);
//!   their scores `s_j = <q, k_j> * scale + bias_j` are computed exactly;
//! * the remainder `R = V \ C`, seen through `n` keys drawn uniformly **with replacement** from
//!   `R`, each with importance weight `w = |R| / n`. When `n >= |R|` every key of `R` is taken once
//!   (weight 1), and the estimate is exact.
//!
//! The output is the self-normalised ratio
//! `(sum_C a_j v_j + w sum_tail a_j v_j) / (sum_C a_j + w sum_tail a_j)` with `a_j = exp(s_j - c)`,
//! `c` the largest score computed. Numerator and denominator are unbiased; the ratio is
//! consistent with a bias of order `1/n`. No score outside `C` and the tail is ever formed.
//!
//! Error bound: with the linearised per-draw terms `g_j = |R| a_j (v_j - O) / D` (`D` the
//! estimated denominator, `O` the estimate) the CLT gives `O_hat - O ~ N(0, Sigma / n)`, and
//! Gaussian norm concentration `P(|X| > sqrt(tr Sigma) (1 + sqrt(2 ln(1/delta)))) <= delta`. The
//! reported relative error is that half-width over `|O_hat|`, with `tr Sigma` estimated from the
//! draws. In the `(epsilon, delta)` mode a pilot of `max(budget, 2)` draws sizes `n`; draws are
//! added (at most four more rounds) until the bound is below `epsilon` or `n >= |R|` (then `R`
//! is enumerated and the row is exact).
//!
//! Randomness: row `(group, position)` reads ChaCha8 stream `group << 32 | position` under the
//! seed, so its draws depend only on its own visible keys.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::simhash::{dot, SimHash};

/// Estimator settings shared by the functional entry point and the cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LshConfig {
    /// Bits per SimHash table (1..=16).
    pub bits: usize,
    /// Number of SimHash tables (>= 1).
    pub tables: usize,
    /// Leading positions always scored (attention sinks).
    pub sinks: usize,
    /// Trailing visible positions always scored (local window).
    pub window: usize,
    /// Tail draws per row (fixed mode), or the pilot size (epsilon mode).
    pub budget: usize,
    /// Target relative error of the output; `None` for the fixed-budget mode.
    pub epsilon: Option<f64>,
    /// Failure probability of the error bound, in (0, 1).
    pub delta: f64,
}

impl LshConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if !(1..=crate::simhash::MAX_BITS).contains(&self.bits) || self.tables == 0 {
            return Err(Error::InvalidArgument(format!(
                "bits must lie in 1..={} and tables >= 1, got bits = {}, tables = {}",
                crate::simhash::MAX_BITS,
                self.bits,
                self.tables
            )));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "delta must lie in (0, 1), got {}",
                self.delta
            )));
        }
        if let Some(eps) = self.epsilon {
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "epsilon must be positive and finite, got {eps}"
                )));
            }
        }
        Ok(())
    }

    /// The bound's multiplier `1 + sqrt(2 ln(1/delta))`.
    fn z(&self) -> f64 {
        1.0 + (2.0 * (1.0 / self.delta).ln()).sqrt()
    }
}

/// An additive float bias broadcast to `(B, H, L, S)`: `dims[i]` is 1 or the full size.
#[derive(Debug, Clone, Copy)]
pub struct Bias<'a> {
    /// Row-major data of shape `dims`.
    pub data: &'a [f32],
    /// Shape `(B or 1, H or 1, L or 1, S)`.
    pub dims: [usize; 4],
}

impl<'a> Bias<'a> {
    /// Checks the shape against `(b, h, l, s)`.
    fn check(&self, full: [usize; 4]) -> Result<()> {
        let ok_dims =
            (0..3).all(|i| self.dims[i] == 1 || self.dims[i] == full[i]) && self.dims[3] == full[3];
        if !ok_dims || self.data.len() != self.dims.iter().product::<usize>() {
            return Err(Error::Shape(format!(
                "mask of shape {:?} ({} values) does not broadcast to (B, H, L, S) = {:?} with a full key axis",
                self.dims,
                self.data.len(),
                full
            )));
        }
        if let Some(bad) = self
            .data
            .iter()
            .find(|x| x.is_nan() || **x == f32::INFINITY)
        {
            return Err(Error::InvalidArgument(format!(
                "mask values must be finite or -inf, found {bad}"
            )));
        }
        Ok(())
    }

    /// The bias row of query `(b, h, t)`.
    fn row(&self, b: usize, h: usize, t: usize) -> &'a [f32] {
        let [db, dh, dl, s] = self.dims;
        let idx = ((b % db) * dh + (h % dh)) * dl + (t % dl);
        &self.data[idx * s..(idx + 1) * s]
    }
}

/// One head's keys, values and SimHash bucket lists (`tables * 2^bits` lists of key indices,
/// each in increasing order).
#[derive(Debug, Clone, Default)]
pub struct HeadIndex {
    keys: Vec<f32>,
    values: Vec<f32>,
    buckets: Vec<Vec<u32>>,
}

impl HeadIndex {
    fn new(cfg: &LshConfig) -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
            buckets: vec![Vec::new(); cfg.tables << cfg.bits],
        }
    }

    /// Hashes and stores `count` keys (`count * dim`) and values (`count * vdim`).
    fn extend(&mut self, hasher: &SimHash, keys: &[f32], values: &[f32], dim: usize) {
        let nb = 1usize << hasher.bits();
        let mut codes = vec![0u32; hasher.tables()];
        let start = self.keys.len() / dim;
        for (i, k) in keys.chunks_exact(dim).enumerate() {
            hasher.codes(k, &mut codes);
            for (t, &c) in codes.iter().enumerate() {
                self.buckets[t * nb + c as usize].push((start + i) as u32);
            }
        }
        self.keys.extend_from_slice(keys);
        self.values.extend_from_slice(values);
    }

    fn view<'a>(&'a self, dim: usize, vdim: usize) -> Store<'a> {
        Store {
            keys: &self.keys,
            values: &self.values,
            buckets: &self.buckets,
            dim,
            vdim,
        }
    }
}

/// A borrowed view of one head's keys, values and buckets.
#[derive(Clone, Copy)]
struct Store<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    buckets: &'a [Vec<u32>],
    dim: usize,
    vdim: usize,
}

impl Store<'_> {
    fn key(&self, j: usize) -> &[f32] {
        &self.keys[j * self.dim..(j + 1) * self.dim]
    }
    fn value(&self, j: usize) -> &[f32] {
        &self.values[j * self.vdim..(j + 1) * self.vdim]
    }
    /// Hints the CPU to load key and value `j` (random reads are latency bound; this overlaps them).
    #[inline]
    fn prefetch(&self, j: usize) {
        prefetch(self.key(j));
        prefetch(self.value(j));
    }
    /// Scores of the keys `idx` (`score(j)`), prefetching a few keys ahead.
    fn scores(&self, idx: &[u32], score: impl Fn(u32) -> f32) -> Vec<f32> {
        const AHEAD: usize = 8;
        idx.iter()
            .take(AHEAD)
            .for_each(|&j| self.prefetch(j as usize));
        idx.iter()
            .enumerate()
            .map(|(i, &j)| {
                if let Some(&next) = idx.get(i + AHEAD) {
                    self.prefetch(next as usize);
                }
                score(j)
            })
            .collect()
    }
}

/// Prefetches the cache lines of `data` (a no-op off x86_64).
#[inline]
#[allow(unused_unsafe)]
fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for line in data.chunks(16) {
            // SAFETY: a prefetch is only a hint; the pointer is in bounds of `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// What one row needs besides the store: its query, causal limit, bias row and stream.
struct Row<'a> {
    q: &'a [f32],
    raw: &'a [f32],
    limit: usize,
    bias: Option<&'a [f32]>,
    stream: u64,
}

/// Per-row result of the estimator.
#[derive(Debug, Clone, Default)]
struct RowOut {
    scored: u64,
    candidates: u64,
    tail: Vec<u32>,
    rel_err: f64,
    cand_list: Vec<u32>,
}

struct Visible<'a> {
    limit: usize,
    bias: Option<&'a [f32]>,
}

impl Visible<'_> {
    #[inline]
    fn at(&self, j: usize) -> bool {
        j < self.limit && self.bias.is_none_or(|b| b[j] > f32::NEG_INFINITY)
    }
    #[inline]
    fn bias(&self, j: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[j])
    }
    fn count(&self) -> usize {
        match self.bias {
            None => self.limit,
            Some(b) => b[..self.limit]
                .iter()
                .filter(|x| **x > f32::NEG_INFINITY)
                .count(),
        }
    }
}

/// A bitset over key positions.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    #[inline]
    fn get(&self, j: usize) -> bool {
        (self.0[j >> 6] >> (j & 63)) & 1 == 1
    }
    /// Sets bit `j`; returns whether it was clear.
    #[inline]
    fn set(&mut self, j: usize) -> bool {
        let was = self.get(j);
        self.0[j >> 6] |= 1 << (j & 63);
        !was
    }
}

/// Uniform draws from `R`: rejection from `0..limit` while `R` is at least half of it, else from an
/// explicit list of `R`. Both are deterministic functions of the row's stream and visible keys.
struct TailSampler {
    rng: ChaCha8Rng,
    list: Option<Vec<u32>>,
}

impl TailSampler {
    fn draw(&mut self, vis: &Visible, cand: &Bits, remainder: usize) -> u32 {
        loop {
            if let Some(list) = &self.list {
                let u: f64 = self.rng.random();
                return list[((u * list.len() as f64) as usize).min(list.len() - 1)];
            }
            for _ in 0..64 {
                let u: f64 = self.rng.random();
                let j = ((u * vis.limit as f64) as usize).min(vis.limit - 1);
                if vis.at(j) && !cand.get(j) {
                    return j as u32;
                }
            }
            self.list = Some(remainder_list(vis, cand, remainder));
        }
    }
}

fn remainder_list(vis: &Visible, cand: &Bits, remainder: usize) -> Vec<u32> {
    let mut list = Vec::with_capacity(remainder);
    list.extend(
        (0..vis.limit)
            .filter(|&j| vis.at(j) && !cand.get(j))
            .map(|j| j as u32),
    );
    list
}

/// Self-normalised estimate from candidate and tail scores; returns the relative-error bound.
#[allow(clippy::too_many_arguments)]
fn combine(
    store: &Store,
    cand: &[u32],
    cand_scores: &[f32],
    tail: &[u32],
    tail_scores: &[f32],
    remainder: usize,
    z: f64,
    out: &mut [f32],
) -> f64 {
    let c = cand_scores
        .iter()
        .chain(tail_scores)
        .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    if c == f32::NEG_INFINITY {
        out.fill(0.0);
        return 0.0;
    }
    let w = if tail.is_empty() {
        0.0
    } else {
        remainder as f64 / tail.len() as f64
    };
    let vdim = store.vdim;
    let mut num = vec![0.0f64; vdim];
    let mut den = 0.0f64;
    let mut add = |j: u32, s: f32, weight: f64| {
        let a = ((s - c) as f64).exp() * weight;
        den += a;
        for (n, x) in num.iter_mut().zip(store.value(j as usize)) {
            *n += a * *x as f64;
        }
    };
    cand.iter()
        .zip(cand_scores)
        .for_each(|(&j, &s)| add(j, s, 1.0));
    tail.iter()
        .zip(tail_scores)
        .for_each(|(&j, &s)| add(j, s, w));
    num.iter_mut().for_each(|x| *x /= den);
    out.iter_mut().zip(&num).for_each(|(o, x)| *o = *x as f32);
    let n = tail.len();
    if n >= remainder {
        return 0.0;
    }
    if n < 2 {
        return f64::NAN;
    }
    // Linearised per-draw terms g_j = |R| a_j (v_j - O) / D; their sample covariance trace
    // (sum_j |g_j|^2 - n |mean g|^2) / (n - 1), in one pass.
    let mut sum = vec![0.0f64; vdim];
    let mut squares = 0.0f64;
    for (&j, &s) in tail.iter().zip(tail_scores) {
        let a = ((s - c) as f64).exp() * remainder as f64 / den;
        for ((acc, x), o) in sum.iter_mut().zip(store.value(j as usize)).zip(&num) {
            let g = a * (*x as f64 - o);
            *acc += g;
            squares += g * g;
        }
    }
    let mut trace = (squares - sum.iter().map(|x| x * x).sum::<f64>() / n as f64).max(0.0);
    trace /= (n - 1) as f64;
    let norm = num.iter().map(|x| x * x).sum::<f64>().sqrt();
    let half = z * (trace / n as f64).sqrt();
    if half == 0.0 {
        0.0
    } else {
        half / norm
    }
}

/// The estimator for one row; writes the output and returns its stats (and design if asked).
fn attend_row(
    store: &Store,
    hasher: &SimHash,
    cfg: &LshConfig,
    seed: u64,
    row: &Row,
    out: &mut [f32],
    keep_design: bool,
) -> RowOut {
    // The row's design (window, tail range, when to list the remainder) reads only its visible keys:
    // under a mask, positions after its last visible key do not exist for it. So a causal mask given as
    // a bias gives the same design as `causal`, and a row does not change with the keys that follow it.
    let limit = match row.bias {
        None => row.limit,
        Some(b) => b[..row.limit]
            .iter()
            .rposition(|x| *x > f32::NEG_INFINITY)
            .map_or(0, |p| p + 1),
    };
    let vis = Visible {
        limit,
        bias: row.bias,
    };
    let mut seen = Bits::new(limit);
    let mut cand: Vec<u32> = Vec::new();
    let add = |j: usize, seen: &mut Bits, cand: &mut Vec<u32>| {
        if vis.at(j) && seen.set(j) {
            cand.push(j as u32);
        }
    };
    (0..cfg.sinks.min(limit)).for_each(|j| add(j, &mut seen, &mut cand));
    (limit.saturating_sub(cfg.window)..limit).for_each(|j| add(j, &mut seen, &mut cand));
    let nb = 1usize << cfg.bits;
    let mut codes = vec![0u32; cfg.tables];
    hasher.codes(row.raw, &mut codes);
    for (t, &code) in codes.iter().enumerate() {
        for &j in &store.buckets[t * nb + code as usize] {
            if j as usize >= limit {
                break;
            }
            add(j as usize, &mut seen, &mut cand);
        }
    }
    let score = |j: u32| dot(row.q, store.key(j as usize)) + vis.bias(j as usize);
    let cand_scores = store.scores(&cand, score);
    let remainder = vis.count() - cand.len();
    let mut sampler = TailSampler {
        rng: {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(row.stream);
            r
        },
        list: None,
    };
    if remainder * 2 < limit {
        sampler.list = Some(remainder_list(&vis, &seen, remainder));
    }
    let first = match cfg.epsilon {
        None => cfg.budget,
        Some(_) => cfg.budget.max(2),
    }
    .min(remainder);
    let mut tail: Vec<u32> = Vec::new();
    let mut tail_scores: Vec<f32> = Vec::new();
    let mut grow = |target: usize, tail: &mut Vec<u32>, tail_scores: &mut Vec<f32>| {
        if target >= remainder {
            *tail = remainder_list(&vis, &seen, remainder);
            *tail_scores = store.scores(tail, score);
        } else {
            let start = tail.len();
            while tail.len() < target {
                tail.push(sampler.draw(&vis, &seen, remainder));
            }
            tail_scores.extend(store.scores(&tail[start..], score));
        }
    };
    grow(first, &mut tail, &mut tail_scores);
    let z = cfg.z();
    let mut rel = combine(
        store,
        &cand,
        &cand_scores,
        &tail,
        &tail_scores,
        remainder,
        z,
        out,
    );
    if let Some(eps) = cfg.epsilon {
        for _ in 0..4 {
            if rel <= eps || tail.len() >= remainder {
                break;
            }
            let n = tail.len() as f64;
            let need = if rel.is_finite() {
                (n * (rel / eps).powi(2)).ceil()
            } else {
                f64::INFINITY
            };
            let target = if need >= remainder as f64 {
                remainder
            } else {
                (need as usize).max(tail.len() + 1)
            };
            grow(target, &mut tail, &mut tail_scores);
            rel = combine(
                store,
                &cand,
                &cand_scores,
                &tail,
                &tail_scores,
                remainder,
                z,
                out,
            );
        }
    }
    RowOut {
        scored: (cand.len() + tail.len()) as u64,
        candidates: cand.len() as u64,
        rel_err: rel,
        tail: if keep_design { tail } else { Vec::new() },
        cand_list: if keep_design { cand } else { Vec::new() },
    }
}

/// Exact softmax attention of one row over its visible keys (zeros if none is visible).
fn exact_row(store: &Store, row: &Row, out: &mut [f32]) {
    let vis = Visible {
        limit: row.limit,
        bias: row.bias,
    };
    let scores: Vec<f32> = (0..row.limit)
        .map(|j| {
            if vis.at(j) {
                dot(row.q, store.key(j)) + vis.bias(j)
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let c = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    out.fill(0.0);
    if c == f32::NEG_INFINITY {
        return;
    }
    let mut num = vec![0.0f64; store.vdim];
    let mut den = 0.0f64;
    for (j, &s) in scores.iter().enumerate() {
        if s > f32::NEG_INFINITY {
            let a = ((s - c) as f64).exp();
            den += a;
            for (n, x) in num.iter_mut().zip(store.value(j)) {
                *n += a * *x as f64;
            }
        }
    }
    out.iter_mut()
        .zip(&num)
        .for_each(|(o, x)| *o = (*x / den) as f32);
}

/// Result of a batched attend: output `(B, H, L, Ev)` and per-row stats `(B, H, L)`.
#[derive(Debug, Clone, Default)]
pub struct AttendOutput {
    /// Output, row-major `(B, H, L, Ev)`.
    pub out: Vec<f32>,
    /// Keys scored per row (candidates + tail draws).
    pub scored: Vec<u64>,
    /// Candidates per row (sinks, window and hash collisions).
    pub candidates: Vec<u64>,
    /// Hashes computed per row: the query's `tables` codes plus the key hashes amortised over rows.
    pub hashes: Vec<f64>,
    /// Estimated relative error of the row's output (0 when exact, NaN with fewer than 2 draws).
    pub rel_err: Vec<f64>,
    /// Candidate key indices of every row (only when the design is requested).
    pub candidate_lists: Vec<Vec<u32>>,
    /// Tail draws of every row (only when the design is requested).
    pub tails: Vec<Vec<u32>>,
}

/// Shape of a batched attend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch size B.
    pub batch: usize,
    /// Heads H.
    pub heads: usize,
    /// Query rows L.
    pub rows: usize,
    /// Keys S.
    pub keys: usize,
    /// Query/key width E.
    pub dim: usize,
    /// Value width Ev.
    pub vdim: usize,
}

/// Rows of all (b, h, t) in parallel; `offset` is row 0's absolute position, `causal` limits row t
/// to keys `< t + 1 + offset`.
#[allow(clippy::too_many_arguments)]
fn attend_all(
    stores: &[Store],
    hashers: &[SimHash],
    cfg: &LshConfig,
    seed: u64,
    d: Dims,
    q: &[f32],
    bias: Option<Bias>,
    causal: bool,
    offset: usize,
    scale: f32,
    exact: bool,
    keep_design: bool,
    key_hashes_per_row: f64,
) -> AttendOutput {
    let n_rows = d.batch * d.heads * d.rows;
    let mut out = vec![0.0f32; n_rows * d.vdim];
    let results: Vec<RowOut> = out
        .par_chunks_mut(d.vdim.max(1))
        .take(n_rows)
        .enumerate()
        .map(|(r, dst)| {
            let g = r / d.rows;
            let t = r % d.rows;
            let (b, h) = (g / d.heads, g % d.heads);
            let raw = &q[r * d.dim..(r + 1) * d.dim];
            let qs: Vec<f32> = raw.iter().map(|x| x * scale).collect();
            let limit = if causal {
                (t + 1 + offset).min(d.keys)
            } else {
                d.keys
            };
            let row = Row {
                q: &qs,
                raw,
                limit,
                bias: bias.map(|bs| bs.row(b, h, t)),
                stream: ((g as u64) << 32) | (t + offset) as u64,
            };
            if exact {
                exact_row(&stores[g], &row, dst);
                RowOut {
                    scored: limit as u64,
                    ..RowOut::default()
                }
            } else {
                attend_row(&stores[g], &hashers[h], cfg, seed, &row, dst, keep_design)
            }
        })
        .collect();
    let hashes = if exact {
        0.0
    } else {
        cfg.tables as f64 + key_hashes_per_row
    };
    let mut res = AttendOutput {
        out,
        hashes: vec![hashes; n_rows],
        ..AttendOutput::default()
    };
    for r in results {
        res.scored.push(r.scored);
        res.candidates.push(r.candidates);
        res.rel_err.push(r.rel_err);
        if keep_design {
            res.candidate_lists.push(r.cand_list);
            res.tails.push(r.tail);
        }
    }
    res
}

fn check_len(name: &str, got: usize, want: usize, shape: &str) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "{name} has {got} values, expected {shape} = {want}"
        )));
    }
    Ok(())
}

fn check_positions(groups: usize, positions: usize) -> Result<()> {
    if positions >= (1usize << 32) || groups >= (1usize << 30) {
        return Err(Error::InvalidArgument(format!(
            "at most 2^32 positions and 2^30 (batch x head) groups are supported, got {positions} and {groups}"
        )));
    }
    Ok(())
}

fn hashers_for(d: Dims, cfg: &LshConfig, seed: u64) -> Result<Vec<SimHash>> {
    (0..d.heads)
        .map(|h| SimHash::new(d.dim, cfg.bits, cfg.tables, seed, h as u64))
        .collect()
}

/// Sampled attention of `q (B, H, L, E)` over `k (B, H, S, E)`, `v (B, H, S, Ev)`, building the
/// SimHash index per call. Causal rows use SDPA's top-left alignment (row t sees keys `<= t`).
#[allow(clippy::too_many_arguments)]
pub fn lsh_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: Dims,
    bias: Option<Bias>,
    causal: bool,
    scale: f32,
    cfg: &LshConfig,
    seed: u64,
    keep_design: bool,
) -> Result<AttendOutput> {
    cfg.validate()?;
    if d.dim == 0 || d.vdim == 0 {
        return Err(Error::Shape(format!(
            "head dims must be >= 1, got E = {}, Ev = {}",
            d.dim, d.vdim
        )));
    }
    let groups = d.batch * d.heads;
    check_len("q", q.len(), groups * d.rows * d.dim, "B*H*L*E")?;
    check_len("k", k.len(), groups * d.keys * d.dim, "B*H*S*E")?;
    check_len("v", v.len(), groups * d.keys * d.vdim, "B*H*S*Ev")?;
    check_positions(groups, d.rows.max(d.keys))?;
    if let Some(bs) = &bias {
        bs.check([d.batch, d.heads, d.rows, d.keys])?;
    }
    if !scale.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "scale must be finite, got {scale}"
        )));
    }
    let hashers = hashers_for(d, cfg, seed)?;
    let indices: Vec<HeadIndex> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut idx = HeadIndex::new(cfg);
            let hk = &k[g * d.keys * d.dim..(g + 1) * d.keys * d.dim];
            let nb = 1usize << cfg.bits;
            let mut codes = vec![0u32; cfg.tables];
            for (i, key) in hk.chunks_exact(d.dim).enumerate() {
                hashers[g % d.heads].codes(key, &mut codes);
                for (t, &c) in codes.iter().enumerate() {
                    idx.buckets[t * nb + c as usize].push(i as u32);
                }
            }
            idx
        })
        .collect();
    let stores: Vec<Store> = indices
        .iter()
        .enumerate()
        .map(|(g, idx)| Store {
            keys: &k[g * d.keys * d.dim..(g + 1) * d.keys * d.dim],
            values: &v[g * d.keys * d.vdim..(g + 1) * d.keys * d.vdim],
            buckets: &idx.buckets,
            dim: d.dim,
            vdim: d.vdim,
        })
        .collect();
    let per_row = if d.rows == 0 {
        0.0
    } else {
        (cfg.tables * d.keys) as f64 / d.rows as f64
    };
    Ok(attend_all(
        &stores,
        &hashers,
        cfg,
        seed,
        d,
        q,
        bias,
        causal,
        0,
        scale,
        false,
        keep_design,
        per_row,
    ))
}

/// A key/value cache of `B x H` heads whose SimHash index grows with every append.
#[derive(Debug, Clone)]
pub struct SampledKvCache {
    batch: usize,
    heads: usize,
    dim: usize,
    vdim: usize,
    cfg: LshConfig,
    seed: u64,
    hashers: Vec<SimHash>,
    groups: Vec<HeadIndex>,
    len: usize,
    unbilled_key_hashes: usize,
}

impl SampledKvCache {
    /// An empty cache for `batch x heads` heads of key width `dim` and value width `vdim`.
    pub fn new(
        batch: usize,
        heads: usize,
        dim: usize,
        vdim: usize,
        cfg: LshConfig,
        seed: u64,
    ) -> Result<Self> {
        cfg.validate()?;
        if batch == 0 || heads == 0 || dim == 0 || vdim == 0 {
            return Err(Error::Shape(format!(
                "batch, heads, dim and value dim must be >= 1, got {batch}, {heads}, {dim}, {vdim}"
            )));
        }
        check_positions(batch * heads, 0)?;
        let d = Dims {
            batch,
            heads,
            rows: 0,
            keys: 0,
            dim,
            vdim,
        };
        Ok(Self {
            batch,
            heads,
            dim,
            vdim,
            cfg,
            seed,
            hashers: hashers_for(d, &cfg, seed)?,
            groups: vec![HeadIndex::new(&cfg); batch * heads],
            len: 0,
            unbilled_key_hashes: 0,
        })
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch size of the cache.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The hyperplanes of every head, row-major `(H, tables, bits, E)`.
    pub fn planes(&self) -> Vec<f32> {
        self.hashers
            .iter()
            .flat_map(|h| h.planes().iter().copied())
            .collect()
    }

    /// Drops every cached position (the hyperplanes are kept).
    pub fn reset(&mut self) {
        self.groups = vec![HeadIndex::new(&self.cfg); self.batch * self.heads];
        self.len = 0;
        self.unbilled_key_hashes = 0;
    }

    /// Appends `new` positions: `k (B, H, new, E)` and `v (B, H, new, Ev)`, hashing heads in parallel.
    pub fn append(&mut self, k: &[f32], v: &[f32], new: usize) -> Result<()> {
        let groups = self.batch * self.heads;
        check_len("k", k.len(), groups * new * self.dim, "B*H*S_new*E")?;
        check_len("v", v.len(), groups * new * self.vdim, "B*H*S_new*Ev")?;
        check_positions(groups, self.len + new)?;
        if let Some(bad) = k.iter().chain(v).find(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "keys and values must be finite, found {bad}"
            )));
        }
        let (dim, vdim, heads) = (self.dim, self.vdim, self.heads);
        let hashers = &self.hashers;
        self.groups.par_iter_mut().enumerate().for_each(|(g, idx)| {
            idx.extend(
                &hashers[g % heads],
                &k[g * new * dim..(g + 1) * new * dim],
                &v[g * new * vdim..(g + 1) * new * vdim],
                dim,
            );
        });
        self.len += new;
        self.unbilled_key_hashes += new * self.cfg.tables;
        Ok(())
    }

    /// Attends `q (B, H, Lq, E)` for the newest `Lq` positions (causal among themselves) over the
    /// cache; `exact` computes exact softmax attention instead. Key hashes appended since the last
    /// sampled attend are billed to this call's rows.
    pub fn attend(
        &mut self,
        q: &[f32],
        rows: usize,
        bias: Option<Bias>,
        scale: f32,
        exact: bool,
        keep_design: bool,
    ) -> Result<AttendOutput> {
        let groups = self.batch * self.heads;
        check_len("q", q.len(), groups * rows * self.dim, "B*H*Lq*E")?;
        if rows > self.len {
            return Err(Error::Shape(format!(
                "q has {rows} rows but the cache holds only {} positions; the rows are the newest positions",
                self.len
            )));
        }
        if !scale.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "scale must be finite, got {scale}"
            )));
        }
        let d = Dims {
            batch: self.batch,
            heads: self.heads,
            rows,
            keys: self.len,
            dim: self.dim,
            vdim: self.vdim,
        };
        if let Some(bs) = &bias {
            bs.check([d.batch, d.heads, d.rows, d.keys])?;
        }
        let per_row = if exact || rows == 0 {
            0.0
        } else {
            self.unbilled_key_hashes as f64 / rows as f64
        };
        let stores: Vec<Store> = self
            .groups
            .iter()
            .map(|g| g.view(self.dim, self.vdim))
            .collect();
        let res = attend_all(
            &stores,
            &self.hashers,
            &self.cfg,
            self.seed,
            d,
            q,
            bias,
            true,
            self.len - rows,
            scale,
            exact,
            keep_design,
            per_row,
        );
        if !exact {
            self.unbilled_key_hashes = 0;
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    fn cfg(budget: usize) -> LshConfig {
        LshConfig {
            bits: 3,
            tables: 2,
            sinks: 1,
            window: 2,
            budget,
            epsilon: None,
            delta: 0.05,
        }
    }

    fn dims(batch: usize, heads: usize, rows: usize, keys: usize) -> Dims {
        Dims {
            batch,
            heads,
            rows,
            keys,
            dim: 4,
            vdim: 3,
        }
    }

    /// Exact softmax attention in f64 for row (g, t) with limit and optional bias row.
    #[allow(clippy::too_many_arguments)]
    fn brute(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        d: Dims,
        g: usize,
        t: usize,
        limit: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f64> {
        let qr = &q[(g * d.rows + t) * d.dim..(g * d.rows + t + 1) * d.dim];
        let scale = 1.0 / (d.dim as f64).sqrt();
        let scores: Vec<f64> = (0..limit)
            .map(|j| {
                let kr = &k[(g * d.keys + j) * d.dim..(g * d.keys + j + 1) * d.dim];
                let s: f64 = qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum();
                s * scale + bias.map_or(0.0, |b| b[j] as f64)
            })
            .collect();
        let c = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut out = vec![0.0; d.vdim];
        if c == f64::NEG_INFINITY {
            return out;
        }
        let mut den = 0.0;
        for (j, s) in scores.iter().enumerate() {
            let a = (s - c).exp();
            den += a;
            for (o, x) in out
                .iter_mut()
                .zip(&v[(g * d.keys + j) * d.vdim..(g * d.keys + j + 1) * d.vdim])
            {
                *o += a * *x as f64;
            }
        }
        out.iter_mut().for_each(|o| *o /= den);
        out
    }

    fn scale(d: Dims) -> f32 {
        1.0 / (d.dim as f32).sqrt()
    }

    #[test]
    fn candidates_equal_brute_force_collisions() {
        let d = dims(2, 2, 9, 37);
        let (q, k, v) = (
            randn(2 * 2 * 9 * 4, 1),
            randn(2 * 2 * 37 * 4, 2),
            randn(2 * 2 * 37 * 3, 3),
        );
        let c = cfg(5);
        let bias: Vec<f32> = (0..37)
            .map(|j| {
                if j % 5 == 3 {
                    f32::NEG_INFINITY
                } else {
                    0.1 * j as f32
                }
            })
            .collect();
        for (causal, with_bias) in [(false, false), (true, false), (true, true)] {
            let b = with_bias.then_some(Bias {
                data: &bias,
                dims: [1, 1, 1, 37],
            });
            let res = lsh_attention(&q, &k, &v, d, b, causal, scale(d), &c, 11, true).unwrap();
            for r in 0..2 * 2 * 9 {
                let (g, t) = (r / 9, r % 9);
                let hasher = SimHash::new(4, c.bits, c.tables, 11, (g % 2) as u64).unwrap();
                let mut qc = vec![0u32; c.tables];
                hasher.codes(&q[r * 4..(r + 1) * 4], &mut qc);
                // A row's limit is one past its last visible key (a mask ends the row where it ends).
                let causal_limit = if causal { t + 1 } else { 37 };
                let limit = if with_bias {
                    (0..causal_limit)
                        .rev()
                        .find(|&j| bias[j] > f32::NEG_INFINITY)
                        .map_or(0, |p| p + 1)
                } else {
                    causal_limit
                };
                let mut want: Vec<u32> = (0..limit)
                    .filter(|&j| {
                        let mut kc = vec![0u32; c.tables];
                        hasher.codes(&k[(g * 37 + j) * 4..(g * 37 + j + 1) * 4], &mut kc);
                        let visible = !with_bias || bias[j] > f32::NEG_INFINITY;
                        let fixed = j < c.sinks || j + c.window >= limit;
                        visible && (fixed || kc.iter().zip(&qc).any(|(a, b)| a == b))
                    })
                    .map(|j| j as u32)
                    .collect();
                let mut got = res.candidate_lists[r].clone();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "row {r} causal {causal} bias {with_bias}");
                // Causal rows never touch future (or masked) keys, in candidates or draws.
                for &j in res.tails[r].iter().chain(&res.candidate_lists[r]) {
                    assert!((j as usize) < limit);
                    assert!(!with_bias || bias[j as usize] > f32::NEG_INFINITY);
                    assert!(!res.candidate_lists[r].contains(&j) || !res.tails[r].contains(&j));
                }
            }
        }
    }

    #[test]
    fn full_tail_budget_is_exact_attention() {
        let d = dims(1, 3, 6, 29);
        let (q, k, v) = (
            randn(3 * 6 * 4, 4),
            randn(3 * 29 * 4, 5),
            randn(3 * 29 * 3, 6),
        );
        let bias: Vec<f32> = (0..6 * 29)
            .map(|i| {
                if i % 7 == 0 {
                    f32::NEG_INFINITY
                } else {
                    (i % 3) as f32 * 0.5
                }
            })
            .collect();
        for causal in [false, true] {
            let b = Bias {
                data: &bias,
                dims: [1, 1, 6, 29],
            };
            let res = lsh_attention(&q, &k, &v, d, Some(b), causal, scale(d), &cfg(29), 0, false)
                .unwrap();
            for r in 0..3 * 6 {
                let (g, t) = (r / 6, r % 6);
                let limit = if causal { t + 1 } else { 29 };
                let want = brute(
                    &q,
                    &k,
                    &v,
                    d,
                    g,
                    t,
                    limit,
                    Some(&bias[t * 29..(t + 1) * 29]),
                );
                for (a, w) in res.out[r * 3..(r + 1) * 3].iter().zip(&want) {
                    assert!((*a as f64 - w).abs() < 1e-5, "row {r}: {a} vs {w}");
                }
                assert_eq!(res.rel_err[r], 0.0);
            }
        }
    }

    #[test]
    fn numerator_and_denominator_are_unbiased() {
        // One row, 200 keys, a few large scores outside the window: many seeds, a budget of 8.
        let d = Dims {
            batch: 1,
            heads: 1,
            rows: 1,
            keys: 200,
            dim: 4,
            vdim: 1,
        };
        let q = vec![1.0f32, 0.5, -0.5, 0.25];
        let mut k = randn(200 * 4, 9);
        k[40 * 4..41 * 4].copy_from_slice(&[4.0, 2.0, -2.0, 1.0]);
        let v: Vec<f32> = (0..200).map(|j| (j as f32 * 0.1).sin()).collect();
        let c = LshConfig {
            bits: 6,
            tables: 1,
            sinks: 0,
            window: 0,
            budget: 8,
            epsilon: None,
            delta: 0.05,
        };
        let s = |j: usize| dot(&q, &k[j * 4..(j + 1) * 4]) as f64 * 0.5;
        let (true_num, true_den) = (0..200).fold((0.0, 0.0), |(n, dd), j| {
            (n + s(j).exp() * v[j] as f64, dd + s(j).exp())
        });
        let trials = 3000;
        let (mut num, mut den) = (Vec::new(), Vec::new());
        for seed in 0..trials {
            let res = lsh_attention(&q, &k, &v, d, None, false, 0.5, &c, seed, true).unwrap();
            let (cand, tail) = (&res.candidate_lists[0], &res.tails[0]);
            let w = (200 - cand.len()) as f64 / tail.len().max(1) as f64;
            let mut n = cand
                .iter()
                .map(|&j| s(j as usize).exp() * v[j as usize] as f64)
                .sum::<f64>();
            let mut dd = cand.iter().map(|&j| s(j as usize).exp()).sum::<f64>();
            n += w * tail
                .iter()
                .map(|&j| s(j as usize).exp() * v[j as usize] as f64)
                .sum::<f64>();
            dd += w * tail.iter().map(|&j| s(j as usize).exp()).sum::<f64>();
            num.push(n);
            den.push(dd);
        }
        for (xs, truth) in [(&num, true_num), (&den, true_den)] {
            let m = xs.iter().sum::<f64>() / trials as f64;
            let sd = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (trials - 1) as f64).sqrt();
            let se = sd / (trials as f64).sqrt();
            assert!(sd > 0.0, "the estimate must vary across seeds");
            assert!(
                (m - truth).abs() < 4.0 * se,
                "mean {m} vs truth {truth} (se {se})"
            );
        }
    }

    #[test]
    fn edge_cases_ties_one_key_empty_remainder_all_masked() {
        // Ties: identical keys, any design gives the mean of the values.
        let d = dims(1, 1, 1, 50);
        let q = randn(4, 1);
        let k: Vec<f32> = (0..50).flat_map(|_| [0.3f32, -0.2, 0.1, 0.9]).collect();
        let v = randn(50 * 3, 2);
        let res = lsh_attention(&q, &k, &v, d, None, false, 0.5, &cfg(3), 0, false).unwrap();
        let mean: Vec<f64> = (0..3)
            .map(|e| (0..50).map(|j| v[j * 3 + e] as f64).sum::<f64>() / 50.0)
            .collect();
        let truth = brute(&q, &k, &v, d, 0, 0, 50, None);
        for e in 0..3 {
            assert!((truth[e] - mean[e]).abs() < 1e-6);
        }
        assert!(res.out.iter().all(|x| x.is_finite()));
        // One key: the output is its value.
        let d1 = dims(1, 1, 1, 1);
        let res =
            lsh_attention(&q, &k[..4], &v[..3], d1, None, true, 0.5, &cfg(0), 0, false).unwrap();
        assert_eq!(res.out, v[..3].to_vec());
        // Empty remainder (window covers every key): exact with zero draws.
        let wide = LshConfig {
            window: 50,
            ..cfg(4)
        };
        let res = lsh_attention(&q, &k, &v, d, None, false, 0.5, &wide, 0, true).unwrap();
        assert!(res.tails[0].is_empty() && res.rel_err[0] == 0.0);
        // All keys masked: zeros, nothing scored.
        let bias = vec![f32::NEG_INFINITY; 50];
        let b = Bias {
            data: &bias,
            dims: [1, 1, 1, 50],
        };
        let res = lsh_attention(&q, &k, &v, d, Some(b), false, 0.5, &cfg(4), 0, false).unwrap();
        assert!(res.out.iter().all(|&x| x == 0.0) && res.scored[0] == 0);
    }

    #[test]
    fn cache_rows_match_the_functional_call_and_exact_mode() {
        let (batch, heads, keys) = (2, 2, 40);
        let d = dims(batch, heads, keys, keys);
        let (q, k, v) = (
            randn(4 * keys * 4, 7),
            randn(4 * keys * 4, 8),
            randn(4 * keys * 3, 9),
        );
        let c = cfg(6);
        let full = lsh_attention(&q, &k, &v, d, None, true, scale(d), &c, 5, false).unwrap();
        let mut cache = SampledKvCache::new(batch, heads, 4, 3, c, 5).unwrap();
        // Append in two chunks; attend for the newest 3 positions (rows keys-3..keys).
        let chunk = |x: &[f32], w: usize, a: usize, b: usize| -> Vec<f32> {
            (0..4)
                .flat_map(|g| x[(g * keys + a) * w..(g * keys + b) * w].to_vec())
                .collect()
        };
        cache
            .append(&chunk(&k, 4, 0, 25), &chunk(&v, 3, 0, 25), 25)
            .unwrap();
        cache
            .append(&chunk(&k, 4, 25, keys), &chunk(&v, 3, 25, keys), keys - 25)
            .unwrap();
        let qn = chunk(&q, 4, keys - 3, keys);
        let got = cache.attend(&qn, 3, None, scale(d), false, false).unwrap();
        let exact = cache.attend(&qn, 3, None, scale(d), true, false).unwrap();
        for g in 0..4 {
            for t in 0..3 {
                let r_full = g * keys + keys - 3 + t;
                let r = g * 3 + t;
                assert_eq!(
                    &got.out[r * 3..(r + 1) * 3],
                    &full.out[r_full * 3..(r_full + 1) * 3]
                );
                let want = brute(&q, &k, &v, d, g, keys - 3 + t, keys - 2 + t, None);
                for (a, w) in exact.out[r * 3..(r + 1) * 3].iter().zip(&want) {
                    assert!((*a as f64 - w).abs() < 1e-5);
                }
            }
        }
        assert!(cache.attend(&qn, 41, None, 1.0, false, false).is_err());
        assert!(cache.append(&k[..5], &v[..3], 1).is_err());
    }

    #[test]
    fn epsilon_mode_meets_its_bound_or_goes_exact() {
        let d = dims(1, 2, 4, 300);
        let (q, k, v) = (
            randn(2 * 4 * 4, 3),
            randn(2 * 300 * 4, 4),
            randn(2 * 300 * 3, 5),
        );
        let c = LshConfig {
            epsilon: Some(0.05),
            budget: 4,
            ..cfg(4)
        };
        let res = lsh_attention(&q, &k, &v, d, None, false, scale(d), &c, 1, false).unwrap();
        assert!(res.rel_err.iter().all(|&e| e <= 0.05), "{:?}", res.rel_err);
        assert!(res.scored.iter().any(|&s| s > 4 + 3));
        assert!(lsh_attention(
            &q,
            &k,
            &v,
            d,
            None,
            false,
            1.0,
            &LshConfig { delta: 1.0, ..c },
            1,
            false
        )
        .is_err());
    }
}
