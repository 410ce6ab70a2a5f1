//! Bindings of `qtransformers_core::{channels, mps}`: Kraus constructors, channel application, TT-SVD.

use numpy::ndarray::{Array1, Array3};
use numpy::{
    Complex64, IntoPyArray, PyArray1, PyArray3, PyReadonlyArray1, PyReadonlyArray3,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use qtransformers_core::channels::{self, Kraus};
use qtransformers_core::mps::{Mps, Scalar, Truncation};

use crate::errors::to_py;

fn kraus_to_py<'py>(py: Python<'py>, ch: Kraus) -> Bound<'py, PyArray3<Complex64>> {
    let (k, d) = (ch.ops.len(), ch.dim());
    let flat: Vec<Complex64> = ch.ops.into_iter().flatten().collect();
    Array3::from_shape_vec((k, d, d), flat)
        .expect("k * d * d entries")
        .into_pyarray(py)
}

fn kraus_from_py(kraus: &PyReadonlyArray3<'_, Complex64>) -> PyResult<Kraus> {
    let arr = kraus.as_array();
    let (k, d, d2) = arr.dim();
    if d != d2 || !d.is_power_of_two() || d < 2 {
        return Err(to_py(qtransformers_core::Error::Shape(format!(
            "Kraus operators must be (k, d, d) with d = 2^m >= 2, got ({k}, {d}, {d2})"
        ))));
    }
    let ops = arr
        .outer_iter()
        .map(|m| m.iter().copied().collect())
        .collect();
    Kraus::new(d.trailing_zeros() as usize, ops).map_err(to_py)
}

/// Kraus operators (k, 2^n, 2^n) of the n-qubit depolarizing channel (N&C Eq. 8.100).
#[pyfunction]
fn depolarizing_kraus(
    py: Python<'_>,
    p: f64,
    num_qubits: usize,
) -> PyResult<Bound<'_, PyArray3<Complex64>>> {
    Ok(kraus_to_py(
        py,
        channels::depolarizing(p, num_qubits).map_err(to_py)?,
    ))
}

/// Kraus operators (k, 2, 2) of generalized amplitude damping.
#[pyfunction]
fn amplitude_damping_kraus(
    py: Python<'_>,
    gamma: f64,
    excited_state_population: f64,
) -> PyResult<Bound<'_, PyArray3<Complex64>>> {
    Ok(kraus_to_py(
        py,
        channels::amplitude_damping(gamma, excited_state_population).map_err(to_py)?,
    ))
}

/// Kraus operators (2, 2, 2) of phase damping.
#[pyfunction]
fn phase_damping_kraus(py: Python<'_>, gamma: f64) -> PyResult<Bound<'_, PyArray3<Complex64>>> {
    Ok(kraus_to_py(
        py,
        channels::phase_damping(gamma).map_err(to_py)?,
    ))
}

/// Kraus operators (k, 2, 2) of thermal relaxation.
#[pyfunction]
fn thermal_relaxation_kraus(
    py: Python<'_>,
    t1: f64,
    t2: f64,
    time: f64,
    excited_state_population: f64,
) -> PyResult<Bound<'_, PyArray3<Complex64>>> {
    Ok(kraus_to_py(
        py,
        channels::thermal_relaxation(t1, t2, time, excited_state_population).map_err(to_py)?,
    ))
}

/// Applies the channel `kraus` (k, d, d) to the (B, 2^n, 2^n) matrices `rho` on each qubit tuple of `targets`.
#[pyfunction]
fn apply_channel<'py>(
    py: Python<'py>,
    rho: PyReadonlyArray3<'py, Complex64>,
    kraus: PyReadonlyArray3<'py, Complex64>,
    targets: Vec<Vec<usize>>,
) -> PyResult<Bound<'py, PyArray3<Complex64>>> {
    let channel = kraus_from_py(&kraus)?;
    let (batch, dim, dim2) = rho.as_array().dim();
    if dim != dim2 || !dim.is_power_of_two() {
        return Err(to_py(qtransformers_core::Error::Shape(format!(
            "rho must be (B, 2^n, 2^n), got ({batch}, {dim}, {dim2})"
        ))));
    }
    let slice = rho
        .as_slice()
        .map_err(|_| PyTypeError::new_err("rho must be C-contiguous"))?;
    let n = dim.trailing_zeros() as usize;
    let out = py
        .detach(|| channels::apply_channel(slice, batch, n, &channel, &targets))
        .map_err(to_py)?;
    Ok(Array3::from_shape_vec((batch, dim, dim), out)
        .expect("same size as rho")
        .into_pyarray(py))
}

fn cores_to_py<'py, T: Scalar + numpy::Element>(
    py: Python<'py>,
    mps: Mps<T>,
) -> PyResult<(Bound<'py, PyList>, f64)> {
    let arrays = mps.cores.into_iter().enumerate().map(|(k, core)| {
        Array3::from_shape_vec((mps.bonds[k], mps.dims[k], mps.bonds[k + 1]), core)
            .expect("core size matches its bonds")
            .into_pyarray(py)
    });
    Ok((PyList::new(py, arrays)?, mps.truncation_error))
}

fn mps_from_py<T: Scalar + numpy::Element>(
    cores: &[PyReadonlyArray3<'_, T>],
    truncation_error: f64,
) -> PyResult<Mps<T>> {
    let dims = cores.iter().map(|c| c.shape()[1]).collect();
    let mut bonds: Vec<usize> = cores.iter().map(|c| c.shape()[0]).collect();
    bonds.push(cores.last().map_or(1, |c| c.shape()[2]));
    for (k, pair) in cores.windows(2).enumerate() {
        if pair[0].shape()[2] != pair[1].shape()[0] {
            return Err(to_py(qtransformers_core::Error::Shape(format!(
                "core {k} has right bond {} but core {} has left bond {}",
                pair[0].shape()[2],
                k + 1,
                pair[1].shape()[0]
            ))));
        }
    }
    let data = cores
        .iter()
        .map(|c| c.as_array().iter().copied().collect())
        .collect();
    Mps::from_cores(dims, bonds, data, truncation_error).map_err(to_py)
}

/// Generic entry points, called once per dtype by the pyfunctions below.
trait MpsOps: Scalar + numpy::Element {
    fn tt_svd<'py>(
        py: Python<'py>,
        data: PyReadonlyArray1<'py, Self>,
        dims: &[usize],
        trunc: Truncation,
    ) -> PyResult<(Bound<'py, PyList>, f64)> {
        let slice = data
            .as_slice()
            .map_err(|_| PyTypeError::new_err("array must be contiguous"))?;
        let mps = py
            .detach(|| Mps::from_dense(slice, dims, trunc))
            .map_err(to_py)?;
        cores_to_py(py, mps)
    }

    fn compress<'py>(
        py: Python<'py>,
        cores: &[PyReadonlyArray3<'py, Self>],
        truncation_error: f64,
        trunc: Truncation,
    ) -> PyResult<(Bound<'py, PyList>, f64)> {
        let mps = mps_from_py(cores, truncation_error)?;
        let out = py.detach(|| mps.compress(trunc)).map_err(to_py)?;
        cores_to_py(py, out)
    }

    fn to_dense<'py>(
        py: Python<'py>,
        cores: &[PyReadonlyArray3<'py, Self>],
    ) -> PyResult<Bound<'py, PyArray1<Self>>> {
        let mps = mps_from_py(cores, 0.0)?;
        let out = py.detach(|| mps.to_dense());
        Ok(Array1::from_vec(out).into_pyarray(py))
    }

    fn inner(a: &[PyReadonlyArray3<'_, Self>], b: &[PyReadonlyArray3<'_, Self>]) -> PyResult<Self> {
        mps_from_py(a, 0.0)?
            .inner(&mps_from_py(b, 0.0)?)
            .map_err(to_py)
    }
}
impl MpsOps for f64 {}
impl MpsOps for Complex64 {}

fn dtype_error() -> PyErr {
    PyTypeError::new_err(
        "MPS data must be float64 or complex128 numpy arrays (one dtype for all cores)",
    )
}

/// TT-SVD of a flat float64/complex128 array with site dimensions `dims`; returns (cores, truncation_error).
#[pyfunction]
#[pyo3(signature = (array, dims, max_bond=None, cutoff=0.0))]
fn tt_svd<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    dims: Vec<usize>,
    max_bond: Option<usize>,
    cutoff: f64,
) -> PyResult<(Bound<'py, PyList>, f64)> {
    let trunc = Truncation::new(max_bond, cutoff).map_err(to_py)?;
    if let Ok(a) = array.extract::<PyReadonlyArray1<'py, f64>>() {
        f64::tt_svd(py, a, &dims, trunc)
    } else if let Ok(a) = array.extract::<PyReadonlyArray1<'py, Complex64>>() {
        Complex64::tt_svd(py, a, &dims, trunc)
    } else {
        Err(dtype_error())
    }
}

/// Recompresses MPS cores [(r_k, d_k, r_{k+1})]; returns (cores, accumulated truncation_error).
#[pyfunction]
#[pyo3(signature = (cores, truncation_error, max_bond=None, cutoff=0.0))]
fn mps_compress<'py>(
    py: Python<'py>,
    cores: &Bound<'py, PyAny>,
    truncation_error: f64,
    max_bond: Option<usize>,
    cutoff: f64,
) -> PyResult<(Bound<'py, PyList>, f64)> {
    let trunc = Truncation::new(max_bond, cutoff).map_err(to_py)?;
    if let Ok(c) = cores.extract::<Vec<PyReadonlyArray3<'py, f64>>>() {
        f64::compress(py, &c, truncation_error, trunc)
    } else if let Ok(c) = cores.extract::<Vec<PyReadonlyArray3<'py, Complex64>>>() {
        Complex64::compress(py, &c, truncation_error, trunc)
    } else {
        Err(dtype_error())
    }
}

/// Contracts MPS cores into the flat dense array.
#[pyfunction]
fn mps_to_dense<'py>(py: Python<'py>, cores: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(c) = cores.extract::<Vec<PyReadonlyArray3<'py, f64>>>() {
        Ok(f64::to_dense(py, &c)?.into_any())
    } else if let Ok(c) = cores.extract::<Vec<PyReadonlyArray3<'py, Complex64>>>() {
        Ok(Complex64::to_dense(py, &c)?.into_any())
    } else {
        Err(dtype_error())
    }
}

/// <a|b> = sum conj(a) * b of two MPS (same dtype and site dimensions); returns (real, imag).
#[pyfunction]
fn mps_inner<'py>(a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyResult<(f64, f64)> {
    let z = inner_any(a, b)?;
    Ok((z.re, z.im))
}

fn inner_any<'py>(a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyResult<Complex64> {
    if let (Ok(x), Ok(y)) = (
        a.extract::<Vec<PyReadonlyArray3<'py, f64>>>(),
        b.extract::<Vec<PyReadonlyArray3<'py, f64>>>(),
    ) {
        Ok(Complex64::new(f64::inner(&x, &y)?, 0.0))
    } else if let (Ok(x), Ok(y)) = (
        a.extract::<Vec<PyReadonlyArray3<'py, Complex64>>>(),
        b.extract::<Vec<PyReadonlyArray3<'py, Complex64>>>(),
    ) {
        Complex64::inner(&x, &y)
    } else {
        Err(dtype_error())
    }
}

/// Adds this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(depolarizing_kraus, m)?)?;
    m.add_function(wrap_pyfunction!(amplitude_damping_kraus, m)?)?;
    m.add_function(wrap_pyfunction!(phase_damping_kraus, m)?)?;
    m.add_function(wrap_pyfunction!(thermal_relaxation_kraus, m)?)?;
    m.add_function(wrap_pyfunction!(apply_channel, m)?)?;
    m.add_function(wrap_pyfunction!(tt_svd, m)?)?;
    m.add_function(wrap_pyfunction!(mps_compress, m)?)?;
    m.add_function(wrap_pyfunction!(mps_to_dense, m)?)?;
    m.add_function(wrap_pyfunction!(mps_inner, m)?)?;
    Ok(())
}
