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
//! parallel; row `r` uses its own ChaCha stream (by default stream `r`, or a caller-given
//! stream key such as the row's head and absolute position, see [`keyed_uniforms`]), so results
//! depend neither on threading nor, with keys, on how many other rows are drawn.
//!
//! Each row consumes its stream in one fixed way: the first uniform is the systematic offset,
//! and uniform `1 + j` is shot `j`'s uniform for multinomial and stratified draws.

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
    let offset: f64 = rng.random(); // always uniform 0 of the stream, whatever the method
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
    let counts = vec![shots as i64; rows];
    sample_rows_ordered(
        weights, rows, n, &counts, shots, None, 1, method, seed, None,
    )
}

/// The first `count` uniforms in [0, 1) of each row's stream: row `r` reads ChaCha8 stream
/// `streams[r]` under `seed`, row-major `streams.len() * count`.
///
/// These are exactly the uniforms [`sample_rows_ordered`] consumes for a row given the same seed
/// and stream key (uniform 0: the systematic offset; uniform `1 + j`: shot `j`), so a sampler on
/// another device can reproduce its draws.
pub fn keyed_uniforms(seed: u64, streams: &[u64], count: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; streams.len() * count];
    if count == 0 {
        return out;
    }
    out.par_chunks_mut(count)
        .zip(streams.par_iter())
        .for_each(|(dst, &stream)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            dst.iter_mut().for_each(|u| *u = rng.random());
        });
    out
}

/// Checks that every group of `order` (row-major `groups * n`) is a permutation of `0..n`.
fn validate_order(order: &[i64], groups: usize, n: usize) -> Result<()> {
    if order.len() != groups * n {
        return Err(Error::Shape(format!(
            "order has {} elements, expected groups * n = {groups} * {n}",
            order.len()
        )));
    }
    let mut seen = vec![false; n];
    for (g, perm) in order.chunks(n).enumerate() {
        seen.iter_mut().for_each(|s| *s = false);
        for &j in perm {
            if j < 0 || j as usize >= n || seen[j as usize] {
                return Err(Error::InvalidArgument(format!(
                    "order row {g} is not a permutation of 0..{n} (bad or repeated entry {j})"
                )));
            }
            seen[j as usize] = true;
        }
    }
    Ok(())
}

/// Draws up to `max_shots` indices per row, row `r` taking `shots[r]` of them, along a key order.
///
/// `order` (optional, row-major `groups * n`, each a permutation of `0..n`) gives the order in
/// which the keys are laid out on the cumulative distribution; rows `r` with
/// `r / rows_per_order == g` use group `g`'s order (one order per attention head, say). The
/// returned indices are in the original numbering. Slots `shots[r]..max_shots` and rows of total
/// weight 0 hold `-1`. Systematic sampling along an order that groups similar values
/// stratifies over those values; every draw still has marginal law `p`. `streams` (optional,
/// one key per row) names each row's random stream; without it row `r` uses stream `r`.
#[allow(clippy::too_many_arguments)]
pub fn sample_rows_ordered<W: Weight>(
    weights: &[W],
    rows: usize,
    n: usize,
    shots: &[i64],
    max_shots: usize,
    order: Option<&[i64]>,
    rows_per_order: usize,
    method: SampleMethod,
    seed: u64,
    streams: Option<&[u64]>,
) -> Result<Vec<i64>> {
    if n == 0 {
        return Err(Error::Shape("cannot sample from rows of length 0".into()));
    }
    validate(weights, rows, n)?;
    if shots.len() != rows {
        return Err(Error::Shape(format!(
            "shots has {} entries, expected one per row ({rows})",
            shots.len()
        )));
    }
    if let Some(bad) = shots.iter().find(|&&s| s < 0 || s as usize > max_shots) {
        return Err(Error::InvalidArgument(format!(
            "shots must lie in 0..={max_shots}, found {bad}"
        )));
    }
    if let Some(keys) = streams {
        if keys.len() != rows {
            return Err(Error::Shape(format!(
                "streams has {} entries, expected one per row ({rows})",
                keys.len()
            )));
        }
    }
    if let Some(order) = order {
        if rows_per_order == 0 || !rows.is_multiple_of(rows_per_order) {
            return Err(Error::InvalidArgument(format!(
                "rows_per_order must be positive and divide rows = {rows}, got {rows_per_order}"
            )));
        }
        validate_order(order, rows / rows_per_order, n)?;
    }
    let mut out = vec![-1i64; rows * max_shots];
    if max_shots == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(max_shots)
        .zip(weights.par_chunks(n))
        .enumerate()
        .for_each(|(r, (dst, row))| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(streams.map_or(r as u64, |keys| keys[r]));
            let take = shots[r] as usize;
            match order {
                None => sample_row(row, &mut dst[..take], method, &mut rng),
                Some(order) => {
                    let perm = &order[(r / rows_per_order) * n..][..n];
                    let permuted: Vec<f64> =
                        perm.iter().map(|&j| row[j as usize].to_f64()).collect();
                    sample_row(&permuted, &mut dst[..take], method, &mut rng);
                    for slot in dst[..take].iter_mut().filter(|s| **s >= 0) {
                        *slot = perm[*slot as usize];
                    }
                }
            }
        });
    Ok(out)
}

/// Splits `total` shots per group of `per_group` rows in proportion to non-negative `scores`.
///
/// Rows with a negative score (fully masked rows) get 0 shots; every other row gets at least
/// `min_shots`, and the rest of the group's budget is shared in proportion to the scores (evenly
/// when they are all 0) by largest remainders, so each group's shots sum to exactly `total`
/// (or to `min_shots` times its live rows if that is larger). Groups run in parallel.
pub fn allocate_shots(
    scores: &[f64],
    per_group: usize,
    total: usize,
    min_shots: usize,
) -> Result<Vec<i64>> {
    if per_group == 0 || !scores.len().is_multiple_of(per_group) {
        return Err(Error::Shape(format!(
            "scores has {} entries, not a multiple of per_group = {per_group}",
            scores.len()
        )));
    }
    if let Some(bad) = scores.iter().find(|s| !s.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "scores must be finite, found {bad}"
        )));
    }
    let mut out = vec![0i64; scores.len()];
    out.par_chunks_mut(per_group)
        .zip(scores.par_chunks(per_group))
        .for_each(|(dst, group)| allocate_group(group, dst, total, min_shots));
    Ok(out)
}

/// Largest-remainder allocation of one group (see [`allocate_shots`]).
fn allocate_group(scores: &[f64], out: &mut [i64], total: usize, min_shots: usize) {
    let live: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] >= 0.0).collect();
    if live.is_empty() {
        return;
    }
    let rest = total.saturating_sub(min_shots * live.len()) as f64;
    let sum: f64 = live.iter().map(|&i| scores[i]).sum();
    let share = |i: usize| {
        if sum > 0.0 {
            rest * scores[i] / sum
        } else {
            rest / live.len() as f64
        }
    };
    let mut given = 0usize;
    let mut remainders: Vec<(f64, usize)> = Vec::with_capacity(live.len());
    for &i in &live {
        let exact = share(i);
        let base = exact.floor();
        out[i] = (min_shots as f64 + base) as i64;
        given += base as usize;
        remainders.push((exact - base, i));
    }
    let left = (rest as usize).saturating_sub(given);
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(left) {
        out[i] += 1;
    }
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
        for method in [
            SampleMethod::Multinomial,
            SampleMethod::Stratified,
            SampleMethod::Systematic,
        ] {
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
        let idx = sample_rows(
            &[0.0f64, 0.0, 1.0, 1.0],
            2,
            2,
            3,
            SampleMethod::Stratified,
            0,
        )
        .unwrap();
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
        assert!(matches!(
            sample_rows(&[1.0f64; 3], 2, 2, 1, SampleMethod::Multinomial, 0),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            sample_rows::<f64>(&[], 1, 0, 1, SampleMethod::Multinomial, 0),
            Err(Error::Shape(_))
        ));
        assert!(SampleMethod::parse("bogus").is_err());
    }
    #[test]
    fn ordered_sampling_keeps_marginals_and_maps_back() {
        let w = [0.1f64, 0.0, 0.3, 0.6];
        let order = [3i64, 1, 0, 2];
        let rows = 4000;
        let weights: Vec<f64> = w.iter().cycle().take(rows * 4).copied().collect();
        let shots = vec![8i64; rows];
        let idx = sample_rows_ordered(
            &weights,
            rows,
            4,
            &shots,
            8,
            Some(&order),
            rows,
            SampleMethod::Systematic,
            5,
            None,
        )
        .unwrap();
        let h = histogram(&idx, 4);
        for (p, q) in w.iter().zip(&h) {
            assert!((p - q).abs() < 0.012, "{h:?} vs {w:?}");
        }
        assert_eq!(h[1], 0.0);
    }

    #[test]
    fn varying_shots_pad_with_minus_one() {
        let w = [1.0f32; 6];
        let idx = sample_rows_ordered(
            &w,
            2,
            3,
            &[1, 3],
            3,
            None,
            1,
            SampleMethod::Stratified,
            0,
            None,
        )
        .unwrap();
        assert!(idx[0] >= 0 && idx[1] == -1 && idx[2] == -1);
        assert!(idx[3..].iter().all(|&i| (0..3).contains(&i)));
        // Systematic with shots = n on a uniform row draws every key once.
        let idx = sample_rows_ordered(
            &w[..3],
            1,
            3,
            &[3],
            3,
            Some(&[2, 0, 1]),
            1,
            SampleMethod::Systematic,
            9,
            None,
        )
        .unwrap();
        let mut sorted = idx.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
    }

    #[test]
    fn ordered_sampling_rejects_bad_input() {
        let w = [1.0f64; 4];
        let bad_perm = sample_rows_ordered(
            &w,
            2,
            2,
            &[1, 1],
            1,
            Some(&[0, 0]),
            2,
            SampleMethod::Systematic,
            0,
            None,
        );
        assert!(matches!(bad_perm, Err(Error::InvalidArgument(_))));
        let too_many = sample_rows_ordered(
            &w,
            2,
            2,
            &[3, 1],
            2,
            None,
            1,
            SampleMethod::Systematic,
            0,
            None,
        );
        assert!(matches!(too_many, Err(Error::InvalidArgument(_))));
        let bad_groups = sample_rows_ordered(
            &w,
            2,
            2,
            &[1, 1],
            1,
            Some(&[0, 1]),
            3,
            SampleMethod::Systematic,
            0,
            None,
        );
        assert!(matches!(bad_groups, Err(Error::InvalidArgument(_))));
        assert!(matches!(
            sample_rows_ordered(
                &w,
                2,
                2,
                &[1],
                1,
                None,
                1,
                SampleMethod::Systematic,
                0,
                None
            ),
            Err(Error::Shape(_))
        ));
    }

    #[test]
    fn stream_keys_make_a_row_independent_of_the_others() {
        // Row with key 7 draws the same whether it is drawn alone or among other rows.
        let w: Vec<f64> = (0..5 * 6).map(|i| ((i * 37) % 11) as f64 + 0.5).collect();
        let keys = [3u64, 9, 7, 1, 4];
        let all = sample_rows_ordered(
            &w,
            5,
            6,
            &[4; 5],
            4,
            None,
            1,
            SampleMethod::Multinomial,
            11,
            Some(&keys),
        )
        .unwrap();
        let alone = sample_rows_ordered(
            &w[12..18],
            1,
            6,
            &[4],
            4,
            None,
            1,
            SampleMethod::Multinomial,
            11,
            Some(&[7]),
        )
        .unwrap();
        assert_eq!(&all[8..12], &alone[..]);
        let bad = sample_rows_ordered(
            &w,
            5,
            6,
            &[4; 5],
            4,
            None,
            1,
            SampleMethod::Multinomial,
            11,
            Some(&keys[..2]),
        );
        assert!(matches!(bad, Err(Error::Shape(_))));
    }

    #[test]
    fn keyed_uniforms_are_the_sampler_stream() {
        // Systematic draws are the inverse CDF at (j + u0) / m with u0 the stream's first uniform.
        let w = [0.25f64, 0.5, 0.25];
        let u = keyed_uniforms(5, &[42], 3);
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
        let idx = sample_rows_ordered(
            &w,
            1,
            3,
            &[2],
            2,
            None,
            1,
            SampleMethod::Systematic,
            5,
            Some(&[42]),
        )
        .unwrap();
        let cdf = [0.25, 0.75, 1.0];
        for (j, &i) in idx.iter().enumerate() {
            let target = (j as f64 + u[0]) / 2.0;
            assert_eq!(i as usize, cdf.iter().position(|&c| c > target).unwrap());
        }
        let multi = sample_rows_ordered(
            &w,
            1,
            3,
            &[2],
            2,
            None,
            1,
            SampleMethod::Multinomial,
            5,
            Some(&[42]),
        )
        .unwrap();
        for (j, &i) in multi.iter().enumerate() {
            assert_eq!(i as usize, cdf.iter().position(|&c| c > u[1 + j]).unwrap());
        }
    }

    #[test]
    fn allocation_keeps_the_total_and_follows_scores() {
        let scores = [0.0, 1.0, 3.0, -1.0, 2.0, 2.0, 2.0, 2.0];
        let shots = allocate_shots(&scores, 4, 20, 1).unwrap();
        assert_eq!(shots[..4].iter().sum::<i64>(), 20);
        assert_eq!(shots[3], 0, "masked row got shots");
        assert_eq!(shots[0], 1, "zero-entropy row gets the minimum");
        assert!(shots[2] > shots[1]);
        assert_eq!(&shots[4..], &[5, 5, 5, 5]);
        assert!(matches!(
            allocate_shots(&scores, 3, 20, 1),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            allocate_shots(&[f64::NAN], 1, 2, 1),
            Err(Error::InvalidArgument(_))
        ));
    }
}
