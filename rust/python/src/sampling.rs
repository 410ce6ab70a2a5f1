//! Bindings of `qtransformers_core::sampling`.

use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use qtransformers_core::sampling::{sample_rows as core_sample_rows, SampleMethod};

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
    let slice = arr.as_slice().map_err(|_| {
        PyTypeError::new_err("weights must be C-contiguous")
    })?;
    let out = py
        .detach(|| core_sample_rows(slice, rows, n, shots, method, seed))
        .map_err(to_py)?;
    let out = numpy::ndarray::Array2::from_shape_vec((rows, shots), out)
        .expect("core returns rows * shots indices");
    Ok(out.into_pyarray(py))
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sample_rows, m)?)?;
    Ok(())
}
