//! Bindings of `qtransformers_core::threads` (the size of the core's thread pool).

use pyo3::prelude::*;

use crate::errors::to_py;

/// Create the core's thread pool with `threads` threads; False (and no change) if it already exists.
#[pyfunction]
fn init_threads(threads: usize) -> PyResult<bool> {
    qtransformers_core::threads::init_threads(threads).map_err(to_py)
}

/// Number of threads the core's parallel functions run on.
#[pyfunction]
fn num_threads() -> usize {
    qtransformers_core::threads::num_threads()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(init_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    Ok(())
}
