//! Bindings of `qtransformers_core::oscillators` (gated banks of damped complex oscillators).

use numpy::ndarray::Array3;
use numpy::{Element, IntoPyArray, PyArray3, PyReadonlyArray3};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use qtransformers_core::fftconv::ConvFloat;
use qtransformers_core::oscillators::{
    gated_oscillators as core_forward, gated_oscillators_backward as core_backward, BankShape,
};

use crate::errors::to_py;

fn slice<'a, T: Element>(name: &str, arr: &'a PyReadonlyArray3<'_, T>) -> PyResult<&'a [T]> {
    arr.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be C-contiguous")))
}

/// The shape of a call from v (B, T, D) and gates (B, T, S); the core checks every length.
fn shape_of<T: Element>(v: &PyReadonlyArray3<'_, T>, g: &PyReadonlyArray3<'_, T>) -> BankShape {
    let (batch, time, dim) = v.as_array().dim();
    BankShape {
        batch,
        time,
        dim,
        bands: g.as_array().dim().2,
    }
}

fn array<T: Element>(
    py: Python<'_>,
    data: Vec<T>,
    shape: (usize, usize, usize),
) -> Bound<'_, PyArray3<T>> {
    Array3::from_shape_vec(shape, data)
        .expect("the core returns arrays of the checked sizes")
        .into_pyarray(py)
}

type Arrays<'py, T> = (
    PyReadonlyArray3<'py, T>,
    PyReadonlyArray3<'py, T>,
    PyReadonlyArray3<'py, T>,
    PyReadonlyArray3<'py, T>,
);

fn extract<'py, T: Element>(args: [&Bound<'py, PyAny>; 4]) -> Option<Arrays<'py, T>> {
    Some((
        args[0].extract().ok()?,
        args[1].extract().ok()?,
        args[2].extract().ok()?,
        args[3].extract().ok()?,
    ))
}

fn forward<'py, T: ConvFloat + Element>(
    py: Python<'py>,
    (v, g, lam, w): Arrays<'py, T>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = shape_of(&v, &g);
    let (vs, gs, ls, ws) = (
        slice("v", &v)?,
        slice("gates", &g)?,
        slice("poles", &lam)?,
        slice("weights", &w)?,
    );
    let y = py
        .detach(|| core_forward(vs, gs, ls, ws, shape))
        .map_err(to_py)?;
    Ok(array(py, y, (shape.batch, shape.time, shape.dim)).into_any())
}

type Grads<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

fn backward<'py, T: ConvFloat + Element>(
    py: Python<'py>,
    grad: PyReadonlyArray3<'py, T>,
    (v, g, lam, w): Arrays<'py, T>,
) -> PyResult<Grads<'py>> {
    let shape = shape_of(&v, &g);
    let (dy, vs, gs) = (slice("grad", &grad)?, slice("v", &v)?, slice("gates", &g)?);
    let (ls, ws) = (slice("poles", &lam)?, slice("weights", &w)?);
    let grads = py
        .detach(|| core_backward(dy, vs, gs, ls, ws, shape))
        .map_err(to_py)?;
    let (b, t, d, s) = (shape.batch, shape.time, shape.dim, shape.bands);
    Ok((
        array(py, grads.v, (b, t, d)).into_any(),
        array(py, grads.gates, (b, t, s)).into_any(),
        array(py, grads.poles, (2, s, d)).into_any(),
        array(py, grads.weights, (2, s, d)).into_any(),
    ))
}

const DTYPES: &str = "v (B, T, D), gates (B, T, S), poles and weights (2, S, D) must be 3-D numpy arrays, all float32 or all float64";

/// Gated oscillator bank `y[b, t, d] = Σ_s gates[b, t, s] Re(w[s, d] h[b, s, d, t])`, `h_t = λ h_{t-1} + v_t`.
///
/// v (B, T, D), gates (B, T, S), poles λ and weights w as (2, S, D) (real, imaginary); returns (B, T, D).
#[pyfunction]
fn gated_oscillators<'py>(
    py: Python<'py>,
    v: &Bound<'py, PyAny>,
    gates: &Bound<'py, PyAny>,
    poles: &Bound<'py, PyAny>,
    weights: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let args = [v, gates, poles, weights];
    if let Some(arrays) = extract::<f32>(args) {
        return forward(py, arrays);
    }
    if let Some(arrays) = extract::<f64>(args) {
        return forward(py, arrays);
    }
    Err(PyTypeError::new_err(DTYPES))
}

/// Backward of :func:`gated_oscillators`: (grad_v, grad_gates, grad_poles, grad_weights) from grad (B, T, D).
#[pyfunction]
fn gated_oscillators_backward<'py>(
    py: Python<'py>,
    grad: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    gates: &Bound<'py, PyAny>,
    poles: &Bound<'py, PyAny>,
    weights: &Bound<'py, PyAny>,
) -> PyResult<Grads<'py>> {
    let args = [v, gates, poles, weights];
    if let (Ok(dy), Some(arrays)) = (
        grad.extract::<PyReadonlyArray3<'py, f32>>(),
        extract::<f32>(args),
    ) {
        return backward(py, dy, arrays);
    }
    if let (Ok(dy), Some(arrays)) = (
        grad.extract::<PyReadonlyArray3<'py, f64>>(),
        extract::<f64>(args),
    ) {
        return backward(py, dy, arrays);
    }
    Err(PyTypeError::new_err(format!("grad (B, T, D) and {DTYPES}")))
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gated_oscillators, m)?)?;
    m.add_function(wrap_pyfunction!(gated_oscillators_backward, m)?)?;
    Ok(())
}
