//! Bindings of `qtransformers_core::fftconv` (causal FFT convolution and its backward).

use numpy::ndarray::{Array2, Array3};
use numpy::{Element, IntoPyArray, PyArray2, PyArray3, PyReadonlyArray2, PyReadonlyArray3};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use qtransformers_core::fftconv::{
    causal_fftconv as core_forward, causal_fftconv_backward as core_backward, ConvFloat,
};

use crate::errors::to_py;

fn contiguous<'a, T: Element, D: numpy::ndarray::Dimension>(
    name: &str,
    arr: &'a numpy::PyReadonlyArray<'_, T, D>,
) -> PyResult<&'a [T]> {
    arr.as_slice()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be C-contiguous")))
}

fn forward<'py, T: ConvFloat + Element>(
    py: Python<'py>,
    u: PyReadonlyArray3<'py, T>,
    k: PyReadonlyArray2<'py, T>,
) -> PyResult<Bound<'py, PyArray3<T>>> {
    let (b, c, t) = u.as_array().dim();
    let (kc, kt) = k.as_array().dim();
    if kt != t || kc == 0 || c % kc != 0 {
        return Err(to_py(qtransformers_core::Error::Shape(format!(
            "kernel k has shape ({kc}, {kt}); expected (K, T) with K dividing C for u of shape ({b}, {c}, {t})"
        ))));
    }
    let (us, ks) = (contiguous("u", &u)?, contiguous("k", &k)?);
    let y = py
        .detach(|| core_forward(us, ks, b, c, t, kc))
        .map_err(to_py)?;
    let y = Array3::from_shape_vec((b, c, t), y).expect("core returns B * C * T samples");
    Ok(y.into_pyarray(py))
}

type Grads<'py, T> = (Bound<'py, PyArray3<T>>, Bound<'py, PyArray2<T>>);

fn backward<'py, T: ConvFloat + Element>(
    py: Python<'py>,
    g: PyReadonlyArray3<'py, T>,
    u: PyReadonlyArray3<'py, T>,
    k: PyReadonlyArray2<'py, T>,
) -> PyResult<Grads<'py, T>> {
    let (b, c, t) = u.as_array().dim();
    let (kc, kt) = k.as_array().dim();
    if g.as_array().dim() != (b, c, t) || kt != t || kc == 0 || c % kc != 0 {
        return Err(to_py(qtransformers_core::Error::Shape(format!(
            "grad {:?}, u {:?} and k {:?} must be (B, C, T), (B, C, T) and (K, T) with K dividing C",
            g.as_array().dim(),
            u.as_array().dim(),
            k.as_array().dim()
        ))));
    }
    let (gs, us, ks) = (
        contiguous("grad", &g)?,
        contiguous("u", &u)?,
        contiguous("k", &k)?,
    );
    let (gu, gk) = py
        .detach(|| core_backward(gs, us, ks, b, c, t, kc))
        .map_err(to_py)?;
    let gu = Array3::from_shape_vec((b, c, t), gu).expect("core returns B * C * T samples");
    let gk = Array2::from_shape_vec((kc, t), gk).expect("core returns K * T samples");
    Ok((gu.into_pyarray(py), gk.into_pyarray(py)))
}

/// Causal convolution `y[b, c, t] = sum_{j <= t} k[c / g, j] u[b, c, t - j]` of u (B, C, T) with k (K, T).
///
/// g = C / K channels share a kernel. float32 or float64 (both the same dtype), C-contiguous; returns (B, C, T).
#[pyfunction]
fn causal_fftconv<'py>(
    py: Python<'py>,
    u: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if let (Ok(u), Ok(k)) = (
        u.extract::<PyReadonlyArray3<'py, f32>>(),
        k.extract::<PyReadonlyArray2<'py, f32>>(),
    ) {
        return Ok(forward(py, u, k)?.into_any());
    }
    if let (Ok(u), Ok(k)) = (
        u.extract::<PyReadonlyArray3<'py, f64>>(),
        k.extract::<PyReadonlyArray2<'py, f64>>(),
    ) {
        return Ok(forward(py, u, k)?.into_any());
    }
    Err(PyTypeError::new_err(
        "u must be a 3-D and k a 2-D numpy array, both float32 or both float64",
    ))
}

/// Backward of :func:`causal_fftconv`: (grad_u (B, C, T), grad_k (K, T)) from grad (B, C, T), u, k.
#[pyfunction]
fn causal_fftconv_backward<'py>(
    py: Python<'py>,
    grad: &Bound<'py, PyAny>,
    u: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let (Ok(g), Ok(u), Ok(k)) = (
        grad.extract::<PyReadonlyArray3<'py, f32>>(),
        u.extract::<PyReadonlyArray3<'py, f32>>(),
        k.extract::<PyReadonlyArray2<'py, f32>>(),
    ) {
        let (gu, gk) = backward(py, g, u, k)?;
        return Ok((gu.into_any(), gk.into_any()));
    }
    if let (Ok(g), Ok(u), Ok(k)) = (
        grad.extract::<PyReadonlyArray3<'py, f64>>(),
        u.extract::<PyReadonlyArray3<'py, f64>>(),
        k.extract::<PyReadonlyArray2<'py, f64>>(),
    ) {
        let (gu, gk) = backward(py, g, u, k)?;
        return Ok((gu.into_any(), gk.into_any()));
    }
    Err(PyTypeError::new_err(
        "grad and u must be 3-D, k 2-D numpy arrays, all float32 or all float64",
    ))
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(causal_fftconv, m)?)?;
    m.add_function(wrap_pyfunction!(causal_fftconv_backward, m)?)?;
    Ok(())
}
