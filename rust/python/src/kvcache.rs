//! Bindings of `qtransformers_core::kvcache`: sampled (SimHash + tail) attention and its KV cache.
//!
//! Arrays cross as flat C-contiguous 1-D numpy arrays plus their dimensions; the Python wrappers in
//! `qtransformers.functional.lsh` check shapes and dtypes first and reshape the results.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use qtransformers_core::kvcache::{
    lsh_attention as core_lsh_attention, AttendOutput, Bias, Dims, LshConfig, SampledKvCache,
};
use qtransformers_core::simhash::SimHash;

use crate::errors::to_py;

type Arr<'py, T> = Bound<'py, PyArray1<T>>;

/// What every attend call returns: (out, scored, candidates, hashes, rel_err, design) where design
/// is None or (candidate mask (rows * S) uint8, tail (rows * width) int64 padded with -1, width).
type AttendTuple<'py> = (
    Arr<'py, f32>,
    Arr<'py, i64>,
    Arr<'py, i64>,
    Arr<'py, f64>,
    Arr<'py, f64>,
    Option<(Arr<'py, u8>, Arr<'py, i64>, usize)>,
);

fn slice<'a, T: numpy::Element>(arr: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    arr.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be C-contiguous")))
}

fn dims4(dims: Vec<usize>) -> PyResult<[usize; 4]> {
    dims.try_into().map_err(|d: Vec<usize>| {
        PyTypeError::new_err(format!("mask dims must have 4 entries, got {d:?}"))
    })
}

#[allow(clippy::too_many_arguments)]
fn config(
    bits: usize,
    tables: usize,
    sinks: usize,
    window: usize,
    budget: usize,
    epsilon: Option<f64>,
    delta: f64,
) -> LshConfig {
    LshConfig {
        bits,
        tables,
        sinks,
        window,
        budget,
        epsilon,
        delta,
    }
}

fn to_tuple<'py>(py: Python<'py>, res: AttendOutput, keys: usize, keep: bool) -> AttendTuple<'py> {
    let to_i64 = |v: &[u64]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    let design = keep.then(|| {
        let rows = res.tails.len();
        let width = res.tails.iter().map(Vec::len).max().unwrap_or(0);
        let mut mask = vec![0u8; rows * keys];
        let mut tail = vec![-1i64; rows * width];
        for (r, (cands, draws)) in res.candidate_lists.iter().zip(&res.tails).enumerate() {
            cands.iter().for_each(|&j| mask[r * keys + j as usize] = 1);
            draws
                .iter()
                .enumerate()
                .for_each(|(i, &j)| tail[r * width + i] = i64::from(j));
        }
        (mask.into_pyarray(py), tail.into_pyarray(py), width)
    });
    (
        res.out.into_pyarray(py),
        to_i64(&res.scored).into_pyarray(py),
        to_i64(&res.candidates).into_pyarray(py),
        res.hashes.into_pyarray(py),
        res.rel_err.into_pyarray(py),
        design,
    )
}

/// Sampled attention building the SimHash index per call; see `qtransformers.functional.lsh`.
#[pyfunction]
#[pyo3(signature = (q, k, v, dims, bias, bias_dims, causal, scale, bits, tables, sinks, window, budget, epsilon, delta, seed, keep_design))]
#[allow(clippy::too_many_arguments)]
fn lsh_attention<'py>(
    py: Python<'py>,
    q: PyReadonlyArray1<'py, f32>,
    k: PyReadonlyArray1<'py, f32>,
    v: PyReadonlyArray1<'py, f32>,
    dims: (usize, usize, usize, usize, usize, usize),
    bias: Option<PyReadonlyArray1<'py, f32>>,
    bias_dims: Vec<usize>,
    causal: bool,
    scale: f32,
    bits: usize,
    tables: usize,
    sinks: usize,
    window: usize,
    budget: usize,
    epsilon: Option<f64>,
    delta: f64,
    seed: u64,
    keep_design: bool,
) -> PyResult<AttendTuple<'py>> {
    let (batch, heads, rows, keys, dim, vdim) = dims;
    let d = Dims {
        batch,
        heads,
        rows,
        keys,
        dim,
        vdim,
    };
    let cfg = config(bits, tables, sinks, window, budget, epsilon, delta);
    let (qs, ks, vs) = (slice(&q, "q")?, slice(&k, "k")?, slice(&v, "v")?);
    let bias = match &bias {
        Some(b) => Some(Bias {
            data: slice(b, "mask")?,
            dims: dims4(bias_dims)?,
        }),
        None => None,
    };
    let res = py
        .detach(|| core_lsh_attention(qs, ks, vs, d, bias, causal, scale, &cfg, seed, keep_design))
        .map_err(to_py)?;
    Ok(to_tuple(py, res, keys, keep_design))
}

/// The SimHash hyperplanes of heads `0..heads` under `seed`: flat (heads, tables, bits, dim) float32.
#[pyfunction]
#[pyo3(signature = (dim, bits, tables, seed, heads))]
fn simhash_planes<'py>(
    py: Python<'py>,
    dim: usize,
    bits: usize,
    tables: usize,
    seed: u64,
    heads: usize,
) -> PyResult<Arr<'py, f32>> {
    let mut out = Vec::with_capacity(heads * tables * bits * dim);
    for h in 0..heads {
        let hasher = SimHash::new(dim, bits, tables, seed, h as u64).map_err(to_py)?;
        out.extend_from_slice(hasher.planes());
    }
    Ok(out.into_pyarray(py))
}

/// A B x H key/value cache with a growing SimHash index (wrapped by `SampledKVCache`).
#[pyclass(name = "SampledKvCache", module = "qtransformers._core")]
struct PySampledKvCache {
    inner: SampledKvCache,
}

#[pymethods]
impl PySampledKvCache {
    #[new]
    #[pyo3(signature = (batch, heads, dim, vdim, bits, tables, sinks, window, budget, epsilon, delta, seed))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        batch: usize,
        heads: usize,
        dim: usize,
        vdim: usize,
        bits: usize,
        tables: usize,
        sinks: usize,
        window: usize,
        budget: usize,
        epsilon: Option<f64>,
        delta: f64,
        seed: u64,
    ) -> PyResult<Self> {
        let cfg = config(bits, tables, sinks, window, budget, epsilon, delta);
        let inner = SampledKvCache::new(batch, heads, dim, vdim, cfg, seed).map_err(to_py)?;
        Ok(Self { inner })
    }

    /// Number of cached positions.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Drops every cached position.
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// The hyperplanes, flat (H, tables, bits, E) float32.
    fn planes<'py>(&self, py: Python<'py>) -> Arr<'py, f32> {
        self.inner.planes().into_pyarray(py)
    }

    /// Appends flat k (B*H*new*E) and v (B*H*new*Ev).
    fn append(
        &mut self,
        py: Python<'_>,
        k: PyReadonlyArray1<'_, f32>,
        v: PyReadonlyArray1<'_, f32>,
        new: usize,
    ) -> PyResult<()> {
        let (ks, vs) = (slice(&k, "k")?, slice(&v, "v")?);
        let inner = &mut self.inner;
        py.detach(|| inner.append(ks, vs, new)).map_err(to_py)
    }

    /// Attends flat q (B*H*rows*E) for the newest `rows` positions; returns the attend tuple.
    #[pyo3(signature = (q, rows, bias, bias_dims, scale, exact, keep_design))]
    #[allow(clippy::too_many_arguments)]
    fn attend<'py>(
        &mut self,
        py: Python<'py>,
        q: PyReadonlyArray1<'py, f32>,
        rows: usize,
        bias: Option<PyReadonlyArray1<'py, f32>>,
        bias_dims: Vec<usize>,
        scale: f32,
        exact: bool,
        keep_design: bool,
    ) -> PyResult<AttendTuple<'py>> {
        let qs = slice(&q, "q")?;
        let bias = match &bias {
            Some(b) => Some(Bias {
                data: slice(b, "mask")?,
                dims: dims4(bias_dims)?,
            }),
            None => None,
        };
        let keys = self.inner.len();
        let inner = &mut self.inner;
        let res = py
            .detach(|| inner.attend(qs, rows, bias, scale, exact, keep_design))
            .map_err(to_py)?;
        Ok(to_tuple(py, res, keys, keep_design))
    }
}

/// Adds this file's functions and class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lsh_attention, m)?)?;
    m.add_function(wrap_pyfunction!(simhash_planes, m)?)?;
    m.add_class::<PySampledKvCache>()?;
    Ok(())
}
