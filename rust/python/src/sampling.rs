//! Bindings of `qtransformers_core::sampling`.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use qtransformers_core::sampling::{
    allocate_shots as core_allocate_shots, keyed_uniforms as core_keyed_uniforms,
    sample_rows as core_sample_rows, sample_rows_ordered as core_sample_rows_ordered, SampleMethod,
};

use crate::errors::to_py;

/// Draws `shots` indices per row of `weights` ((R, N) float32/float64, C-contiguous).
///
/// Returns an (R, shots) int64 array; rows of total weight 0 give -1.
#[pyfunction]
#[pyo3(signature = (weights, shots, method, seed))]
fn sample_rows<'py>(
    py: Python<'py>,
    weights: &Bound<'py, PyAny>,
    shots: usize,
    method: &str,
    seed: u64,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let method = SampleMethod::parse(method).map_err(to_py)?;
    let result = if let Ok(arr) = weights.extract::<PyReadonlyArray2<'py, f32>>() {
        run(py, arr, shots, method, seed)
    } else if let Ok(arr) = weights.extract::<PyReadonlyArray2<'py, f64>>() {
        run(py, arr, shots, method, seed)
    } else {
        return Err(PyTypeError::new_err(
            "weights must be a 2-D numpy array of float32 or float64",
        ));
    }?;
    Ok(result)
}

fn run<'py, W>(
    py: Python<'py>,
    arr: PyReadonlyArray2<'py, W>,
    shots: usize,
    method: SampleMethod,
    seed: u64,
) -> PyResult<Bound<'py, PyArray2<i64>>>
where
    W: numpy::Element + qtransformers_core::sampling::Weight,
{
    let (rows, n) = arr.as_array().dim();
    let slice = arr
        .as_slice()
        .map_err(|_| PyTypeError::new_err("weights must be C-contiguous"))?;
    let out = py
        .detach(|| core_sample_rows(slice, rows, n, shots, method, seed))
        .map_err(to_py)?;
    let out = numpy::ndarray::Array2::from_shape_vec((rows, shots), out)
        .expect("core returns rows * shots indices");
    Ok(out.into_pyarray(py))
}

/// Draws `shots[r]` (<= `max_shots`) indices for row `r` of `weights` (R, N) along an optional
/// key order (G, N) shared by `rows_per_order` consecutive rows; returns (R, max_shots) int64,
/// -1 in unused slots and for rows of total weight 0. `streams` (R,) uint64 names each row's
/// random stream (default: the row index).
#[pyfunction]
#[pyo3(signature = (weights, shots, max_shots, order, rows_per_order, method, seed, streams=None))]
#[allow(clippy::too_many_arguments)]
fn sample_rows_ordered<'py>(
    py: Python<'py>,
    weights: &Bound<'py, PyAny>,
    shots: PyReadonlyArray1<'py, i64>,
    max_shots: usize,
    order: Option<PyReadonlyArray2<'py, i64>>,
    rows_per_order: usize,
    method: &str,
    seed: u64,
    streams: Option<PyReadonlyArray1<'py, u64>>,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let method = SampleMethod::parse(method).map_err(to_py)?;
    let streams_slice = match &streams {
        Some(s) => Some(
            s.as_slice()
                .map_err(|_| PyTypeError::new_err("streams must be C-contiguous"))?,
        ),
        None => None,
    };
    let shots = shots
        .as_slice()
        .map_err(|_| PyTypeError::new_err("shots must be C-contiguous"))?;
    let order_slice = match &order {
        Some(o) => Some(
            o.as_slice()
                .map_err(|_| PyTypeError::new_err("order must be C-contiguous"))?,
        ),
        None => None,
    };
    macro_rules! go {
        ($arr:expr) => {{
            let (rows, n) = $arr.as_array().dim();
            let slice = $arr
                .as_slice()
                .map_err(|_| PyTypeError::new_err("weights must be C-contiguous"))?;
            let out = py
                .detach(|| {
                    core_sample_rows_ordered(
                        slice,
                        rows,
                        n,
                        shots,
                        max_shots,
                        order_slice,
                        rows_per_order,
                        method,
                        seed,
                        streams_slice,
                    )
                })
                .map_err(to_py)?;
            let out = numpy::ndarray::Array2::from_shape_vec((rows, max_shots), out)
                .map_err(|e| PyTypeError::new_err(e.to_string()))?;
            Ok(out.into_pyarray(py))
        }};
    }
    if let Ok(arr) = weights.extract::<PyReadonlyArray2<'py, f32>>() {
        go!(arr)
    } else if let Ok(arr) = weights.extract::<PyReadonlyArray2<'py, f64>>() {
        go!(arr)
    } else {
        Err(PyTypeError::new_err(
            "weights must be a 2-D numpy array of float32 or float64",
        ))
    }
}

/// Splits `total` shots over each group of `per_group` rows in proportion to `scores` (R,)
/// float64 (negative = row gets none, others at least `min_shots`); returns (R,) int64.
#[pyfunction]
#[pyo3(signature = (scores, per_group, total, min_shots))]
fn allocate_shots<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'py, f64>,
    per_group: usize,
    total: usize,
    min_shots: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let slice = scores
        .as_slice()
        .map_err(|_| PyTypeError::new_err("scores must be C-contiguous"))?;
    let out = py
        .detach(|| core_allocate_shots(slice, per_group, total, min_shots))
        .map_err(to_py)?;
    Ok(out.into_pyarray(py))
}

/// The first `count` uniforms of each row's stream (`streams` (R,) uint64 keys under `seed`);
/// returns (R, count) float64: uniform 0 is the systematic offset, uniform 1 + j shot j's.
#[pyfunction]
#[pyo3(signature = (seed, streams, count))]
fn keyed_uniforms<'py>(
    py: Python<'py>,
    seed: u64,
    streams: PyReadonlyArray1<'py, u64>,
    count: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let keys = streams
        .as_slice()
        .map_err(|_| PyTypeError::new_err("streams must be C-contiguous"))?;
    let rows = keys.len();
    let out = py.detach(|| core_keyed_uniforms(seed, keys, count));
    let out = numpy::ndarray::Array2::from_shape_vec((rows, count), out)
        .map_err(|e| PyTypeError::new_err(e.to_string()))?;
    Ok(out.into_pyarray(py))
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sample_rows, m)?)?;
    m.add_function(wrap_pyfunction!(sample_rows_ordered, m)?)?;
    m.add_function(wrap_pyfunction!(allocate_shots, m)?)?;
    m.add_function(wrap_pyfunction!(keyed_uniforms, m)?)?;
    Ok(())
}
